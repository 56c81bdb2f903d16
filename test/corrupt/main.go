// Command corrupt damages a stopped sluice server's data directory on purpose, the
// way a failing disk or a power cut would, and prints exactly what it did, so that
// a test (or an operator rehearsing recovery) can restart the server and check
// that the damage is detected and never delivered:
//
//	go run ./test/corrupt --data DIR [--seed N] [--flips K] [--truncate]
//	                      [--kind all|segments|indexes] [--tear-active] [--flip-active]
//
// --flips flips K random bits, each in a random sealed segment (*.log but the
// last of a partition) or index file (*.index); --truncate cuts one of them short at
// a random length; --kind restricts both to segments or indexes. --tear-active
// writes, after the data of every active segment, a prefix of a batch (what a torn
// unacknowledged write leaves); --flip-active flips one bit inside the data of an
// active segment (damage to acknowledged bytes). Output lines:
//
//	flip streams/s/0/00000000000000000042.log offset=1234 bit=5 (0x41 -> 0x61)
//	truncate streams/s/1/00000000000000000000.index from=96 to=40
//	tear streams/s/0/00000000000000000311.log offset=2048 bytes=77 (a prefix of a batch after the data)
//
// The server must be stopped: the tool writes the files in place. Subscription
// journals are not touched. The end-to-end test in this directory builds the real
// server, damages its data with Run and checks what a restart serves.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"
)

func main() {
	data := flag.String("data", "", "the data directory of a stopped server (required)")
	seed := flag.Uint64("seed", uint64(time.Now().UnixNano()), "random seed (printed)")
	flips := flag.Int("flips", 1, "bits to flip in sealed segments and index files")
	truncate := flag.Bool("truncate", false, "cut one sealed segment or index file short")
	kind := flag.String("kind", "all", "what --flips and --truncate damage: all, segments or indexes")
	tearActive := flag.Bool("tear-active", false, "leave a torn batch after the data of every active segment")
	flipActive := flag.Bool("flip-active", false, "flip one bit inside the data of an active segment")
	flag.Parse()
	if *data == "" || flag.NArg() > 0 || *flips < 0 {
		flag.Usage()
		os.Exit(2)
	}
	fmt.Printf("seed %d\n", *seed)
	acts, err := Run(*data, Options{Seed: *seed, Flips: *flips, Truncate: *truncate, Kind: *kind, TearActive: *tearActive, FlipActive: *flipActive})
	for _, a := range acts {
		fmt.Println(a)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "corrupt:", err)
		os.Exit(1)
	}
}
