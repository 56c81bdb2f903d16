package server

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/sluicemq/sluice"
)

// TestMetricsExportStreamsSubscriptionsAndFsync scrapes /metrics after some
// publishes, a rejection, a delivery and a dead letter, and checks the series a
// dashboard would plot.
func TestMetricsExportStreamsSubscriptionsAndFsync(t *testing.T) {
	ctx := context.Background()
	m := NewMetrics()
	b, err := sluice.Open(t.TempDir(), &sluice.Options{OnSync: m.ObserveSync})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	m.Attach(b)
	s, err := New(b, &Options{Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()

	if _, err := b.CreateStream(ctx, sluice.StreamConfig{Name: "jobs", MaxMessages: 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateSubscription(ctx, "jobs", sluice.SubscriptionConfig{Name: "w", MaxDeliveries: 1}); err != nil {
		t.Fatal(err)
	}
	for i := range 4 { // the fourth is refused: MaxMessages 3
		b.Publish(ctx, "jobs", sluice.Message{Body: []byte{byte(i)}})
	}
	c, err := b.NewConsumer(ctx, "jobs", "w", sluice.ConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ds, err := c.Fetch(ctx, 2)
	if err != nil || len(ds) != 2 {
		t.Fatalf("fetch: %d, %v", len(ds), err)
	}
	if err := c.Nack(ctx, ds[0], sluice.NackOptions{Reason: "boom"}); err != nil { // MaxDeliveries 1: dead-lettered
		t.Fatal(err)
	}

	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(body)
	for series, want := range map[string]float64{
		`sluice_stream_published_messages_total{stream="jobs"}`:                   3,
		`sluice_stream_messages{stream="jobs"}`:                                   3,
		`sluice_stream_rejected_total{stream="jobs"}`:                             1,
		`sluice_subscription_backlog_messages{stream="jobs",subscription="w"}`:    2,
		`sluice_subscription_in_flight{stream="jobs",subscription="w"}`:           1,
		`sluice_subscription_dead_lettered_total{stream="jobs",subscription="w"}`: 1,
		`sluice_stream_published_messages_total{stream="jobs.w.dlq"}`:             1,
	} {
		if got, ok := metricValue(text, series); !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", series, got, ok, want)
		}
	}
	if n, ok := metricValue(text, "sluice_fsync_duration_seconds_count"); !ok || n < 4 {
		t.Errorf("fsync histogram count %v (present %v), want one per durable publish at least", n, ok)
	}
	if !strings.Contains(text, "go_goroutines") {
		t.Error("no Go runtime metrics")
	}
}

func metricValue(text, series string) (float64, bool) {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`)
	m := re.FindStringSubmatch(text)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(m[1], 64)
	return v, err == nil
}
