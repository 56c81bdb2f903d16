package main

import (
	"fmt"
	"os"
)

type verb struct {
	name, summary string
	run           func(args []string) error
}

var verbs []verb

func init() {
	verbs = []verb{
		{"serve", "run the broker on 127.0.0.1:7070 with data in ./sluice-data", runServe},
		{"stream", "create, list, show or delete streams on --server", runStream},
		{"pub", "publish messages to a stream on --server", runPub},
		{"diskcheck", "measure fdatasync latency and synced sequential write bandwidth", runDiskcheck},
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: sluice [--server HOST:PORT] <verb> [flags]\n\nverbs:")
	for _, v := range verbs {
		fmt.Fprintf(os.Stderr, "  %-10s %s\n", v.name, v.summary)
	}
	fmt.Fprintln(os.Stderr, "\nsluice <verb> -h shows a verb's flags. --server defaults to $SLUICE_SERVER, else "+defaultServer+".")
}

func main() {
	args, err := parseGlobal(os.Args[1:])
	if err != nil || len(args) == 0 {
		usage()
		os.Exit(2)
	}
	for _, v := range verbs {
		if v.name == args[0] {
			if err := v.run(args[1:]); err != nil {
				fmt.Fprintf(os.Stderr, "sluice %s: %v\n", v.name, err)
				os.Exit(1)
			}
			return
		}
	}
	usage()
	os.Exit(2)
}
