package server

import (
	"context"
	"net/http"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/sluicemq/sluice"
	sluicev1 "github.com/sluicemq/sluice/gen/sluice/v1"
	"github.com/sluicemq/sluice/gen/sluice/v1/sluicev1connect"
)

// shutdownBound is how long Shutdown may take with streams open: far above
// the milliseconds it takes, far below a grace period it must not wait out.
const shutdownBound = 3 * time.Second

// TestShutdownEndsStreams opens one long-lived stream of each kind, idle as a
// stream waiting for its next message is, and shuts the server down: Shutdown
// returns within shutdownBound without cutting connections, and the stream
// ends with unavailable, "server shutting down", so that its client goes to
// another server.
func TestShutdownEndsStreams(t *testing.T) {
	for _, p := range protocols {
		for _, tc := range []struct {
			name string
			// open opens the stream and waits until the server has; wait
			// waits for what ends it.
			open func(t *testing.T, c allClients) (wait func() error)
		}{
			{"consume", func(t *testing.T, c allClients) func() error {
				st := c.cons.Consume(ctx(t))
				t.Cleanup(func() { st.CloseResponse() })
				if err := st.Send(&sluicev1.ConsumeRequest{Consumer: &sluicev1.Consumer{Stream: "s", Subscription: "w", Name: "c"}, Credit: 10}); err != nil {
					t.Fatal(err)
				}
				if _, err := st.Receive(); err != nil { // the call is open
					t.Fatal(err)
				}
				return func() error {
					for {
						if _, err := st.Receive(); err != nil {
							return err
						}
					}
				}
			}},
			{"read", func(t *testing.T, c allClients) func() error {
				rs, err := c.read.Read(ctx(t), connect.NewRequest(&sluicev1.ReadRequest{Stream: "s", Start: &sluicev1.StartAt{Position: &sluicev1.StartAt_Latest{Latest: true}}}))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { rs.Close() })
				return func() error {
					for rs.Receive() {
					}
					return rs.Err()
				}
			}},
			{"live", func(t *testing.T, c allClients) func() error {
				rs, err := c.read.SubscribeLive(ctx(t), connect.NewRequest(&sluicev1.SubscribeLiveRequest{Stream: "s"}))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { rs.Close() })
				return func() error {
					for rs.Receive() {
					}
					return rs.Err()
				}
			}},
			{"publish", func(t *testing.T, c allClients) func() error {
				st := c.publish.PublishStream(ctx(t))
				t.Cleanup(func() { st.CloseResponse() })
				if err := st.Send(&sluicev1.PublishStreamRequest{Stream: "s", Messages: []*sluicev1.Message{{Body: []byte("x")}}}); err != nil {
					t.Fatal(err)
				}
				if _, err := st.Receive(); err != nil {
					t.Fatal(err)
				}
				return func() error {
					for {
						if _, err := st.Receive(); err != nil {
							return err
						}
					}
				}
			}},
		} {
			t.Run(p.name+"/"+tc.name, func(t *testing.T) {
				s := serveReal(t, &Options{})
				if _, err := s.b.CreateStream(ctx(t), sluice.StreamConfig{Name: "s"}); err != nil {
					t.Fatal(err)
				}
				if _, err := s.b.CreateSubscription(ctx(t), "s", sluice.SubscriptionConfig{Name: "w"}); err != nil {
					t.Fatal(err)
				}
				c, hc := dialAll(s.addr, p)
				defer hc.CloseIdleConnections()
				wait := tc.open(t, c)
				ended := make(chan error, 1)
				go func() { ended <- wait() }()

				sctx, cancel := context.WithTimeout(context.Background(), shutdownBound)
				defer cancel()
				began := time.Now()
				if err := s.srv.Shutdown(sctx); err != nil {
					t.Fatalf("Shutdown after %v: %v", time.Since(began), err)
				}
				select {
				case err := <-ended:
					ce := wantCode(t, err, connect.CodeUnavailable)
					if ce.Message() != "server shutting down" {
						t.Fatalf("stream ended with %v", ce)
					}
				case <-time.After(shutdownBound):
					t.Fatal("the stream did not end")
				}
			})
		}
	}
}

// allClients are the generated clients of the streaming services.
type allClients struct {
	publish sluicev1connect.PublishServiceClient
	read    sluicev1connect.ReadServiceClient
	cons    sluicev1connect.ConsumerServiceClient
}

// dialAll returns clients of the server at addr over h2c, and their HTTP
// client.
func dialAll(addr string, p protocol) (allClients, *http.Client) {
	var h2 http.Protocols
	h2.SetUnencryptedHTTP2(true)
	hc := &http.Client{Transport: &http.Transport{Protocols: &h2}}
	url := "http://" + addr
	return allClients{
		publish: sluicev1connect.NewPublishServiceClient(hc, url, p.opts...),
		read:    sluicev1connect.NewReadServiceClient(hc, url, p.opts...),
		cons:    sluicev1connect.NewConsumerServiceClient(hc, url, p.opts...),
	}, hc
}
