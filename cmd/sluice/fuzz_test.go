package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// FuzzServeConfig feeds serve's configuration loader a config file, command
// line flags and SLUICE_* variables. Whatever they hold, it must not panic; an
// error must say what is wrong; a configuration it accepts must be one the
// server accepts too (its limits and tokens validate), with the required
// settings present, and loading the same input again must give the same
// result.
func FuzzServeConfig(f *testing.F) {
	f.Add([]byte(`{"listen":"127.0.0.1:7070","data":"d"}`), "", "")
	f.Add([]byte(`{"limits":{"max_connections":10,"idle_timeout":"1m"}}`), "--max-connections 20", "SLUICE_IDLE_TIMEOUT=5s")
	f.Add([]byte(`{"tokens":[{"name":"a","secret":"0123456789abcdef0123","publish":["orders.*"],"consume":["*"]}]}`), "", "SLUICE_TOKEN=0123456789abcdef0123")
	f.Add([]byte(`{"tls":{"cert":"c.pem"}}`), "--listen 0.0.0.0:1 --insecure", "")
	f.Add([]byte(`{"shutdown_grace":"-1s","unknown":1}`), "--data=", "SLUICE_DATA=x\nSLUICE_LISTEN=")
	f.Add([]byte(`[]`), "extra", "")
	f.Add([]byte(`{"limits":{"max_request_bytes":1e30}}`), "--ping-timeout 1ns", "")
	f.Fuzz(func(t *testing.T, file []byte, args, env string) {
		if len(file) > 1<<16 || len(args) > 4096 || len(env) > 4096 {
			return
		}
		path := filepath.Join(t.TempDir(), "sluice.json")
		if err := os.WriteFile(path, file, 0o600); err != nil {
			t.Fatal(err)
		}
		vars := map[string]string{}
		for line := range strings.SplitSeq(env, "\n") {
			if k, v, ok := strings.Cut(line, "="); ok {
				vars[k] = v
			}
		}
		getenv := func(k string) string { return vars[k] }
		argv := append([]string{"--config", path}, strings.Fields(args)...)
		cfg, _, err := loadServeConfig(argv, getenv)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("an error with no message")
			}
			return
		}
		if cfg.Data == "" || cfg.Listen == "" {
			t.Fatalf("accepted without data or listen: %+v", cfg)
		}
		if cfg.ShutdownGrace < minShutdownGrace || cfg.ShutdownGrace > maxShutdownGrace {
			t.Fatalf("accepted shutdown grace %v", cfg.ShutdownGrace)
		}
		if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
			t.Fatalf("accepted one of tls.cert and tls.key without the other: %+v", cfg)
		}
		if err := cfg.Server.Validate(); err != nil {
			t.Fatalf("accepted options the server refuses: %v", err)
		}
		again, _, err := loadServeConfig(argv, getenv)
		if err != nil || !reflect.DeepEqual(cfg, again) {
			t.Fatalf("a second load differs: %+v, %v", again, err)
		}
	})
}

// FuzzParseSize checks the byte counts the CLI reads (--max-bytes and the
// like): an accepted size is never negative, a plain number is itself, and a
// number with a unit is that number times the unit.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"0", "512", "64KiB", "10MB", "1GiB", "1 T", "-1", "9223372036854775807", "8EiB", "KiB", "1.5MiB", "07b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseSize(s)
		if err != nil {
			if !strings.Contains(err.Error(), "is not a size") {
				t.Fatalf("%q: error %v does not say what is wrong", s, err)
			}
			return
		}
		if n < 0 {
			t.Fatalf("%q: accepted as %d", s, n)
		}
		if plain, perr := strconv.ParseInt(s, 10, 64); perr == nil && plain != n {
			t.Fatalf("%q: read as %d", s, n)
		}
		for _, u := range sizeUnits {
			if strings.HasSuffix(strings.ToUpper(s), strings.ToUpper(u.suffix)) {
				num, perr := strconv.ParseInt(strings.TrimSpace(s[:len(s)-len(u.suffix)]), 10, 64)
				if perr != nil || num*u.mult != n {
					t.Fatalf("%q: read as %d", s, n)
				}
				break
			}
		}
	})
}

// FuzzHeaderFlag checks --header: key=value with a key is taken, split at the
// first '=', and anything else is refused with the flag's value quoted.
func FuzzHeaderFlag(f *testing.F) {
	for _, s := range []string{"k=v", "k=", "=v", "k", "a=b=c", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var h headerFlag
		err := h.Set(s)
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			if err == nil {
				t.Fatalf("%q accepted", s)
			}
			return
		}
		if err != nil || len(h) != 1 || h[0].Key != k || string(h[0].Value) != v {
			t.Fatalf("%q: %+v, %v", s, h, err)
		}
	})
}
