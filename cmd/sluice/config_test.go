package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicemq/sluice/server"
)

// env is a fake environment for loadServeConfig.
func fakeEnv(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sluice.json")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestConfigDefaults(t *testing.T) {
	cfg, warnings, err := loadServeConfig(nil, fakeEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Data != "sluice-data" || cfg.Listen != "127.0.0.1:7070" || cfg.Insecure || cfg.ShutdownGrace != shutdownGrace ||
		cfg.TLSCert != "" || len(cfg.Server.Tokens) != 0 || cfg.Server.MaxConnections != 0 || len(warnings) != 0 {
		t.Fatalf("defaults: %+v %v", cfg, warnings)
	}
	// The old flags, as they always were.
	cfg, _, err = loadServeConfig([]string{"--data", "d", "-listen", "127.0.0.1:9"}, fakeEnv(nil))
	if err != nil || cfg.Data != "d" || cfg.Listen != "127.0.0.1:9" {
		t.Fatalf("--data and --listen: %+v %v", cfg, err)
	}
	cfg, _, err = loadServeConfig([]string{"-addr", "127.0.0.1:8"}, fakeEnv(nil))
	if err != nil || cfg.Listen != "127.0.0.1:8" {
		t.Fatalf("--addr: %+v %v", cfg, err)
	}
}

// TestConfigPrecedence sets values in the file, the environment and flags:
// flags win over the environment, which wins over the file, which wins over
// the defaults.
func TestConfigPrecedence(t *testing.T) {
	path := writeConfig(t, `{
		"data": "file-data",
		"listen": "127.0.0.1:1",
		"shutdown_grace": "3s",
		"limits": {"max_connections": 10, "idle_timeout": "1m", "read_header_timeout": "5s"},
		"tokens": [{"name": "app", "secret": "app-0123456789abcdef", "publish": ["orders.*"], "consume": ["orders.*"]}]
	}`)
	env := map[string]string{
		"SLUICE_CONFIG":          path,
		"SLUICE_LISTEN":          "127.0.0.1:2",
		"SLUICE_MAX_CONNECTIONS": "20",
		"SLUICE_IDLE_TIMEOUT":    "2m",
		"SLUICE_TOKEN":           "env-0123456789abcdef",
	}
	cfg, _, err := loadServeConfig([]string{"--max-connections", "30", "--insecure"}, fakeEnv(env))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"data (file)", cfg.Data, "file-data"},
		{"listen (env over file)", cfg.Listen, "127.0.0.1:2"},
		{"shutdown_grace (file)", cfg.ShutdownGrace, 3 * time.Second},
		{"max_connections (flag over env over file)", cfg.Server.MaxConnections, 30},
		{"idle_timeout (env over file)", cfg.Server.IdleTimeout, 2 * time.Minute},
		{"read_header_timeout (file)", cfg.Server.ReadHeaderTimeout, 5 * time.Second},
		{"max_header_bytes (default)", cfg.Server.MaxHeaderBytes, 0},
		{"insecure (flag)", cfg.Insecure, true},
		{"tokens", len(cfg.Server.Tokens), 2},
	} {
		if c.got != c.want {
			t.Errorf("%s: %v, want %v", c.name, c.got, c.want)
		}
	}
	if tok := cfg.Server.Tokens[1]; tok.Name != "SLUICE_TOKEN" || tok.Secret != env["SLUICE_TOKEN"] ||
		len(tok.Publish) != 1 || tok.Publish[0] != "*" || len(tok.Consume) != 1 || len(tok.Admin) != 1 {
		t.Errorf("the token of SLUICE_TOKEN: %+v", tok)
	}

	// --config wins over SLUICE_CONFIG.
	other := writeConfig(t, `{"data": "other-data"}`)
	cfg, _, err = loadServeConfig([]string{"--config", other}, fakeEnv(env))
	if err != nil || cfg.Data != "other-data" {
		t.Fatalf("--config over SLUICE_CONFIG: %+v %v", cfg, err)
	}
}

// TestConfigErrors checks that every bad configuration is refused with an
// error that names the field, and where its value came from.
func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		file string // the config file's content, when any
		env  map[string]string
		args []string
		says []string
	}{
		{name: "unknown field", file: `{"data": "d", "lisen": "x"}`,
			says: []string{`unknown field "lisen"`, "listen", "limits"}},
		{name: "unknown nested field", file: `{"limits": {"max_conections": 3}}`,
			says: []string{`unknown field "limits.max_conections"`, "max_connections"}},
		{name: "unknown token field", file: `{"tokens": [{"name": "a", "secret": "0123456789abcdefgh", "pubish": ["*"]}]}`,
			says: []string{"tokens[0]", `"pubish"`}},
		{name: "wrong type", file: `{"limits": {"max_connections": "many"}}`,
			says: []string{"limits.max_connections", "want an integer"}},
		{name: "bad duration in file", file: `{"limits": {"idle_timeout": "soon"}}`,
			says: []string{"limits.idle_timeout", "soon", "duration"}},
		{name: "not JSON", file: `listen = 1`, says: []string{"not a JSON object"}},
		{name: "group not an object", file: `{"tls": "yes"}`, says: []string{"tls", "cert, key, client_ca"}},
		{name: "out of bounds in file", file: `{"limits": {"max_connections": -1}}`,
			says: []string{"invalid limits.max_connections", "config file", "MinMaxConnections=1"}},
		{name: "out of bounds in env", env: map[string]string{"SLUICE_MAX_STREAMS_PER_CONNECTION": "100000"},
			says: []string{"invalid limits.max_streams_per_connection", "SLUICE_MAX_STREAMS_PER_CONNECTION", "outside"}},
		{name: "not a number in env", env: map[string]string{"SLUICE_MAX_HEADER_BYTES": "lots"},
			says: []string{"SLUICE_MAX_HEADER_BYTES", `"lots"`, "integer"}},
		{name: "bad flag duration", args: []string{"--read-header-timeout", "5"},
			says: []string{"--read-header-timeout", "duration"}},
		{name: "too short a timeout", args: []string{"--idle-timeout", "1us"},
			says: []string{"invalid limits.idle_timeout", "--idle-timeout", "outside"}},
		{name: "shutdown grace", args: []string{"--shutdown-grace", "2h"}, says: []string{"invalid shutdown_grace", "outside"}},
		{name: "bool", env: map[string]string{"SLUICE_INSECURE": "maybe"}, says: []string{"SLUICE_INSECURE", "true or false"}},
		{name: "cert without key", args: []string{"--tls-cert", "c.pem"}, says: []string{"invalid tls.key", "required with tls.cert"}},
		{name: "client CA without TLS", args: []string{"--tls-client-ca", "ca.pem"}, says: []string{"invalid tls.client_ca"}},
		{name: "short token", file: `{"tokens": [{"name": "a", "secret": "short", "admin": ["*"]}]}`,
			says: []string{"invalid tokens[0].secret", "config file", "MinTokenSecretBytes"}},
		{name: "short env token", env: map[string]string{"SLUICE_TOKEN": "short"},
			says: []string{"invalid tokens[0].secret", "SLUICE_TOKEN"}},
		{name: "bad pattern", file: `{"tokens": [{"name": "a", "secret": "0123456789abcdefgh", "consume": ["orders/*"]}]}`,
			says: []string{"invalid tokens[0].consume[0]", "orders/*"}},
		{name: "token granting nothing", file: `{"tokens": [{"name": "a", "secret": "0123456789abcdefgh"}]}`,
			says: []string{"invalid tokens[0]", "grants nothing"}},
		{name: "missing file", args: []string{"--config", "/nonexistent/sluice.json"}, says: []string{"config file", "no such file"}},
		{name: "positional argument", args: []string{"now"}, says: []string{`unexpected argument "now"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range tc.env {
				env[k] = v
			}
			if tc.file != "" {
				env["SLUICE_CONFIG"] = writeConfig(t, tc.file)
			}
			_, _, err := loadServeConfig(tc.args, fakeEnv(env))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, s := range tc.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("%q does not say %q", err, s)
				}
			}
		})
	}
}

func TestConfigWarnsOfReadableTokens(t *testing.T) {
	path := writeConfig(t, `{"tokens": [{"name": "a", "secret": "0123456789abcdefgh", "admin": ["*"]}]}`)
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	_, warnings, err := loadServeConfig([]string{"--config", path}, fakeEnv(nil))
	if err != nil || len(warnings) != 1 || !strings.Contains(warnings[0], "chmod 600") {
		t.Fatalf("%v %v", warnings, err)
	}
}

// TestEverySettingDocumented keeps the settings table and the server's
// options in step: each setting of a server option has a default the server
// agrees with.
func TestEverySettingDocumented(t *testing.T) {
	defaults := map[string]string{
		"MaxConnections":          "1024",
		"MaxStreamsPerConnection": "100",
		"MaxHeaderBytes":          "65536",
		"MaxRequestBytes":         "67108864",
		"ReadHeaderTimeout":       server.DefaultReadHeaderTimeout.String(),
		"IdleTimeout":             server.DefaultIdleTimeout.String(),
		"PingInterval":            server.DefaultPingInterval.String(),
		"PingTimeout":             server.DefaultPingTimeout.String(),
	}
	for _, s := range settings {
		if s.usage == "" {
			t.Errorf("%s has no usage", s.key)
		}
		if s.option == "" {
			continue
		}
		if want, ok := defaults[s.option]; !ok || s.def != want {
			t.Errorf("%s: default %q, want %q", s.key, s.def, want)
		}
		delete(defaults, s.option)
	}
	for o := range defaults {
		t.Errorf("no setting for server.Options.%s", o)
	}
}
