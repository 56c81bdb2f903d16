package server

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sluicemq/sluice"
)

// Metrics exports a broker to Prometheus. Make it before opening the broker, so
// that the broker's Options.OnSync can be ObserveSync; then Attach the broker
// and serve Handler (Options.Metrics does it at /metrics).
//
// Streams and subscriptions are read when Prometheus scrapes, so a metric costs
// nothing between scrapes. Counters count since the broker started.
type Metrics struct {
	reg  *prometheus.Registry
	sync prometheus.Histogram
}

// NewMetrics returns the metrics of a broker to be opened, with the Go runtime's
// and the process's own.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		sync: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sluice_fsync_duration_seconds",
			Help:    "Time of each fdatasync of appended stream data.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16), // 50 µs .. 1.6 s
		}),
	}
	m.reg.MustRegister(m.sync, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// ObserveSync records one fdatasync: pass it as sluice.Options.OnSync.
func (m *Metrics) ObserveSync(d time.Duration) { m.sync.Observe(d.Seconds()) }

// Attach exports b's streams and subscriptions.
func (m *Metrics) Attach(b *sluice.Broker) { m.reg.MustRegister(brokerCollector{b}) }

// Handler serves the metrics in Prometheus' text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// scrapeTimeout bounds the broker reads of one scrape.
const scrapeTimeout = 10 * time.Second

var (
	streamLabels = []string{"stream"}
	subLabels    = []string{"stream", "subscription"}

	mStreamMessages  = prometheus.NewDesc("sluice_stream_messages", "Messages the stream stores.", streamLabels, nil)
	mStreamBytes     = prometheus.NewDesc("sluice_stream_bytes", "Bytes the stream's logs hold.", streamLabels, nil)
	mPublished       = prometheus.NewDesc("sluice_stream_published_messages_total", "Messages stored by publishes.", streamLabels, nil)
	mPublishedBytes  = prometheus.NewDesc("sluice_stream_published_bytes_total", "Encoded bytes stored by publishes.", streamLabels, nil)
	mRejected        = prometheus.NewDesc("sluice_stream_rejected_total", "Publishes refused because the stream was full.", streamLabels, nil)
	mBlocked         = prometheus.NewDesc("sluice_stream_blocked_total", "Publishes that waited for room.", streamLabels, nil)
	mBlockedSeconds  = prometheus.NewDesc("sluice_stream_blocked_seconds_total", "Time publishes spent waiting for room.", streamLabels, nil)
	mDropped         = prometheus.NewDesc("sluice_stream_dropped_total", "Messages dropped to make room (overflow drop_oldest).", streamLabels, nil)
	mDuplicates      = prometheus.NewDesc("sluice_stream_duplicates_total", "Publishes answered from the dedupe index.", streamLabels, nil)
	mDedupeKeys      = prometheus.NewDesc("sluice_stream_dedupe_keys", "Idempotency keys the dedupe index holds.", streamLabels, nil)
	mDedupeEvicted   = prometheus.NewDesc("sluice_stream_dedupe_evicted_total", "Idempotency keys forgotten before their window passed.", streamLabels, nil)
	mBacklog         = prometheus.NewDesc("sluice_subscription_backlog_messages", "Messages not yet settled.", subLabels, nil)
	mBacklogAge      = prometheus.NewDesc("sluice_subscription_backlog_age_seconds", "Age of the oldest message not yet settled (0 when none).", subLabels, nil)
	mInFlight        = prometheus.NewDesc("sluice_subscription_in_flight", "Deliveries under a lease.", subLabels, nil)
	mWaiting         = prometheus.NewDesc("sluice_subscription_waiting", "Messages waiting for a retry.", subLabels, nil)
	mDelayed         = prometheus.NewDesc("sluice_subscription_delayed", "Messages held back until their DeliverAt.", subLabels, nil)
	mHeld            = prometheus.NewDesc("sluice_subscription_held", "Messages waiting behind an earlier one of their key.", subLabels, nil)
	mParked          = prometheus.NewDesc("sluice_subscription_parked_keys", "Keys whose oldest message failed and waits for a retry.", subLabels, nil)
	mRedeliveries    = prometheus.NewDesc("sluice_subscription_redeliveries_total", "Deliveries after the first.", subLabels, nil)
	mDeadLettered    = prometheus.NewDesc("sluice_subscription_dead_lettered_total", "Messages moved to the dead-letter stream.", subLabels, nil)
	brokerMetricDesc = []*prometheus.Desc{mStreamMessages, mStreamBytes, mPublished, mPublishedBytes, mRejected, mBlocked,
		mBlockedSeconds, mDropped, mDuplicates, mDedupeKeys, mDedupeEvicted, mBacklog, mBacklogAge, mInFlight, mWaiting,
		mDelayed, mHeld, mParked, mRedeliveries, mDeadLettered}
)

// brokerCollector reads a broker's streams and subscriptions at each scrape.
type brokerCollector struct{ b *sluice.Broker }

func (c brokerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range brokerMetricDesc {
		ch <- d
	}
}

func (c brokerCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	streams, err := c.b.ListStreams(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(mStreamMessages, err)
		return
	}
	now := time.Now()
	for _, st := range streams {
		name := st.Config.Name
		k := st.Counters
		gauge := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, name)
		}
		counter := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, name)
		}
		gauge(mStreamMessages, float64(st.Messages))
		gauge(mStreamBytes, float64(st.Bytes))
		counter(mPublished, float64(k.Published))
		counter(mPublishedBytes, float64(k.PublishedBytes))
		counter(mRejected, float64(k.Rejected))
		counter(mBlocked, float64(k.Blocked))
		counter(mBlockedSeconds, k.BlockedTime.Seconds())
		counter(mDropped, float64(k.Dropped))
		counter(mDuplicates, float64(k.Duplicates))
		gauge(mDedupeKeys, float64(k.DedupeKeys))
		counter(mDedupeEvicted, float64(k.DedupeEvicted))
		subs, err := c.b.ListSubscriptions(ctx, name)
		if err != nil {
			continue // deleted since it was listed
		}
		for _, sub := range subs {
			sg := func(d *prometheus.Desc, v float64) {
				ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, name, sub.Config.Name)
			}
			sc := func(d *prometheus.Desc, v float64) {
				ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, name, sub.Config.Name)
			}
			sg(mBacklog, float64(sub.Backlog))
			age := 0.0
			if !sub.OldestUnsettled.IsZero() {
				age = max(now.Sub(sub.OldestUnsettled).Seconds(), 0)
			}
			sg(mBacklogAge, age)
			sg(mInFlight, float64(sub.InFlight))
			sg(mWaiting, float64(sub.Waiting))
			sg(mDelayed, float64(sub.Delayed))
			sg(mHeld, float64(sub.Held))
			sg(mParked, float64(sub.Parked))
			sc(mRedeliveries, float64(sub.Redeliveries))
			sc(mDeadLettered, float64(sub.DeadLettered))
		}
	}
}
