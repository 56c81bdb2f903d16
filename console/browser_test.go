package console_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sluicemq/sluice"
	"github.com/sluicemq/sluice/console"
	"github.com/sluicemq/sluice/server"
)

// These tests drive the console in a real headless Chromium, as a user would.
// They skip, saying so, only when no browser is installed (.ci/run installs
// Debian's chromium). TestBrowserScreenshots saves the screenshots the README
// shows, when asked to:
//
//	SLUICE_SCREENSHOTS=$PWD/docs go test ./console -run Screenshots

// browserPath finds Chromium or Chrome.
func browserPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SLUICE_CHROME"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("console browser tests: no Chromium found (install Debian's chromium, or set SLUICE_CHROME to a Chrome binary)")
	return ""
}

// site is a broker and its server, with the console, on a loopback port.
type site struct {
	b   *sluice.Broker
	url string
}

func newSite(t *testing.T, tokens ...server.Token) *site {
	t.Helper()
	b, err := sluice.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.New(b, &server.Options{Console: console.Handler(), Tokens: tokens})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		s.Drain()
		hs.Close()
		b.Close()
	})
	return &site{b: b, url: hs.URL}
}

// newBrowser starts a headless browser for the test; its context times out
// after limit.
func newBrowser(t *testing.T, limit time.Duration) context.Context {
	t.Helper()
	path := browserPath(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // tests may run as root, where Chromium's sandbox refuses to start
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelBrowser := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, limit)
	t.Cleanup(func() {
		cancelTimeout()
		cancelBrowser()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx); err != nil { // start it now, to tell a broken browser from a failing page
		t.Fatalf("starting %s: %v", path, err)
	}
	return ctx
}

// action is a step of a test.
type action = chromedp.Action[chromedp.Void]

// waitJS waits until the JavaScript expression is true, up to a minute.
func waitJS(expr string) action {
	return chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(time.Minute))
}

// textHas waits until the element's text contains want.
func textHas(sel, want string) action {
	return waitJS(fmt.Sprintf(`(() => { const e = document.querySelector(%q); return !!e && e.textContent.includes(%q); })()`, sel, want))
}

// click clicks the first element the CSS selector matches.
func click(sel string) action { return chromedp.Click(chromedp.CSS(sel)) }

// typeIn types v into the first element the CSS selector matches.
func typeIn(sel, v string) action { return chromedp.SendKeys(chromedp.CSS(sel), v) }

// setValue sets the value of a form field.
func setValue(sel, v string) action { return chromedp.SetValue(chromedp.CSS(sel), v) }

// js runs a script for its effect.
func js(expr string) action {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := chromedp.Evaluate[any](expr)(ctx, tg)
		return err
	})
}

// run runs the steps, and on failure shows the page's error banner and text.
func run(t *testing.T, ctx context.Context, step string, actions ...action) {
	t.Helper()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v\n%s", step, err, pageText(ctx))
	}
}

// eval returns the value of a JavaScript expression.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("%s: %v\n%s", expr, err, pageText(ctx))
	}
	return v
}

func pageText(ctx context.Context) string {
	banner, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("#banner").textContent`))
	body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("main").innerText.slice(0, 2000)`))
	return "banner: " + banner + "\npage:\n" + body
}

func screenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("saved %s", filepath.Join(dir, name))
}

// TestBrowserDeadLetterAndRedrive: create a stream, publish, see the backlog,
// dead-letter the message by hand, find it in the dead-letter view with its
// reason and attempts, redrive it with the button, and see it delivered again.
func TestBrowserDeadLetterAndRedrive(t *testing.T) {
	s := newSite(t)
	ctx := newBrowser(t, 90*time.Second)

	run(t, ctx, "open the console",
		chromedp.Navigate(s.url+"/"),
		textHas("#streams-body", "No streams yet"))
	run(t, ctx, "create a stream",
		typeIn(`#create-stream input[name=name]`, "orders"),
		setValue(`#create-stream input[name=partitions]`, "2"),
		click(`#create-stream button`),
		textHas("h1", "orders"),
		textHas("#subs-body", "No subscriptions"))
	run(t, ctx, "create a subscription",
		typeIn(`#create-sub input[name=name]`, "billing"),
		click(`#create-sub button`),
		textHas("#subs-body", "billing"))
	run(t, ctx, "publish",
		typeIn(`#publish-form input[name=key]`, "user-42"),
		typeIn(`#publish-form input[name=headers]`, "trace=abc"),
		typeIn(`#publish-form textarea[name=body]`, `{"item":"book"}`),
		click(`#publish-form button`),
		textHas("#publish-result", "stored at partition"),
		textHas("#stream-messages", "1"),
		textHas(`#subs-body tr[data-sub=billing] td[data-field=backlog]`, "1"))
	run(t, ctx, "peek at the stream",
		js(`(() => { const r = document.querySelector("#publish-result").textContent.match(/partition (\d+)/); document.querySelector("#peek-form input[name=partition]").value = r[1]; })()`),
		click(`#peek-form button`),
		textHas("#peek-body", `{"item":"book"}`),
		textHas("#peek-body", "trace=abc"))

	run(t, ctx, "fetch and dead-letter it",
		click(`#subs-body tr[data-sub=billing] td a`),
		textHas("h1", "billing"),
		click(`#fetch-form button`),
		textHas("#deliveries-body", `{"item":"book"}`),
		click(`#deliveries-body button.term`),
		textHas("#deliveries-body", "dead-lettered"),
		textHas("#sub-dead", "1"))
	run(t, ctx, "open the dead letter",
		click(`#dlq-link`),
		textHas("h1", "Dead letters of billing"),
		textHas("#dlq-body", "terminated by consumer"),
		typeIn(`#dlq-filter input[name=contains]`, "no such error"),
		click(`#dlq-filter button`),
		textHas("#dlq-body", "No dead letters match"),
		setValue(`#dlq-filter input[name=contains]`, "in the console"), // the attempt's error
		click(`#dlq-filter button`),
		textHas("#dlq-body", "terminated by consumer"),
		click(`#dlq-body button.open`),
		textHas("#dlq-detail", `{"item":"book"}`),
		textHas("#dlq-detail", "user-42"),
		textHas("#dlq-detail", "trace=abc"),
		textHas("#dlq-detail table", "dead-lettered in the console")) // the attempt, with its error
	run(t, ctx, "redrive it with the button",
		click(`#dlq-body button.redrive-one`),
		textHas("#dlq-result", "1 redriven"),
		textHas("#dlq-body", "No dead letters"))

	run(t, ctx, "see it delivered again",
		chromedp.Navigate(s.url+"/#/s/orders/sub/billing"),
		textHas("h1", "billing"),
		click(`#fetch-form button`),
		textHas("#deliveries-body", `{"item":"book"}`),
		click(`#deliveries-body button.ack`),
		textHas("#deliveries-body", "acked"))

	info, err := s.b.Subscription(context.Background(), "orders", "billing")
	if err != nil {
		t.Fatal(err)
	}
	if info.Backlog != 0 || info.InFlight != 0 {
		t.Fatalf("after the ack: backlog %d, in flight %d; want 0 and 0", info.Backlog, info.InFlight)
	}
	dls, _, err := s.b.DeadLetters(context.Background(), "orders", "billing", sluice.DeadLetterQuery{IncludeRedriven: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 1 || !dls[0].Redriven {
		t.Fatalf("dead letters %+v; want the one, redriven", dls)
	}
}

// TestBrowserDrillProgressSurvivesReload: run a drill's timer, tick part of
// its checklist, run it live on the server, reload, and find the progress.
func TestBrowserDrillProgressSurvivesReload(t *testing.T) {
	s := newSite(t)
	ctx := newBrowser(t, 3*time.Minute)

	run(t, ctx, "open the drills",
		chromedp.Navigate(s.url+"/#/drills"),
		textHas("#drill-list", "not started"),
		click(`#drill-list li[data-drill="3"] a`),
		waitJS(`!!document.querySelector("#timer-start")`))
	if !eval[bool](t, ctx, `!document.querySelector("#checklist")`) {
		t.Fatal("the checklist shows before the timer ran")
	}
	run(t, ctx, "start the timer, then reveal",
		setValue(`#timer-minutes`, "7"),
		click(`#timer-start`),
		textHas("#clock", "6:5"),
		click(`#timer-stop`),
		waitJS(`!!document.querySelector("#checklist")`))
	run(t, ctx, "tick items 1 and 3",
		click(`#checklist input[data-item="0"]`),
		click(`#checklist input[data-item="2"]`))
	study := eval[int](t, ctx, `document.querySelectorAll("#study-list li").length`)
	items := eval[int](t, ctx, `document.querySelectorAll("#checklist input").length`)
	if study != items-2 {
		t.Fatalf("study list has %d items; want %d (checklist %d, 2 ticked)", study, items-2, items)
	}
	run(t, ctx, "run it live",
		click(`#run-live`),
		waitJS(`!!document.querySelector("#live-done")`))
	if eval[int](t, ctx, `document.querySelectorAll("#live-log table.figures tr").length`) == 0 {
		t.Fatal("the live run showed no figures")
	}

	run(t, ctx, "reload",
		chromedp.Reload(),
		waitJS(`!!document.querySelector("#checklist")`))
	ticked := eval[[]int](t, ctx, `Array.from(document.querySelectorAll("#checklist input")).filter(c => c.checked).map(c => Number(c.dataset.item))`)
	if fmt.Sprint(ticked) != "[0 2]" {
		t.Fatalf("after the reload the ticked items are %v; want [0 2]", ticked)
	}
	run(t, ctx, "the list says done",
		chromedp.Navigate(s.url+"/#/drills"),
		textHas(`#drill-list li[data-drill="3"]`, "done"),
		textHas(`#drill-list li[data-drill="3"]`, fmt.Sprintf("2/%d covered", items)))
	saved := eval[string](t, ctx, `localStorage.getItem("sluice.drills.v1")`)
	var prog map[string]struct {
		Done         bool   `json:"done"`
		Ticks        []int  `json:"ticks"`
		TimerMinutes int    `json:"timerMinutes"`
		DoneAt       string `json:"doneAt"`
	}
	if err := json.Unmarshal([]byte(saved), &prog); err != nil {
		t.Fatalf("local storage: %v: %s", err, saved)
	}
	if p := prog["3"]; !p.Done || p.TimerMinutes != 7 || len(p.Ticks) != 2 || p.DoneAt == "" {
		t.Fatalf("saved progress %+v", p)
	}
	// The scratch streams are gone.
	streams, err := s.b.ListStreams(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range streams {
		if strings.HasPrefix(st.Config.Name, "drill-") {
			t.Errorf("scratch stream %s left after the run", st.Config.Name)
		}
	}
}

// TestBrowserToken: against a server that requires a token, the page asks for
// one, and works once it is entered.
func TestBrowserToken(t *testing.T) {
	const secret = "console-test-secret-0123456789"
	s := newSite(t, server.Token{Name: "ops", Secret: secret, Admin: []string{"*"}, Publish: []string{"*"}, Consume: []string{"*"}})
	if _, err := s.b.CreateStream(context.Background(), sluice.StreamConfig{Name: "payments"}); err != nil {
		t.Fatal(err)
	}
	ctx := newBrowser(t, 60*time.Second)
	run(t, ctx, "without a token",
		chromedp.Navigate(s.url+"/"),
		textHas("#banner", "asks for a token"))
	run(t, ctx, "with the token",
		typeIn(`#token`, secret),
		click(`#token-form button`),
		textHas("#streams-body", "payments"))
}

// TestBrowserScreenshots saves the README's screenshots into
// $SLUICE_SCREENSHOTS: a stream with traffic, its dead letters, and a drill
// after its live run.
func TestBrowserScreenshots(t *testing.T) {
	dir := os.Getenv("SLUICE_SCREENSHOTS")
	if dir == "" {
		t.Skip("screenshots: set SLUICE_SCREENSHOTS=DIR to save them")
	}
	s := newSite(t)
	bg := context.Background()
	for _, st := range []sluice.StreamConfig{{Name: "emails", Partitions: 4}, {Name: "price-ticks", Partitions: 2}, {Name: "ingest", Partitions: 8}} {
		if _, err := s.b.CreateStream(bg, st); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.b.CreateSubscription(bg, "emails", sluice.SubscriptionConfig{Name: "senders", MaxDeliveries: 3, BackoffInitial: 50 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.b.CreateSubscription(bg, "emails", sluice.SubscriptionConfig{Name: "audit", Mode: sluice.KeyOrderedMode}); err != nil {
		t.Fatal(err)
	}
	// Traffic: publishers at a rising rate; a worker on senders that fails
	// the bad addresses until they are dead-lettered.
	ctx, stop := context.WithCancel(bg)
	defer stop()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ctx.Err() == nil; i++ {
			body := fmt.Sprintf(`{"to":"user%d@example.com","template":"welcome"}`, i)
			if i%40 == 7 {
				body = fmt.Sprintf(`{"to":"user%d@@bad","template":"welcome"}`, i)
			}
			_, _ = s.b.Publish(ctx, "emails", sluice.Message{Key: []byte(fmt.Sprintf("user-%d", i%50)), Body: []byte(body)})
			_, _ = s.b.Publish(ctx, "price-ticks", sluice.Message{Key: []byte("EURUSD"), Body: []byte(fmt.Sprintf(`{"bid":1.08%02d}`, i%100))})
			time.Sleep(time.Duration(20-min(i/20, 15)) * time.Millisecond)
		}
	}()
	c, err := s.b.NewConsumer(bg, "emails", "senders", sluice.ConsumerConfig{Name: "worker-1"})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for ctx.Err() == nil {
			ds, err := c.Fetch(ctx, 5)
			if err != nil {
				return
			}
			for _, d := range ds {
				if strings.Contains(string(d.Body), "@@") {
					_ = c.Nack(ctx, d, sluice.NackOptions{Reason: "smtp: 553 invalid recipient address"})
					continue
				}
				time.Sleep(15 * time.Millisecond)
				_ = c.Ack(ctx, d)
			}
		}
	}()
	bctx := newBrowser(t, 4*time.Minute)
	run(t, bctx, "watch the stream", chromedp.Navigate(s.url+"/#/s/emails"), textHas("#subs-body", "senders"), chromedp.Sleep(16*time.Second))
	run(t, bctx, "top", js(`window.scrollTo(0, 0)`))
	screenshot(t, bctx, dir, "console-stream.png")
	run(t, bctx, "dead letters",
		chromedp.Navigate(s.url+"/#/s/emails/sub/senders/dlq"),
		textHas("#dlq-body", "delivery limit"),
		click(`#dlq-body button.open`),
		textHas("#dlq-detail", "smtp: 553"))
	screenshot(t, bctx, dir, "console-dead-letters.png")
	stop()
	<-done
	run(t, bctx, "a drill",
		chromedp.Navigate(s.url+"/#/drills/3"),
		click(`#timer-start`),
		click(`#timer-stop`),
		click(`#checklist input[data-item="0"]`),
		click(`#checklist input[data-item="1"]`),
		click(`#checklist input[data-item="3"]`),
		click(`#run-live`),
		waitJS(`!!document.querySelector("#live-done")`))
	screenshot(t, bctx, dir, "console-drill.png")
}
