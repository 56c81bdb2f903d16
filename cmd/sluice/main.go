package main

import (
	"fmt"
	"os"
)

type verb struct {
	name, summary string
	run           func(args []string) error
}

var verbs = []verb{
	{"serve", "run the broker on 127.0.0.1:7070 with data in ./sluice-data", runServe},
	{"diskcheck", "measure fdatasync latency and synced sequential write bandwidth", runDiskcheck},
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: sluice <verb> [flags]\n\nverbs:")
	for _, v := range verbs {
		fmt.Fprintf(os.Stderr, "  %-10s %s\n", v.name, v.summary)
	}
	fmt.Fprintln(os.Stderr, "\nsluice <verb> -h shows a verb's flags.")
}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	for _, v := range verbs {
		if v.name == os.Args[1] {
			if err := v.run(os.Args[2:]); err != nil {
				fmt.Fprintf(os.Stderr, "sluice %s: %v\n", v.name, err)
				os.Exit(1)
			}
			return
		}
	}
	usage()
	os.Exit(2)
}
