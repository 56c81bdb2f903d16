package server

import (
	"encoding/json"
	"strings"
	"testing"
)

// The consume path as curl drives it: create a subscription, fetch, ack, nack
// into the dead-letter stream, list and redrive it, all in plain JSON.

type jsonDelivery struct {
	Record struct {
		Partition int    `json:"partition"`
		Offset    string `json:"offset"`
		Body      string `json:"body"`
	} `json:"record"`
	Deliveries int    `json:"deliveries"`
	Lease      string `json:"lease"`
}

func (e *env) fetch(t *testing.T, body string) []jsonDelivery {
	t.Helper()
	code, out := e.post(t, "ConsumerService/Fetch", body)
	if code != 200 {
		t.Fatalf("fetch: %d %s", code, out)
	}
	var res struct {
		Deliveries []jsonDelivery `json:"deliveries"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("%s: %v", out, err)
	}
	return res.Deliveries
}

func ref(d jsonDelivery) string {
	return `{"partition": ` + itoa(d.Record.Partition) + `, "offset": "` + d.Record.Offset + `", "lease": "` + d.Lease + `"}`
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}

func TestHTTPJSONConsume(t *testing.T) {
	e := setup(t, nil)
	ok := func(procedure, body string) []byte {
		t.Helper()
		code, out := e.post(t, procedure, body)
		if code != 200 {
			t.Fatalf("%s: %d %s", procedure, code, out)
		}
		return out
	}
	ok("StreamService/CreateStream", `{"config": {"name": "emails"}}`)
	ok("SubscriptionService/CreateSubscription",
		`{"stream": "emails", "config": {"name": "send", "maxDeliveries": 2, "backoffInitial": "0.001s", "backoffMax": "0.001s"}}`)
	e.postError(t, "SubscriptionService/CreateSubscription", `{"stream": "emails", "config": {"name": "send"}}`, 409, "already_exists")
	ok("PublishService/Publish", `{"stream": "emails", "message": {"body": "aGVsbG8="}}`) // hello
	ok("PublishService/Publish", `{"stream": "emails", "message": {"body": "cG9pc29u"}}`) // poison
	const consumer = `"consumer": {"stream": "emails", "subscription": "send", "name": "curl"}`

	ds := e.fetch(t, `{`+consumer+`, "max": 10}`)
	if len(ds) != 2 || ds[0].Record.Body != "aGVsbG8=" || ds[0].Deliveries != 1 || ds[0].Lease == "" {
		t.Fatalf("fetched %+v", ds)
	}
	ok("ConsumerService/Ack", `{`+consumer+`, "delivery": `+ref(ds[0])+`}`)
	e.postError(t, "ConsumerService/Ack", `{`+consumer+`, "delivery": `+ref(ds[0])+`}`, 400, "failed_precondition")
	ok("ConsumerService/Nack", `{`+consumer+`, "delivery": `+ref(ds[1])+`, "reason": "mailbox full"}`)
	again := e.fetch(t, `{`+consumer+`, "max": 10, "wait": "10s"}`)
	if len(again) != 1 || again[0].Record.Body != "cG9pc29u" || again[0].Deliveries != 2 {
		t.Fatalf("redelivered %+v", again)
	}
	out := ok("ConsumerService/Extend", `{`+consumer+`, "delivery": `+ref(again[0])+`, "by": "60s"}`)
	if !strings.Contains(string(out), `"deadline"`) {
		t.Fatalf("extend answered %s", out)
	}
	ok("ConsumerService/Nack", `{`+consumer+`, "delivery": `+ref(again[0])+`, "reason": "mailbox still full"}`)

	// An empty fetch after its wait: an empty answer, not an error.
	if ds := e.fetch(t, `{`+consumer+`, "wait": "0.05s"}`); len(ds) != 0 {
		t.Fatalf("fetched %+v from an empty subscription", ds)
	}
	e.postError(t, "ConsumerService/Fetch", `{"consumer": {"stream": "emails", "subscription": "send"}}`, 400, "invalid_argument")
	e.postError(t, "ConsumerService/Fetch", `{`+consumer+`, "wait": "600s"}`, 400, "invalid_argument")
	e.postError(t, "ConsumerService/Fetch", `{"consumer": {"stream": "emails", "subscription": "nope", "name": "c"}}`, 404, "not_found")

	out = ok("SubscriptionService/ListDeadLetters", `{"stream": "emails", "subscription": "send"}`)
	var dl struct {
		DeadLetters []struct {
			Offset     string `json:"offset"`
			Deliveries int    `json:"deliveries"`
			Attempts   []struct {
				Error string `json:"error"`
			} `json:"attempts"`
			Message struct {
				Body string `json:"body"`
			} `json:"message"`
		} `json:"deadLetters"`
	}
	if err := json.Unmarshal(out, &dl); err != nil {
		t.Fatal(err)
	}
	if len(dl.DeadLetters) != 1 || dl.DeadLetters[0].Message.Body != "cG9pc29u" || dl.DeadLetters[0].Deliveries != 2 ||
		len(dl.DeadLetters[0].Attempts) != 2 || dl.DeadLetters[0].Attempts[1].Error != "mailbox still full" {
		t.Fatalf("dead letters %s", out)
	}
	ok("SubscriptionService/GetDeadLetter", `{"stream": "emails", "subscription": "send", "offset": "`+dl.DeadLetters[0].Offset+`"}`)
	out = ok("SubscriptionService/RedriveDeadLetters", `{"stream": "emails", "subscription": "send"}`)
	if !strings.Contains(string(out), `"redriven":1`) {
		t.Fatalf("redrive answered %s", out)
	}
	if ds := e.fetch(t, `{`+consumer+`}`); len(ds) != 1 || ds[0].Record.Body != "cG9pc29u" || ds[0].Deliveries != 1 {
		t.Fatalf("after redrive %+v", ds)
	}
	out = ok("SubscriptionService/GetSubscription", `{"stream": "emails", "name": "send"}`)
	if !strings.Contains(string(out), `"inFlight":1`) || !strings.Contains(string(out), `"deadLettered":"1"`) {
		t.Fatalf("subscription %s", out)
	}
	ok("SubscriptionService/PurgeDeadLetters", `{"stream": "emails", "subscription": "send"}`)
	ok("SubscriptionService/SeekSubscription", `{"stream": "emails", "name": "send", "to": {"earliest": true}}`)
	e.postError(t, "SubscriptionService/SeekSubscription", `{"stream": "emails", "name": "send"}`, 400, "invalid_argument")

	ok("ScheduleService/CreateSchedule", `{"config": {"name": "digest", "stream": "emails", "cron": "0 8 * * 1", "message": {"body": "ZGlnZXN0"}}}`)
	out = ok("ScheduleService/ListSchedules", `{}`)
	if !strings.Contains(string(out), `"name":"digest"`) || !strings.Contains(string(out), `"nextFire"`) {
		t.Fatalf("schedules %s", out)
	}
	ok("ScheduleService/PauseSchedule", `{"name": "digest", "paused": true}`)
	ok("ScheduleService/DeleteSchedule", `{"name": "digest"}`)
	e.postError(t, "ScheduleService/DeleteSchedule", `{"name": "digest"}`, 404, "not_found")
	ok("SubscriptionService/DeleteSubscription", `{"stream": "emails", "name": "send"}`)
}
