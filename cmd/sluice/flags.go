package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/sluicemq/sluice"
	"github.com/sluicemq/sluice/client"
)

// defaultServer is where the client verbs connect without --server or
// SLUICE_SERVER.
const defaultServer = "127.0.0.1:7070"

// globals are the flags that come before the verb. Each has an environment
// variable, read when the flag is not given.
type globals struct {
	server string // --server, SLUICE_SERVER
	token  string // --token, SLUICE_TOKEN
	caCert string // --ca-cert, SLUICE_CA_CERT: PEM file of the CAs to trust
	cert   string // --cert, SLUICE_CERT: PEM client certificate
	key    string // --key, SLUICE_KEY: PEM key of the client certificate
	tls    bool   // --tls, SLUICE_TLS: TLS with the system's roots
}

// global holds the flags given before the verb, once main parsed them.
var global = globals{server: defaultServer}

// globalEnv pairs each global flag with its environment variable.
var globalEnv = []struct{ flag, env string }{
	{"server", "SLUICE_SERVER"}, {"token", "SLUICE_TOKEN"}, {"ca-cert", "SLUICE_CA_CERT"},
	{"cert", "SLUICE_CERT"}, {"key", "SLUICE_KEY"}, {"tls", "SLUICE_TLS"},
}

// parseGlobal takes the flags that come before the verb and returns the rest.
// A flag not given takes its environment variable; the defaults are not
// printed anywhere, so a token from the environment stays out of help texts.
func parseGlobal(args []string) ([]string, error) {
	fs := flag.NewFlagSet("sluice", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&global.server, "server", defaultServer, "")
	fs.StringVar(&global.token, "token", "", "")
	fs.StringVar(&global.caCert, "ca-cert", "", "")
	fs.StringVar(&global.cert, "cert", "", "")
	fs.StringVar(&global.key, "key", "", "")
	fs.BoolVar(&global.tls, "tls", false, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, &usageError{msg: flagError(err), hint: "run 'sluice help' for the global flags and the verbs"}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for _, g := range globalEnv {
		if v := os.Getenv(g.env); v != "" && !set[g.flag] {
			if err := fs.Set(g.flag, v); err != nil {
				return nil, &usageError{msg: fmt.Sprintf("%s=%q: %v", g.env, v, err)}
			}
		}
	}
	return fs.Args(), nil
}

// tlsConfig returns the client's TLS settings from the global flags, or nil
// when none asks for TLS.
func (g globals) tlsConfig() (*tls.Config, error) {
	if !g.wantsTLS() {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if g.caCert != "" {
		pem, err := os.ReadFile(g.caCert)
		if err != nil {
			return nil, fmt.Errorf("--ca-cert: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca-cert %s: no PEM certificate in it", g.caCert)
		}
	}
	if (g.cert == "") != (g.key == "") {
		return nil, errors.New("--cert and --key go together: the client certificate and its key")
	}
	if g.cert != "" {
		pair, err := tls.LoadX509KeyPair(g.cert, g.key)
		if err != nil {
			return nil, fmt.Errorf("--cert %s and --key %s: %w", g.cert, g.key, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// wantsTLS reports whether a global flag asks for TLS.
func (g globals) wantsTLS() bool {
	return g.tls || g.caCert != "" || g.cert != "" || g.key != "" || strings.HasPrefix(g.server, "https://")
}

// dial returns a client of the --server broker; it connects on the first call.
func dial() (sluice.Client, error) {
	var opts []client.Option
	if global.token != "" {
		opts = append(opts, client.WithToken(global.token))
	}
	tc, err := global.tlsConfig()
	if err != nil {
		return nil, err
	}
	addr := global.server
	if tc != nil {
		opts = append(opts, client.WithTLS(tc))
		// The TLS flags decide: a host:port then means https.
		addr = strings.TrimPrefix(strings.TrimPrefix(addr, "https://"), "http://")
	}
	c, err := client.Dial(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", global.server, err)
	}
	return c, nil
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

// flagError rewrites the flag package's errors with the double dash that the
// usage texts show.
func flagError(err error) string {
	s := err.Error()
	for _, p := range []string{"flag provided but not defined: -", "for flag -", "needs an argument: -"} {
		if strings.Contains(s, p) && !strings.Contains(s, p+"-") {
			s = strings.Replace(s, p, p+"-", 1)
		}
	}
	return s
}

// headerFlag collects repeated --header k=v flags.
type headerFlag []sluice.Header

func (h *headerFlag) String() string { return "" }

func (h *headerFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q is not key=value", s)
	}
	*h = append(*h, sluice.Header{Key: k, Value: []byte(v)})
	return nil
}

// sizeFlag is a byte count with an optional unit: 512, 64KiB, 10MB, 1GiB.
type sizeFlag int64

func (s *sizeFlag) String() string { return strconv.FormatInt(int64(*s), 10) }

func (s *sizeFlag) Set(v string) error {
	n, err := parseSize(v)
	if err != nil {
		return err
	}
	*s = sizeFlag(n)
	return nil
}

// sizeUnits are the suffixes parseSize knows, longest first within a prefix.
var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40}, {"B", 1},
}

// parseSize reads a byte count: digits and an optional unit (KiB, MiB, GiB and
// TiB are powers of 1024, KB, MB, GB and TB of 1000, a bare K, M, G, T counts
// as binary).
func parseSize(v string) (int64, error) {
	num, mult := v, int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(strings.ToUpper(v), strings.ToUpper(u.suffix)) {
			num, mult = strings.TrimSpace(v[:len(v)-len(u.suffix)]), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || (n > 0 && mult > (1<<62)/n) {
		return 0, fmt.Errorf("%q is not a size: a number of bytes with an optional unit (64KiB, 10MB, 1GiB)", v)
	}
	return n * mult, nil
}

// enumValue checks that v, given to --flagName, is one of allowed; dashes and
// underscores are the same, so key-ordered and key_ordered both work.
func enumValue(flagName, v string, allowed ...string) (string, error) {
	norm := strings.ReplaceAll(strings.ToLower(v), "-", "_")
	for _, a := range allowed {
		if norm == a {
			return a, nil
		}
	}
	return "", &usageError{msg: fmt.Sprintf("--%s %q: use one of %s", flagName, v, strings.Join(allowed, ", "))}
}

// durationOrZero formats d for people, "-" when zero.
func durationOrZero(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}
