package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"connectrpc.com/connect"

	"github.com/sluicemq/sluice"
	"github.com/sluicemq/sluice/client"
)

// usageError is a command line a verb cannot run. main prints it with the
// verb's synopsis and exits with status 2.
type usageError struct {
	cmd  *command // nil outside a verb's flags
	msg  string
	hint string // what to do, when there is more to say than the synopsis
}

func (e *usageError) Error() string { return e.msg }

// command is one verb's (or sub-verb's) flags and help text.
type command struct {
	name string // as typed: "pub", "stream create"
	help string // synopsis on the first line, then what it does and examples
	fs   *flag.FlagSet
	// sub is the --subscription flag of a verb that takes "STREAM SUB": the
	// flag gives the last positional argument (see subscriptionFlag).
	sub *string
}

// current is the command being run, so that an error from the server that
// names a field can name the flag that sets it.
var current *command

// newCommand returns a command whose flags are to be defined on c.fs. help
// starts with the synopsis ("sluice pub NAME [flags] [BODY...]").
func newCommand(name, help string) *command {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // main reports errors, with what to do
	fs.Usage = func() {}
	c := &command{name: name, help: strings.TrimSpace(help), fs: fs}
	current = c
	return c
}

// parse parses args, whose flags may come anywhere, and returns the positional
// arguments. -h and --help print the help to standard output and return
// flag.ErrHelp, which main turns into exit status 0.
func (c *command) parse(args []string) ([]string, error) {
	pos, err := parseInterleaved(c.fs, args)
	if errors.Is(err, flag.ErrHelp) {
		c.printHelp(os.Stdout)
		return nil, err
	}
	if err != nil {
		ue := &usageError{cmd: c, msg: flagError(err)}
		for _, g := range globalEnv {
			if strings.Contains(err.Error(), "not defined: -"+g.flag) {
				ue.hint = fmt.Sprintf("--%s is a global flag: put it before the verb, as in 'sluice --%s ... %s'", g.flag, g.flag, c.name)
			}
		}
		return nil, ue
	}
	return pos, nil
}

// synopsis is the first line of the help.
func (c *command) synopsis() string {
	s, _, _ := strings.Cut(c.help, "\n")
	return s
}

// usageErr returns a usage error of c.
func (c *command) usageErr(format string, a ...any) error {
	return &usageError{cmd: c, msg: fmt.Sprintf(format, a...)}
}

// args checks the number of positional arguments.
func (c *command) args(pos []string, names ...string) error {
	switch {
	case len(pos) < len(names):
		return c.usageErr("missing %s", strings.Join(names[len(pos):], " and "))
	case len(pos) > len(names):
		return c.usageErr("unexpected argument %q", pos[len(names)])
	}
	return nil
}

// subscriptionFlag defines --subscription SUB, which parseArgs takes as the
// last positional argument: "STREAM SUB" and "STREAM --subscription SUB" are
// the same.
func (c *command) subscriptionFlag(usage string) {
	c.sub = c.fs.String("subscription", "", usage)
}

// parseArgs parses args and checks that the positional arguments are the ones
// names lists, --subscription counted as the last.
func (c *command) parseArgs(args []string, names ...string) ([]string, error) {
	pos, err := c.parse(args)
	if err != nil {
		return nil, err
	}
	if c.sub != nil && *c.sub != "" {
		pos = append(pos, *c.sub)
	}
	if err := c.args(pos, names...); err != nil {
		return nil, err
	}
	return pos, nil
}

// connect is parseArgs, then dial, for a verb that has nothing more to check
// before it talks to the server. The caller closes the client.
func (c *command) connect(args []string, names ...string) ([]string, sluice.Client, error) {
	pos, err := c.parseArgs(args, names...)
	if err != nil {
		return nil, nil, err
	}
	cl, err := dial()
	if err != nil {
		return nil, nil, err
	}
	return pos, cl, nil
}

// printHelp writes the usage, the explanation, the examples and the flags.
func (c *command) printHelp(w io.Writer) {
	fmt.Fprintf(w, "usage: %s\n", c.help)
	var flags []*flag.Flag
	c.fs.VisitAll(func(f *flag.Flag) { flags = append(flags, f) })
	if len(flags) > 0 {
		fmt.Fprintln(w, "\nflags:")
		printFlags(w, flags)
	}
	fmt.Fprintln(w, "\nGlobal flags (--server, --token, TLS) go before the verb: 'sluice help' lists them.")
}

// printFlags lists flags with a double dash, their value's name and default.
func printFlags(w io.Writer, flags []*flag.Flag) {
	for _, f := range flags {
		typ, usage := flag.UnquoteUsage(f)
		name := "--" + f.Name
		if typ != "" {
			name += " " + typ
		}
		if def := f.DefValue; def != "" && def != "0" && def != "false" && def != "0s" && def != "[]" {
			usage += fmt.Sprintf(" (default %s)", def)
		}
		if len(name) <= 22 {
			fmt.Fprintf(w, "  %-22s %s\n", name, usage)
		} else {
			fmt.Fprintf(w, "  %s\n  %-22s %s\n", name, "", usage)
		}
	}
}

// group is a verb made of sub-verbs: stream, subscription, dlq, schedule.
type group struct {
	name string
	help string // synopsis, then the sub-verbs' one-line forms and examples
	subs []verb
}

// run dispatches to the sub-verb named by args[0].
func (g group) run(args []string) error {
	gc := &command{name: g.name, help: strings.TrimSpace(g.help), fs: flag.NewFlagSet(g.name, flag.ContinueOnError)}
	if len(args) == 0 {
		return &usageError{cmd: gc, msg: "missing the command: one of " + g.names()}
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		if len(args) > 1 && args[0] == "help" {
			return g.run(append(args[1:2], "--help"))
		}
		fmt.Fprintf(os.Stdout, "usage: %s\n", gc.help)
		return flag.ErrHelp
	}
	for _, s := range g.subs {
		if s.name == args[0] {
			return s.run(args[1:])
		}
	}
	ue := &usageError{cmd: gc, msg: fmt.Sprintf("unknown command %q: use one of %s", args[0], g.names())}
	if m := closest(args[0], g.subNames()); m != "" {
		ue.hint = fmt.Sprintf("did you mean 'sluice %s %s'?", g.name, m)
	}
	return ue
}

func (g group) subNames() []string {
	var n []string
	for _, s := range g.subs {
		n = append(n, s.name)
	}
	return n
}

func (g group) names() string { return strings.Join(g.subNames(), ", ") }

// closest returns the candidate within two edits of s, or "".
func closest(s string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if d := editDistance(s, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// describe turns an error into one line for people: the server's own message,
// without the client's layers of operation names and codes.
func describe(err error) string {
	full := err.Error()
	var ce *connect.Error
	var ie *sluice.InvalidError
	var fe *sluice.StreamFullError
	var msg string
	switch {
	case errors.As(err, &ie):
		msg = ie.Error()
	case errors.As(err, &fe):
		msg = fe.Error()
	case errors.As(err, &ce):
		msg = ce.Message()
		if ce.Code() == connect.CodeUnavailable || isTransport(err) {
			msg = fmt.Sprintf("cannot reach the server at %s: %s", global.server, msg)
		}
	default:
		return strings.TrimPrefix(full, "sluice: ")
	}
	prefix := ""
	if i := strings.Index(full, "client: "); i > 0 {
		prefix = full[:i] // the verb's own context, before the client's
	}
	return prefix + strings.TrimPrefix(msg, "sluice: ")
}

// isTransport reports an error of the connection rather than of the call.
func isTransport(err error) bool {
	s := err.Error()
	return strings.Contains(s, "dial tcp") || strings.Contains(s, "connection refused") || strings.Contains(s, "tls:") || strings.Contains(s, "x509:")
}

// hint says what to do about err, or "".
func hint(err error) string {
	s := err.Error()
	var ie *sluice.InvalidError
	switch {
	case strings.Contains(s, "x509:") || strings.Contains(s, "certificate signed by unknown authority"):
		return "the server's certificate is not trusted: pass the CA that signed it with --ca-cert FILE (or SLUICE_CA_CERT)"
	case strings.Contains(s, "server gave HTTP response to HTTPS client") || strings.Contains(s, "first record does not look like a TLS handshake"):
		return "the server does not speak TLS: drop --tls, --ca-cert, --cert, --key and https://"
	case strings.Contains(s, "certificate required") || strings.Contains(s, "bad certificate"):
		return "the server asks for a client certificate: pass --cert FILE and --key FILE (or SLUICE_CERT and SLUICE_KEY)"
	case strings.Contains(s, "connection refused"):
		return fmt.Sprintf("is 'sluice serve' running at %s? Point --server (or SLUICE_SERVER) at it", global.server)
	case errors.Is(err, sluice.ErrUnauthenticated) && global.token == "":
		return "the server requires a token: pass it with --token TOKEN (or SLUICE_TOKEN)"
	case errors.Is(err, sluice.ErrUnauthenticated):
		return "the server refused the token: check --token (or SLUICE_TOKEN)"
	case errors.Is(err, sluice.ErrPermissionDenied):
		return "the token lacks the permission on this stream: use one that has it"
	case (errors.Is(err, sluice.ErrUnavailable) || isTransport(err)) && !global.wantsTLS():
		return "if the server uses TLS, pass --ca-cert FILE or --tls"
	case (errors.Is(err, sluice.ErrUnavailable) || isTransport(err)) && global.cert == "":
		return "if the server asks for a client certificate, pass --cert FILE and --key FILE (or SLUICE_CERT and SLUICE_KEY)"
	case errors.Is(err, client.ErrUnimplemented):
		return "the server does not serve this call: upgrade it"
	case errors.Is(err, sluice.ErrStreamNotFound):
		return "'sluice stream list' lists the streams; 'sluice stream create NAME' creates one"
	case errors.Is(err, sluice.ErrSubscriptionNotFound):
		return "'sluice subscription list STREAM' lists them; 'sluice subscription create STREAM SUB' creates one"
	case errors.Is(err, sluice.ErrScheduleNotFound):
		return "'sluice schedule list' lists the schedules"
	case errors.Is(err, sluice.ErrDeadLetterNotFound):
		return "'sluice dlq list STREAM --subscription SUB' lists the dead letters with their offsets"
	case errors.Is(err, sluice.ErrStreamExists):
		return "'sluice stream info NAME' shows it; 'sluice stream update NAME' changes it"
	case errors.Is(err, sluice.ErrSubscriptionExists):
		return "'sluice subscription info STREAM SUB' shows it"
	case errors.Is(err, sluice.ErrScheduleExists):
		return "choose another name, or remove it first with 'sluice schedule delete NAME'"
	case errors.Is(err, sluice.ErrStreamFull):
		return "the stream is at its bound: let its consumers catch up and retry, or raise it with 'sluice stream update NAME --max-messages N' (or --max-bytes)"
	case errors.Is(err, client.ErrLimit):
		return "the request is over a limit of the server, named above: send less at once (smaller messages or batches)"
	case errors.Is(err, sluice.ErrStaleLease):
		return "the lease ran out before the settlement and the message went back to the subscription: a longer --lease gives more time"
	case errors.As(err, &ie):
		if f := flagForField(ie.Field); f != "" {
			return "fix --" + f
		}
	}
	return ""
}

// flagForField names the flag of the current command that sets a request
// field ("config.max_messages" → max-messages), or "".
func flagForField(field string) string {
	if current == nil || field == "" {
		return ""
	}
	last := field[strings.LastIndex(field, ".")+1:]
	name := strings.ReplaceAll(last, "_", "-")
	if f := current.fs.Lookup(name); f != nil {
		return f.Name
	}
	return ""
}
