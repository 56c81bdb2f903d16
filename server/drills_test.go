package server

import (
	"context"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	sluicev1 "github.com/sluicemq/sluice/gen/sluice/v1"
	"github.com/sluicemq/sluice/gen/sluice/v1/sluicev1connect"
)

func drillClient(e *env, token string) sluicev1connect.DrillServiceClient {
	var opts []connect.ClientOption
	if token != "" {
		opts = append(opts, bearer(token))
	}
	return sluicev1connect.NewDrillServiceClient(e.h2c, e.url, opts...)
}

// runDrill runs a drill to its end and returns its events.
func runDrill(t *testing.T, c sluicev1connect.DrillServiceClient, n int32) ([]*sluicev1.RunDrillResponse, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := c.RunDrill(ctx, connect.NewRequest(&sluicev1.RunDrillRequest{Number: n}))
	if err != nil {
		return nil, err
	}
	defer st.Close()
	var out []*sluicev1.RunDrillResponse
	for st.Receive() {
		out = append(out, st.Msg())
	}
	return out, st.Err()
}

func TestListDrills(t *testing.T) {
	e := setup(t, nil)
	res, err := drillClient(e, "").ListDrills(ctx(t), connect.NewRequest(&sluicev1.ListDrillsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	ds := res.Msg.GetDrills()
	if len(ds) != 4 {
		t.Fatalf("%d drills, want 4", len(ds))
	}
	for i, d := range ds {
		if d.GetNumber() != int32(i+1) || d.GetQuestion() == "" || len(d.GetChecklist()) == 0 || d.GetLive() == "" {
			t.Errorf("drill %d: %+v", i+1, d)
		}
	}
	if res.Msg.GetMinTimer().AsDuration() != 5*time.Minute || res.Msg.GetMaxTimer().AsDuration() != 10*time.Minute {
		t.Errorf("timer limits %v..%v, want 5m..10m", res.Msg.GetMinTimer().AsDuration(), res.Msg.GetMaxTimer().AsDuration())
	}
}

// TestRunDrill runs a drill through the API: its events arrive in order and
// end with the conclusion, carry figures, and the scratch streams are gone
// afterwards.
func TestRunDrill(t *testing.T) {
	e := setup(t, nil)
	events, err := runDrill(t, drillClient(e, ""), 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) < 3 || events[len(events)-1].GetKind() != "done" {
		t.Fatalf("events %v: want several, ending with done", events)
	}
	figures := 0
	var last time.Duration
	for _, ev := range events {
		figures += len(ev.GetFigures())
		if at := ev.GetAt().AsDuration(); at < last {
			t.Errorf("event at %v after one at %v", at, last)
		} else {
			last = at
		}
	}
	if figures == 0 {
		t.Error("no figures")
	}
	streams, err := e.b.ListStreams(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range streams {
		if strings.HasPrefix(s.Config.Name, drillStreamPrefix) {
			t.Errorf("scratch stream %s left after the run", s.Config.Name)
		}
	}
}

func TestRunDrillRefuses(t *testing.T) {
	e := setup(t, nil)
	c := drillClient(e, "")
	for _, n := range []int32{0, 5, -1} {
		_, err := runDrill(t, c, n)
		if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "1 to 4") {
			t.Errorf("drill %d: %v; want invalid_argument naming 1 to 4", n, err)
		}
	}
	// The running limit: take every slot, as running drills would.
	for range MaxDrillsRunning {
		e.srv.drills <- struct{}{}
	}
	_, err := runDrill(t, c, 1)
	if connect.CodeOf(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), "MaxDrillsRunning") {
		t.Errorf("over the limit: %v; want resource_exhausted naming MaxDrillsRunning", err)
	}
	for range MaxDrillsRunning {
		<-e.srv.drills
	}
}

func TestDrillAuth(t *testing.T) {
	const (
		all     = "all-permissions-secret-0123"
		drills  = "drill-streams-secret-012345"
		adminly = "admin-only-secret-0123456789"
	)
	e := setup(t, &Options{Tokens: []Token{
		{Name: "all", Secret: all, Admin: []string{"*"}, Publish: []string{"*"}, Consume: []string{"*"}},
		{Name: "drills", Secret: drills, Admin: []string{"drill-*"}, Publish: []string{"drill-*"}, Consume: []string{"drill-*"}},
		{Name: "adminly", Secret: adminly, Admin: []string{"*"}},
	}})
	if _, err := drillClient(e, "").ListDrills(ctx(t), connect.NewRequest(&sluicev1.ListDrillsRequest{})); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("ListDrills without a token: %v", err)
	}
	if _, err := drillClient(e, adminly).ListDrills(ctx(t), connect.NewRequest(&sluicev1.ListDrillsRequest{})); err != nil {
		t.Errorf("ListDrills with a token: %v", err)
	}
	// A bad number gets past the permission check to the handler.
	for _, tok := range []string{all, drills} {
		if _, err := runDrill(t, drillClient(e, tok), 9); connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("RunDrill with every permission on drill-*: %v; want the handler's invalid_argument", err)
		}
	}
	_, err := runDrill(t, drillClient(e, adminly), 1)
	if connect.CodeOf(err) != connect.CodePermissionDenied || !strings.Contains(err.Error(), "publish") || !strings.Contains(err.Error(), "drill-") {
		t.Errorf("RunDrill with admin only: %v; want permission_denied naming publish on drill-", err)
	}
}
