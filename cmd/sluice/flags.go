package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/sluicemq/sluice/client"
)

// defaultServer is where the client verbs connect without --server or
// SLUICE_SERVER.
const defaultServer = "127.0.0.1:7070"

// serverAddr is the broker the client verbs talk to: --server, before the verb.
var serverAddr = defaultServer

// parseGlobal takes the flags that come before the verb and returns the rest.
func parseGlobal(args []string) ([]string, error) {
	if env := os.Getenv("SLUICE_SERVER"); env != "" {
		serverAddr = env
	}
	fs := flag.NewFlagSet("sluice", flag.ContinueOnError)
	fs.StringVar(&serverAddr, "server", serverAddr, "the broker to talk to, host:port (or SLUICE_SERVER)")
	fs.Usage = usage
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return fs.Args(), nil
}

// parseInterleaved parses args whose flags may come before, between or after
// the positional arguments, and returns the positional ones in order. "--" ends
// the flags.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// dial connects to the --server broker.
func dial() (*client.Client, error) {
	addr := serverAddr
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	c, err := client.Dial(addr)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", serverAddr, err)
	}
	return c, nil
}
