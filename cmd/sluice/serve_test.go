package main

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"testing"

	"github.com/sluicemq/sluice"
)

func TestStatusHandlerListsStreams(t *testing.T) {
	b, err := sluice.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.CreateStream(context.Background(), sluice.StreamConfig{Name: "jobs", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(statusHandler(b))
	defer srv.Close()

	resp, err := srv.Client().Get(srv.URL + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()
	resp, err = srv.Client().Get(srv.URL + "/v1/streams")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Streams []sluice.StreamInfo }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	if len(out.Streams) != 1 || out.Streams[0].Config.Name != "jobs" || len(out.Streams[0].Partitions) != 2 {
		t.Fatalf("streams: %+v", out.Streams)
	}
}
