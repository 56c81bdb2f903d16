package server

import (
	"testing"

	"connectrpc.com/connect"

	"github.com/sluicemq/sluice"
	sluicev1 "github.com/sluicemq/sluice/gen/sluice/v1"
	"github.com/sluicemq/sluice/gen/sluice/v1/sluicev1connect"
)

// The Consume stream at the wire: credit bounds what the server sends, a
// settlement's error comes back in-band with its id and the stream goes on,
// and requests outside the limits end the call with the field named.
func TestConsumeStream(t *testing.T) {
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			e := setup(t, nil)
			if _, err := e.b.CreateStream(ctx(t), sluice.StreamConfig{Name: "s"}); err != nil {
				t.Fatal(err)
			}
			if _, err := e.b.CreateSubscription(ctx(t), "s", sluice.SubscriptionConfig{Name: "w"}); err != nil {
				t.Fatal(err)
			}
			for i := range 5 {
				if _, err := e.b.Publish(ctx(t), "s", sluice.Message{Body: []byte{byte('a' + i)}}); err != nil {
					t.Fatal(err)
				}
			}
			cons := sluicev1connect.NewConsumerServiceClient(e.h2c, e.url, p.opts...)
			who := &sluicev1.Consumer{Stream: "s", Subscription: "w", Name: "c"}

			st := cons.Consume(ctx(t))
			if err := st.Send(&sluicev1.ConsumeRequest{Consumer: who, Credit: 2}); err != nil {
				t.Fatal(err)
			}
			var got []*sluicev1.Delivery
			for len(got) < 2 {
				res, err := st.Receive()
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, res.GetDeliveries()...)
			}
			if len(got) != 2 || string(got[0].GetRecord().GetBody()) != "a" {
				t.Fatalf("credit 2 brought %d deliveries", len(got))
			}
			// Credit used up: nothing more until more is granted. Settle one
			// right and one with a wrong lease, in one request.
			bad := &sluicev1.DeliveryRef{Partition: 0, Offset: 1, Lease: got[1].GetLease() + 100}
			if err := st.Send(&sluicev1.ConsumeRequest{Settlements: []*sluicev1.Settlement{
				{Id: 7, Action: sluicev1.SettleAction_SETTLE_ACTION_ACK, Delivery: &sluicev1.DeliveryRef{Offset: 0, Lease: got[0].GetLease()}},
				{Id: 8, Action: sluicev1.SettleAction_SETTLE_ACTION_ACK, Delivery: bad},
				{Id: 9, Delivery: bad},
			}}); err != nil {
				t.Fatal(err)
			}
			res, err := st.Receive()
			if err != nil {
				t.Fatal(err)
			}
			if len(res.GetDeliveries()) != 0 {
				t.Fatalf("sent %d deliveries without credit", len(res.GetDeliveries()))
			}
			rs := res.GetResults()
			if len(rs) != 3 || rs[0].GetId() != 7 || rs[0].GetError() != nil ||
				rs[1].GetId() != 8 || rs[1].GetError().GetCode() != "failed_precondition" ||
				rs[2].GetError().GetCode() != "invalid_argument" || rs[2].GetError().GetFieldViolation().GetField() != "settlements.action" {
				t.Fatalf("results %v", rs)
			}
			if err := st.Send(&sluicev1.ConsumeRequest{Credit: 1}); err != nil {
				t.Fatal(err)
			}
			if res, err := st.Receive(); err != nil || len(res.GetDeliveries()) != 1 || string(res.GetDeliveries()[0].GetRecord().GetBody()) != "c" {
				t.Fatalf("after one more credit: %v, %v", res, err)
			}
			// Over the credit limit: the call ends, naming it.
			if err := st.Send(&sluicev1.ConsumeRequest{Credit: MaxConsumeCredit + 1}); err != nil {
				t.Fatal(err)
			}
			for {
				if _, err = st.Receive(); err != nil {
					break
				}
			}
			ce := wantCode(t, err, connect.CodeInvalidArgument)
			if fv := fieldViolation(t, ce); fv.GetField() != "credit" {
				t.Fatalf("field %q", fv.GetField())
			}
			st.CloseResponse()

			// A missing subscription fails the call at once.
			st = cons.Consume(ctx(t))
			st.Send(&sluicev1.ConsumeRequest{Consumer: &sluicev1.Consumer{Stream: "s", Subscription: "nope"}})
			_, err = st.Receive()
			wantCode(t, err, connect.CodeNotFound)
			st.CloseResponse()

			info, err := e.b.Subscription(ctx(t), "s", "w")
			if err != nil {
				t.Fatal(err)
			}
			if info.Backlog != 4 || info.InFlight != 2 {
				t.Fatalf("backlog %d, in flight %d; want 4, 2", info.Backlog, info.InFlight)
			}
		})
	}
}
