// Command sluice is the sluice broker and its command-line tools, one verb per file.
//
//	sluice serve          run the broker (config from a file, SLUICE_* variables, flags)
//	sluice stream         create, list, info, update, delete streams
//	sluice pub            publish arguments, stdin lines or a file
//	sluice sub            consume a subscription, creating it if absent
//	sluice subscription   create, list, info, seek, delete subscriptions
//	sluice dlq            list, show, redrive, purge dead letters
//	sluice schedule       create, list, pause, resume, delete schedules
//	sluice stats, top     the state of every stream and subscription, once or live
//	sluice diskcheck      measure this disk's fsync latency and synced write bandwidth
//	sluice drill          the four design drills, run live on an embedded broker
//
// sluice help VERB prints a verb's usage with examples.
package main
