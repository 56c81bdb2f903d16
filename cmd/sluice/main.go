package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// verb is a word after "sluice": one file of this package each.
type verb struct {
	name, summary string
	run           func(args []string) error
}

var verbs []verb

func init() {
	verbs = []verb{
		{"serve", "run the broker on 127.0.0.1:7070 with data in ./sluice-data", runServe},
		{"stream", "create, list, show, update or delete streams", runStream},
		{"pub", "publish messages: arguments, standard input or a file, one per line", runPub},
		{"sub", "consume messages of a subscription, printing each body, and ack or nack them", runSub},
		{"subscription", "create, list, show, seek or delete subscriptions", runSubscription},
		{"dlq", "list, show, redrive or purge a subscription's dead letters", runDLQ},
		{"schedule", "create, list, pause, resume or delete schedules that publish periodically", runSchedule},
		{"stats", "every stream and subscription: messages, backlog, in flight, lag", runStats},
		{"top", "a live table of publish and consume rates, backlog and lag", runTop},
		{"diskcheck", "measure fdatasync latency and synced sequential write bandwidth", runDiskcheck},
		{"drill", "the four design drills: whiteboard, checklist, then a live run on an embedded broker", runDrill},
		{"help", "show the help of a verb: sluice help VERB", runHelp},
	}
}

const globalHelp = `sluice is a durable message broker. 'sluice serve' runs it; 'sluice drill'
runs on a broker of its own; the other verbs talk to a running server.

usage: sluice [global flags] VERB [arguments and flags]

verbs:
%s
global flags (before the verb):
  --server HOST:PORT   the server to talk to (SLUICE_SERVER; default 127.0.0.1:7070);
                       https://HOST:PORT turns TLS on
  --token TOKEN        bearer token, for a server that requires one (SLUICE_TOKEN)
  --tls                speak TLS, trusting the system's CAs (SLUICE_TLS=1)
  --ca-cert FILE       PEM file of the CA that signed the server's certificate;
                       turns TLS on (SLUICE_CA_CERT)
  --cert FILE          client certificate (PEM), for a server that asks for one;
                       with --key (SLUICE_CERT)
  --key FILE           the client certificate's key (PEM) (SLUICE_KEY)

examples:
  sluice serve --data ./sluice-data --listen 127.0.0.1:7070
  sluice stream create orders --partitions 4
  sluice pub orders --key user-42 '{"item":"book"}'
  sluice sub orders --subscription billing --count 10
  sluice --server broker:7070 --token "$SLUICE_TOKEN" stats

'sluice help VERB' (or 'sluice VERB --help') shows a verb's flags and examples.
`

// printUsage writes the list of verbs and the global flags.
func printUsage(w io.Writer) {
	list := ""
	for _, v := range verbs {
		list += fmt.Sprintf("  %-13s %s\n", v.name, v.summary)
	}
	fmt.Fprintf(w, globalHelp, list)
}

func main() {
	os.Exit(run(os.Args[1:]))
}

// run runs the command line args and returns the exit status: 0 on success
// (and for help asked for), 1 when the operation failed, 2 for a command line
// that cannot run.
func run(args []string) int {
	args, err := parseGlobal(args)
	if errors.Is(err, flag.ErrHelp) {
		printUsage(os.Stdout)
		return 0
	}
	if err == nil && len(args) == 0 {
		printUsage(os.Stderr)
		return 2
	}
	if err != nil {
		return report("", err)
	}
	name := args[0]
	for _, v := range verbs {
		if v.name == name {
			return report(v.name, v.run(args[1:]))
		}
	}
	ue := &usageError{msg: fmt.Sprintf("unknown verb %q", name), hint: "run 'sluice help' for the list of verbs"}
	if m := closest(name, verbNames()); m != "" {
		ue.hint = fmt.Sprintf("did you mean 'sluice %s'? ('sluice help' lists the verbs)", m)
	}
	return report("", ue)
}

func verbNames() []string {
	var n []string
	for _, v := range verbs {
		n = append(n, v.name)
	}
	return n
}

// report prints err for people, with what to do about it, and returns the
// exit status.
func report(verbName string, err error) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	prefix := "sluice: "
	if verbName != "" {
		prefix = "sluice " + verbName + ": "
	}
	var ue *usageError
	if errors.As(err, &ue) {
		if ue.cmd == nil && verbName != "" {
			ue.cmd = current // a value the verb's own checks refused
		}
		if ue.cmd != nil {
			prefix = "sluice " + ue.cmd.name + ": "
		}
		fmt.Fprintf(os.Stderr, "%s%s\n", prefix, ue.msg)
		if ue.cmd != nil {
			fmt.Fprintf(os.Stderr, "usage: %s\n", ue.cmd.synopsis())
		}
		if ue.hint != "" {
			fmt.Fprintln(os.Stderr, ue.hint)
		}
		if ue.cmd != nil {
			fmt.Fprintf(os.Stderr, "run 'sluice %s --help' for the flags and examples\n", ue.cmd.name)
		}
		return 2
	}
	if current != nil {
		prefix = "sluice " + current.name + ": "
	}
	fmt.Fprintf(os.Stderr, "%s%s\n", prefix, describe(err))
	if h := hint(err); h != "" {
		fmt.Fprintln(os.Stderr, h)
	}
	return 1
}

const helpHelp = `sluice help [VERB [COMMAND]]

Shows the verbs and the global flags, or the flags and examples of one verb.

examples:
  sluice help
  sluice help pub
  sluice help stream create`

// runHelp prints the help of the verb (and sub-verb) it names.
func runHelp(args []string) error {
	if len(args) == 0 {
		printUsage(os.Stdout)
		return nil
	}
	if args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Printf("usage: %s\n", helpHelp)
		return nil
	}
	for _, v := range verbs {
		if v.name == args[0] {
			return v.run(append(append([]string(nil), args[1:]...), "--help"))
		}
	}
	ue := &usageError{msg: fmt.Sprintf("no verb %q", args[0]), hint: "run 'sluice help' for the list of verbs"}
	if m := closest(args[0], verbNames()); m != "" {
		ue.hint = fmt.Sprintf("did you mean 'sluice help %s'?", m)
	}
	return ue
}
