// Package netfault holds the end-to-end network-fault test of the reliability
// suite (issue 7): a server on 127.0.0.1, an internal/faultproxy in front of
// it, and producers and consumers of the network client talking through the
// proxy while it cycles through latency, sliced writes, resets and
// blackholes. Once the faults stop, it checks that every acknowledged
// publish is stored exactly once, that every consumer fetches again, and that
// each subscription's lag drains to zero within 30 s.
//
//	go test -count=1 ./test/netfault               # the CI version, about 30 s
//	go test -count=1 ./test/netfault -phase=10s    # longer phases
package netfault
