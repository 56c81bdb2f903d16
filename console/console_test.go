package console_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestConsoleBesideTheAPI: the page and its assets are served with their
// security headers, the API's paths still reach the API, and anything else
// is a 404 that says where things are.
func TestConsoleBesideTheAPI(t *testing.T) {
	s := newSite(t)
	get := func(method, path, body string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(method, s.url+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, string(b)
	}
	for _, tc := range []struct {
		method, path, body string
		status             int
		ctype, has         string
	}{
		{"GET", "/", "", 200, "text/html", "<title>sluice console</title>"},
		{"HEAD", "/", "", 200, "text/html", ""},
		{"GET", "/app.js", "", 200, "javascript", "DrillService"},
		{"GET", "/style.css", "", 200, "text/css", ":root"},
		{"GET", "/nope.js", "", 404, "text/plain", "/sluice.v1.<Service>/<Method>"},
		{"GET", "/static/app.js", "", 404, "text/plain", "not found"},
		{"POST", "/", "{}", 405, "text/plain", "GET"},
		{"POST", "/sluice.v1.StreamService/ListStreams", "{}", 200, "application/json", "streams"},
		{"POST", "/sluice.v1.DrillService/ListDrills", "{}", 200, "application/json", "checklist"},
		{"GET", "/healthz", "", 200, "text/plain", "ok"},
	} {
		res, body := get(tc.method, tc.path, tc.body)
		if res.StatusCode != tc.status || !strings.Contains(res.Header.Get("Content-Type"), tc.ctype) || !strings.Contains(body, tc.has) {
			t.Errorf("%s %s: %d %q %.200q; want %d %q containing %q", tc.method, tc.path, res.StatusCode, res.Header.Get("Content-Type"), body, tc.status, tc.ctype, tc.has)
		}
		if tc.status == 200 && !strings.HasPrefix(tc.path, "/sluice.v1.") && tc.path != "/healthz" {
			if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
				t.Errorf("%s: Content-Security-Policy %q", tc.path, csp)
			}
			if res.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("%s: no nosniff", tc.path)
			}
		}
	}
}
