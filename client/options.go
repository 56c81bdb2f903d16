package client

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"time"

	"github.com/sluicemq/sluice"
)

// Limits and defaults of the options.
const (
	// DefaultTimeout bounds a unary call whose context has no deadline.
	DefaultTimeout = 30 * time.Second
	MinTimeout     = time.Millisecond
	MaxTimeout     = time.Hour
	// MaxTokenBytes bounds WithToken's token.
	MaxTokenBytes = 8 << 10
	// MaxPrefetch bounds WithPrefetch: the server's bound on a consumer's
	// outstanding credit, less the most one Fetch asks for.
	MaxPrefetch = 9000
)

// Option configures Dial.
type Option func(*options)

type options struct {
	httpClient *http.Client
	grpc       bool
	timeout    time.Duration
	token      string
	tls        *tls.Config
	noBatching bool
	prefetch   int
}

// WithHTTPClient makes the client send its calls through hc instead of its own
// h2c client. hc must speak HTTP/2 for the gRPC protocol and for streams; the
// Client does not close hc's idle connections on Close.
func WithHTTPClient(hc *http.Client) Option {
	return func(o *options) { o.httpClient = hc }
}

// WithGRPC makes the client use the gRPC protocol instead of Connect.
func WithGRPC() Option {
	return func(o *options) { o.grpc = true }
}

// WithTimeout bounds each unary call whose context has no deadline. Streams
// (readers) are not bounded. Default DefaultTimeout (30 s); limits
// [MinTimeout = 1 ms, MaxTimeout = 1 h].
func WithTimeout(d time.Duration) Option {
	return func(o *options) { o.timeout = d }
}

// WithToken sends "Authorization: Bearer <token>" with every call: the server
// checks it when it is configured with tokens. At most MaxTokenBytes.
func WithToken(token string) Option {
	return func(o *options) { o.token = token }
}

// WithTLS makes the client speak HTTPS (HTTP/2 over TLS) with cfg: its
// RootCAs to trust the server's certificate, its Certificates to present a
// client certificate. An address without a scheme then means https://. Not
// with WithHTTPClient, whose transport has its own TLS settings.
func WithTLS(cfg *tls.Config) Option {
	return func(o *options) { o.tls = cfg }
}

// WithPrefetch makes each consumer keep up to n deliveries coming ahead of
// its Fetch calls, so that the next batch is on its way while the last one is
// handled. Prefetched deliveries are leased like fetched ones: their lease
// runs from when the server sent them, and those no Fetch took when the
// consumer closes are handed back (nacked for redelivery at once, which counts
// as a delivery). Default 0: a consumer is sent only what its Fetch asks for.
// Limits [0, MaxPrefetch].
func WithPrefetch(n int) Option {
	return func(o *options) { o.prefetch = n }
}

// WithoutBatching sends each Publish as a call of its own. By default the
// publishes made to one stream while earlier ones are in flight are sent
// together in PublishBatch calls (at most 3 in flight per stream, 1,000
// messages or 4 MiB each), which serves many publishes with one round trip and
// one fsync. A batch fails as a whole only where each of its publishes would
// have failed alone: the server checks every message and makes room for all
// before it writes any, and a batch refused as invalid or full is sent again
// one message at a time.
func WithoutBatching() Option {
	return func(o *options) { o.noBatching = true }
}

func defaultOptions() options {
	return options{timeout: DefaultTimeout}
}

// limits is every number an option sets, with its bounds.
func (o *options) limits() []struct {
	field     string
	v, lo, hi int64
} {
	return []struct {
		field     string
		v, lo, hi int64
	}{
		{"WithTimeout", int64(o.timeout), int64(MinTimeout), int64(MaxTimeout)},
		{"WithToken", int64(len(o.token)), 0, MaxTokenBytes},
		{"WithPrefetch", int64(o.prefetch), 0, MaxPrefetch},
	}
}

func (o *options) validate() error {
	if o.tls != nil && o.httpClient != nil {
		return &sluice.InvalidError{Field: "WithTLS", Reason: "not with WithHTTPClient: set TLS on that client's transport"}
	}
	for _, l := range o.limits() {
		if l.v < l.lo || l.v > l.hi {
			if l.field == "WithTimeout" {
				return &sluice.InvalidError{Field: l.field, Reason: fmt.Sprintf("%v outside [%v, %v]", time.Duration(l.v), time.Duration(l.lo), time.Duration(l.hi))}
			}
			return &sluice.InvalidError{Field: l.field, Reason: fmt.Sprintf("%d outside [%d, %d]", l.v, l.lo, l.hi)}
		}
	}
	for _, c := range o.token {
		if c < 0x20 || c > 0x7e {
			return &sluice.InvalidError{Field: "WithToken", Reason: "holds a byte a header cannot carry"}
		}
	}
	return nil
}
