// Command sluice is the sluice broker and its command-line tools, one verb per file.
//
//	sluice serve       run the broker
//	sluice diskcheck   measure this disk's fsync latency and synced write bandwidth
package main
