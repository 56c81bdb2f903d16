package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluicemq/sluice"
	"github.com/sluicemq/sluice/server"
)

// The configuration of sluice serve comes from, in rising precedence: the
// defaults, a JSON file (--config FILE, or SLUICE_CONFIG), SLUICE_* variables
// and flags. Every setting but the tokens can be given all three ways; the
// settings table names each in the three forms. Tokens live in the file,
// and SLUICE_TOKEN adds one that may do everything.

// Limits of the settings that serve itself uses.
const (
	minShutdownGrace = time.Millisecond
	maxShutdownGrace = time.Hour
	// maxConfigBytes bounds the config file.
	maxConfigBytes = 16 << 20
	// envTokenName names the token of SLUICE_TOKEN in errors and logs.
	envTokenName = "SLUICE_TOKEN"
)

// kind is the type of a setting's value.
type kind int

const (
	kindString kind = iota
	kindInt
	kindBool
	kindDuration
)

// setting is one configuration value, named in the file by key
// ("limits.max_connections"), on the command line by flag
// ("--max-connections") and in the environment by env
// ("SLUICE_MAX_CONNECTIONS").
type setting struct {
	key, flag string
	kind      kind
	usage     string
	// def is the default as the usage shows it.
	def string
	// field points at the value in c.
	field func(c *serveConfig) any
	// option is the server.Options field it sets, to name the setting in an
	// error from server.Options.Validate.
	option string
}

func (s *setting) env() string {
	return "SLUICE_" + strings.ToUpper(strings.ReplaceAll(s.flag, "-", "_"))
}

var settings = []setting{
	{key: "data", flag: "data", kind: kindString, def: "sluice-data",
		usage: "data directory, created if missing", field: func(c *serveConfig) any { return &c.Data }},
	{key: "listen", flag: "listen", kind: kindString, def: "127.0.0.1:7070",
		usage: "address to listen on, one port for HTTP/1.1 and HTTP/2 (gRPC); a non-loopback address needs tokens, client certificates or --insecure",
		field: func(c *serveConfig) any { return &c.Listen }},
	{key: "insecure", flag: "insecure", kind: kindBool, def: "false",
		usage: "allow a non-loopback --listen without authentication", field: func(c *serveConfig) any { return &c.Insecure }},
	{key: "console", flag: "console", kind: kindBool, def: "true",
		usage: "serve the web console at / on --listen (and on --console-listen)", field: func(c *serveConfig) any { return &c.Console }},
	{key: "console_listen", flag: "console-listen", kind: kindString,
		usage: "a second address serving the console on its own port, with the API beside it (the page calls it there); same exposure rule as --listen",
		field: func(c *serveConfig) any { return &c.ConsoleListen }},
	{key: "kafka.listen", flag: "kafka-listen", kind: kindString,
		usage: "also serve Kafka's wire protocol on this address (unmodified Kafka clients); same exposure rule and TLS as --listen, SASL/PLAIN with a token when tokens are set",
		field: func(c *serveConfig) any { return &c.KafkaListen }},
	{key: "kafka.advertised_addr", flag: "kafka-advertised-addr", kind: kindString,
		usage: "the host:port Kafka clients are told to connect to (default: the --kafka-listen address)",
		field: func(c *serveConfig) any { return &c.Kafka.AdvertisedAddr }},
	{key: "kafka.auto_create_topics", flag: "kafka-auto-create-topics", kind: kindBool, def: "false",
		usage: "let a Kafka client's Metadata request create the topics it names (1 partition)",
		field: func(c *serveConfig) any { return &c.Kafka.AutoCreateTopics }},
	{key: "shutdown_grace", flag: "shutdown-grace", kind: kindDuration, def: shutdownGrace.String(),
		usage: "how long a shutdown waits for calls in progress, 1ms..1h", field: func(c *serveConfig) any { return &c.ShutdownGrace }},
	{key: "tls.cert", flag: "tls-cert", kind: kindString,
		usage: "server certificate chain, PEM; turns TLS on (with --tls-key)", field: func(c *serveConfig) any { return &c.TLSCert }},
	{key: "tls.key", flag: "tls-key", kind: kindString,
		usage: "the server certificate's private key, PEM", field: func(c *serveConfig) any { return &c.TLSKey }},
	{key: "tls.client_ca", flag: "tls-client-ca", kind: kindString,
		usage: "CA certificates, PEM: when set, clients must present a certificate they signed",
		field: func(c *serveConfig) any { return &c.TLSClientCA }},
	{key: "limits.max_connections", flag: "max-connections", kind: kindInt, def: strconv.Itoa(server.DefaultMaxConnections),
		usage: "connections open at once, 1..1048576", option: "MaxConnections",
		field: func(c *serveConfig) any { return &c.Server.MaxConnections }},
	{key: "limits.max_streams_per_connection", flag: "max-streams-per-connection", kind: kindInt, def: strconv.Itoa(server.DefaultMaxStreamsPerConnection),
		usage: "calls in progress on one HTTP/2 connection, 1..10000", option: "MaxStreamsPerConnection",
		field: func(c *serveConfig) any { return &c.Server.MaxStreamsPerConnection }},
	{key: "limits.max_header_bytes", flag: "max-header-bytes", kind: kindInt, def: strconv.Itoa(server.DefaultMaxHeaderBytes),
		usage: "bytes of a request's headers, 4096..1048576", option: "MaxHeaderBytes",
		field: func(c *serveConfig) any { return &c.Server.MaxHeaderBytes }},
	{key: "limits.max_request_bytes", flag: "max-request-bytes", kind: kindInt, def: strconv.Itoa(server.DefaultMaxRequestBytes),
		usage: "bytes of one request message, 65536..268435456", option: "MaxRequestBytes",
		field: func(c *serveConfig) any { return &c.Server.MaxRequestBytes }},
	{key: "limits.read_header_timeout", flag: "read-header-timeout", kind: kindDuration, def: server.DefaultReadHeaderTimeout.String(),
		usage: "time to send a request's headers (and a TLS handshake), 1ms..24h", option: "ReadHeaderTimeout",
		field: func(c *serveConfig) any { return &c.Server.ReadHeaderTimeout }},
	{key: "limits.idle_timeout", flag: "idle-timeout", kind: kindDuration, def: server.DefaultIdleTimeout.String(),
		usage: "a connection with no call in progress is closed after this, 1ms..24h", option: "IdleTimeout",
		field: func(c *serveConfig) any { return &c.Server.IdleTimeout }},
	{key: "limits.ping_interval", flag: "ping-interval", kind: kindDuration, def: server.DefaultPingInterval.String(),
		usage: "an HTTP/2 connection silent this long is pinged, 1ms..24h", option: "PingInterval",
		field: func(c *serveConfig) any { return &c.Server.PingInterval }},
	{key: "limits.ping_timeout", flag: "ping-timeout", kind: kindDuration, def: server.DefaultPingTimeout.String(),
		usage: "a ping unanswered this long closes the connection, 1ms..24h", option: "PingTimeout",
		field: func(c *serveConfig) any { return &c.Server.PingTimeout }},
}

// fileToken is a token as the config file spells it.
type fileToken struct {
	Name    string   `json:"name"`
	Secret  string   `json:"secret"`
	Publish []string `json:"publish"`
	Consume []string `json:"consume"`
	Admin   []string `json:"admin"`
}

// defaultServeConfig is what sluice serve runs with when nothing is set.
func defaultServeConfig() serveConfig {
	return serveConfig{Data: "sluice-data", Listen: "127.0.0.1:7070", Console: true, ShutdownGrace: shutdownGrace}
}

// loader builds a serveConfig, remembering where each setting came from.
type loader struct {
	cfg serveConfig
	// from is where each setting key got its value: "config file F",
	// "SLUICE_X", "--x"; a key not in it has its default.
	from map[string]string
	// fileTokens is how many tokens came from the file; SLUICE_TOKEN's, if
	// any, follows them.
	fileTokens int
	configPath string
	// warnings are for the log, once there is one.
	warnings []string
}

// loadServeConfig parses serve's arguments and reads the file and the
// environment (getenv) they point to.
func loadServeConfig(args []string, getenv func(string) string) (serveConfig, []string, error) {
	l := &loader{cfg: defaultServeConfig(), from: map[string]string{}}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	var configPath string
	fs.StringVar(&configPath, "config", "", "JSON configuration file (SLUICE_CONFIG); flags and SLUICE_* variables override it")
	type flagValue struct {
		s     *setting
		name  string
		value string
	}
	var flags []flagValue
	for i := range settings {
		s := &settings[i]
		usage := s.usage
		if s.def != "" {
			usage += " (default " + s.def + ")"
		}
		usage += "; " + s.env() + "; " + s.key + " in the config file"
		record := func(name string) func(string) error {
			return func(v string) error {
				flags = append(flags, flagValue{s, name, v})
				return nil
			}
		}
		if s.kind == kindBool {
			fs.BoolFunc(s.flag, usage, record(s.flag))
		} else {
			fs.Func(s.flag, usage, record(s.flag))
		}
		if s.flag == "listen" {
			fs.Func("addr", "same as --listen", record("addr"))
		}
	}
	if err := fs.Parse(args); err != nil {
		return serveConfig{}, nil, err
	}
	if fs.NArg() > 0 {
		return serveConfig{}, nil, fmt.Errorf("unexpected argument %q: serve takes flags only", fs.Arg(0))
	}

	if configPath == "" {
		configPath = getenv("SLUICE_CONFIG")
	}
	if configPath != "" {
		if err := l.readFile(configPath); err != nil {
			return serveConfig{}, nil, err
		}
	}
	for i := range settings {
		s := &settings[i]
		if v := getenv(s.env()); v != "" {
			if err := l.set(s, v, s.env()); err != nil {
				return serveConfig{}, nil, err
			}
		}
	}
	if secret := getenv("SLUICE_TOKEN"); secret != "" {
		l.cfg.Server.Tokens = append(l.cfg.Server.Tokens, server.Token{
			Name: envTokenName, Secret: secret, Publish: []string{"*"}, Consume: []string{"*"}, Admin: []string{"*"}})
	}
	for _, f := range flags {
		if err := l.set(f.s, f.value, "--"+f.name); err != nil {
			return serveConfig{}, nil, err
		}
	}
	if err := l.validate(); err != nil {
		return serveConfig{}, nil, err
	}
	return l.cfg, l.warnings, nil
}

// set parses v as s's value; from says where v comes from ("--x", "SLUICE_X",
// "config file F").
func (l *loader) set(s *setting, v, from string) error {
	bad := func(want string) error {
		name := from
		if strings.HasPrefix(from, "config file ") {
			name = from + ": " + s.key
		}
		return fmt.Errorf("%s=%q: want %s", name, v, want)
	}
	switch p := s.field(&l.cfg).(type) {
	case *string:
		*p = v
	case *int:
		n, err := strconv.Atoi(v)
		if err != nil {
			return bad("an integer")
		}
		*p = n
	case *bool:
		b, err := strconv.ParseBool(v)
		if err != nil {
			return bad("true or false")
		}
		*p = b
	case *time.Duration:
		d, err := time.ParseDuration(v)
		if err != nil {
			return bad(`a duration such as "10s" or "2m"`)
		}
		*p = d
	default:
		panic(fmt.Sprintf("setting %s: field of type %T", s.key, p))
	}
	l.from[s.key] = from
	return nil
}

// readFile applies the config file. It refuses a field it does not know,
// naming it, and a value of the wrong type, naming its field.
func (l *loader) readFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	if len(data) > maxConfigBytes {
		return fmt.Errorf("config file %s: over %d bytes", path, maxConfigBytes)
	}
	l.configPath = path
	where := "config file " + path
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return fmt.Errorf("%s: not a JSON object: %w", where, err)
	}
	if err := l.readObject(where, "", top); err != nil {
		return err
	}
	if len(l.cfg.Server.Tokens) > 0 {
		if st, err := f.Stat(); err == nil && st.Mode().Perm()&0o077 != 0 {
			l.warnings = append(l.warnings, fmt.Sprintf("%s holds tokens and is readable by others (mode %v): chmod 600 it", path, st.Mode().Perm()))
		}
	}
	return nil
}

// readObject applies the fields of one JSON object whose keys start with
// prefix ("" or "limits.").
func (l *loader) readObject(where, prefix string, obj map[string]json.RawMessage) error {
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	slices.Sort(keys) // the first unknown field is the same on every run
	for _, k := range keys {
		raw, key := obj[k], prefix+k
		if key == "tokens" {
			if err := l.readTokens(where, raw); err != nil {
				return err
			}
			continue
		}
		if s := settingByKey(key); s != nil {
			if err := l.setJSON(where, s, raw); err != nil {
				return err
			}
			continue
		}
		if known := fieldsUnder(key + "."); len(known) > 0 {
			var sub map[string]json.RawMessage
			if err := json.Unmarshal(raw, &sub); err != nil || sub == nil {
				return fmt.Errorf("%s: %s: want an object with the fields %s", where, key, strings.Join(known, ", "))
			}
			if err := l.readObject(where, key+".", sub); err != nil {
				return err
			}
			continue
		}
		return fmt.Errorf("%s: unknown field %q; the fields %sare %s", where, key, inWhat(prefix), strings.Join(fieldsUnder(prefix), ", "))
	}
	return nil
}

func inWhat(prefix string) string {
	if prefix == "" {
		return ""
	}
	return "of " + strings.TrimSuffix(prefix, ".") + " "
}

func settingByKey(key string) *setting {
	for i := range settings {
		if settings[i].key == key {
			return &settings[i]
		}
	}
	return nil
}

// fieldsUnder lists the names, without prefix, of the fields in the object
// at prefix ("limits.", or "" for the top).
func fieldsUnder(prefix string) []string {
	var out []string
	add := func(key string) {
		if !strings.HasPrefix(key, prefix) {
			return
		}
		name, _, _ := strings.Cut(key[len(prefix):], ".")
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	for _, s := range settings {
		add(s.key)
	}
	add("tokens")
	return out
}

// setJSON applies one value of the file.
func (l *loader) setJSON(where string, s *setting, raw json.RawMessage) error {
	var v string
	var err error
	switch s.kind {
	case kindString, kindDuration:
		err = json.Unmarshal(raw, &v)
	case kindInt:
		var n int64
		if err = json.Unmarshal(raw, &n); err == nil {
			v = strconv.FormatInt(n, 10)
		}
	case kindBool:
		var b bool
		if err = json.Unmarshal(raw, &b); err == nil {
			v = strconv.FormatBool(b)
		}
	}
	if err != nil {
		want := map[kind]string{kindString: "a string", kindInt: "an integer", kindBool: "true or false",
			kindDuration: `a duration such as "10s" or "2m"`}[s.kind]
		return fmt.Errorf("%s: %s is %s: want %s", where, s.key, raw, want)
	}
	return l.set(s, v, where)
}

// readTokens reads the tokens array, refusing unknown fields.
func (l *loader) readTokens(where string, raw json.RawMessage) error {
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return fmt.Errorf(`%s: tokens: want an array of {"name", "secret", "publish", "consume", "admin"}`, where)
	}
	for i, item := range list {
		var t fileToken
		dec := json.NewDecoder(bytes.NewReader(item))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&t); err != nil {
			return fmt.Errorf("%s: tokens[%d]: %w (the fields are name, secret, publish, consume, admin)", where, i, err)
		}
		l.cfg.Server.Tokens = append(l.cfg.Server.Tokens, server.Token{
			Name: t.Name, Secret: t.Secret, Publish: t.Publish, Consume: t.Consume, Admin: t.Admin})
	}
	l.fileTokens = len(l.cfg.Server.Tokens)
	return nil
}

// validate checks the whole configuration; an error names the setting and
// where its value came from.
func (l *loader) validate() error {
	c := &l.cfg
	if c.ShutdownGrace < minShutdownGrace || c.ShutdownGrace > maxShutdownGrace {
		return l.invalid("shutdown_grace", fmt.Sprintf("%v outside [%v, %v]", c.ShutdownGrace, minShutdownGrace, maxShutdownGrace))
	}
	if c.Data == "" {
		return l.invalid("data", "required")
	}
	if c.Listen == "" {
		return l.invalid("listen", "required")
	}
	if c.ConsoleListen != "" && !c.Console {
		return l.invalid("console_listen", "set, but the console is off (console = false)")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		if c.TLSCert == "" {
			return l.invalid("tls.cert", "required with tls.key")
		}
		return l.invalid("tls.key", "required with tls.cert")
	}
	if c.TLSClientCA != "" && c.TLSCert == "" {
		return l.invalid("tls.client_ca", "client certificates need TLS: set tls.cert and tls.key too")
	}
	err := c.Server.Validate()
	var ie *sluice.InvalidError
	if err == nil || !errors.As(err, &ie) {
		return err
	}
	field := strings.TrimPrefix(ie.Field, "Options.")
	for _, s := range settings {
		if s.option != "" && s.option == field {
			return l.invalid(s.key, ie.Reason)
		}
	}
	if rest, ok := strings.CutPrefix(field, "Tokens"); ok {
		// "[2].Publish[0]" → tokens[2].publish[0], from the file or SLUICE_TOKEN.
		var i int
		fmt.Sscanf(rest, "[%d]", &i)
		from := "config file " + l.configPath
		if i >= l.fileTokens {
			from = "SLUICE_TOKEN"
		}
		return fmt.Errorf("invalid tokens%s (from %s): %s", strings.ToLower(rest), from, ie.Reason)
	}
	return fmt.Errorf("invalid %s: %s", field, ie.Reason)
}

// invalid is the error of a setting that breaks a rule: it says where the
// value came from, or, for one left unset, the ways to set it.
func (l *loader) invalid(key, reason string) error {
	if from, ok := l.from[key]; ok {
		return fmt.Errorf("invalid %s (from %s): %s", key, from, reason)
	}
	s := settingByKey(key)
	return fmt.Errorf("invalid %s: %s (set it in the config file, with --%s or with %s)", key, reason, s.flag, s.env())
}
