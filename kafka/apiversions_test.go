package kafka

import (
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestApiVersionsDowngrade: a client newer than the server (KIP-511) asks
// with a version the server does not serve and gets a v0 answer,
// UNSUPPORTED_VERSION, with the versions it does serve; then asks again.
func TestApiVersionsDowngrade(t *testing.T) {
	e := setup(t, nil)
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	ask := func(version int16) []byte {
		t.Helper()
		body := requestFrame(kmsg.NewPtrApiVersionsRequest(), version)
		frame := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
		if _, err := c.Write(append(frame, body...)); err != nil {
			t.Fatal(err)
		}
		var size [4]byte
		if _, err := io.ReadFull(c, size[:]); err != nil {
			t.Fatal(err)
		}
		resp := make([]byte, binary.BigEndian.Uint32(size[:]))
		if _, err := io.ReadFull(c, resp); err != nil {
			t.Fatal(err)
		}
		if corr := binary.BigEndian.Uint32(resp); corr != 7 {
			t.Fatalf("correlation id %d, want 7", corr)
		}
		return resp[4:] // ApiVersions answers keep header v0, even when flexible
	}
	future := kmsg.NewPtrApiVersionsResponse()
	future.SetVersion(0)
	if err := future.ReadFrom(ask(99)); err != nil {
		t.Fatalf("the answer to v99 is not a v0 ApiVersions response: %v", err)
	}
	if future.ErrorCode != kerr.UnsupportedVersion.Code || len(future.ApiKeys) != len(handlers) {
		t.Fatalf("v99: error %d with %d keys; want UNSUPPORTED_VERSION with all %d", future.ErrorCode, len(future.ApiKeys), len(handlers))
	}
	var max int16
	for _, k := range future.ApiKeys {
		if k.ApiKey == apiVersionsKey {
			max = k.MaxVersion
		}
	}
	now := kmsg.NewPtrApiVersionsResponse()
	now.SetVersion(max)
	if err := now.ReadFrom(ask(max)); err != nil || now.ErrorCode != 0 {
		t.Fatalf("v%d: %v, error %d", max, err, now.ErrorCode)
	}
}
