package server

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mailgate/mailgate/server/queue"
	"github.com/mailgate/mailgate/server/store"
)

// metrics are the service's own Prometheus series; gRPC request counts come from the
// go-grpc-middleware interceptors.
type metrics struct {
	messages    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	backend     *prometheus.HistogramVec
	throttled   *prometheus.CounterVec
	idempotency *prometheus.CounterVec
	storeErrors *prometheus.CounterVec
	dataLost    prometheus.Gauge
	dataLosses  prometheus.Counter

	queued      prometheus.Counter
	queueErrors *prometheus.CounterVec
	attempts    *prometheus.CounterVec
	delivered   *prometheus.CounterVec
	waits       *prometheus.CounterVec
	latency     prometheus.Histogram
}

func newMetrics() *metrics {
	return &metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailgate_messages_total",
			Help: "SendMail requests by route, backend and outcome (SENT, QUEUED, REPLAYED or the error reason).",
		}, []string{"route", "backend", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mailgate_send_duration_seconds",
			Help:    "Time from receiving a SendMail request to its answer, by backend.",
			Buckets: []float64{.001, .005, .025, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"backend"}),
		backend: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mailgate_backend_send_duration_seconds",
			Help:    "Time a backend took to send a message, by backend and outcome (SENT, QUEUED or the error reason).",
			Buckets: []float64{.001, .005, .025, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"backend", "outcome"}),
		throttled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailgate_throttled_total",
			Help: "Requests refused by a rate limit or a pause, by what refused them: scope mailbox, key or backend; limit messages_per_minute, recipients_per_day or pause (after Microsoft throttled).",
		}, []string{"scope", "limit"}),
		idempotency: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailgate_idempotency_total",
			Help: "Requests with an idempotency key, by decision: proceed, replay, in_flight or mismatch.",
		}, []string{"decision"}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailgate_store_errors_total",
			Help: "Failed operations on the shared store (Redis), by operation: admit, complete, pause, get_record, ping, data_check.",
		}, []string{"op"}),
		dataLost: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mailgate_store_data_lost",
			Help: "1 while a loss of Redis's data is recorded and not acknowledged (mailgate admin store-ack), else 0. While it is 1, /readyz answers 503.",
		}),
		dataLosses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mailgate_store_data_loss_total",
			Help: "Losses of Redis's data (its marker key gone or written anew) that this replica noticed first.",
		}),
		queued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mailgate_queue_enqueued_total",
			Help: "Messages this replica accepted into the queue (answered QUEUED).",
		}),
		queueErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailgate_queue_errors_total",
			Help: "Failed operations on the queue (its file, or Redis), by operation: enqueue, lease, extend, settle, get, cancel, list, stats, expire.",
		}, []string{"op"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailgate_queue_attempts_total",
			Help: "Delivery attempts of queued messages, by backend and outcome (SENT or the error reason).",
		}, []string{"backend", "outcome"}),
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailgate_queue_finished_total",
			Help: "Queued messages that reached a final status, by status: SENT, FAILED, CANCELED, UNKNOWN.",
		}, []string{"status"}),
		waits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailgate_queue_dispatch_waits_total",
			Help: "Times a worker put a due message back without an attempt because its mailbox or backend had no budget, by scope (mailbox, backend) and limit (messages_per_minute, recipients_per_day, concurrent, pause, failing).",
		}, []string{"scope", "limit"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "mailgate_queue_delivery_seconds",
			Help:    "Time from accepting a queued message (or its sendAt) to the backend accepting it.",
			Buckets: []float64{.01, .05, .1, .5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600},
		}),
	}
}

// refused counts a throttled request by what refused it: the mailbox's, key's or
// backend's name stays out of the labels.
func (m *metrics) refused(r store.Refusal) {
	scope := refusalScope(r)
	m.throttled.WithLabelValues(scope, refusalLimit(r)).Inc()
}

func refusalScope(r store.Refusal) string {
	if scope := map[store.GroupKind]string{store.Mailbox: "mailbox", store.APIKey: "key", store.Backend: "backend"}[r.Group.Kind]; scope != "" {
		return scope
	}
	return "other"
}

func refusalLimit(r store.Refusal) string {
	if r.Paused {
		return "pause"
	}
	if limit := map[store.LimitID]string{store.MessagesPerMinute: "messages_per_minute", store.RecipientsPerDay: "recipients_per_day", store.Concurrent: "concurrent"}[r.Limit]; limit != "" {
		return limit
	}
	return r.Limit.String()
}

func (m *metrics) observe(route, backend, outcome string, d time.Duration) {
	m.messages.WithLabelValues(route, backend, outcome).Inc()
	m.duration.WithLabelValues(backend).Observe(d.Seconds())
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.collectors() {
		c.Collect(ch)
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.messages, m.duration, m.backend, m.throttled, m.idempotency, m.storeErrors, m.dataLost, m.dataLosses,
		m.queued, m.queueErrors, m.attempts, m.delivered, m.waits, m.latency}
}

// queueGauges reads the queue's depth when Prometheus scrapes, so that every replica
// reports the shared queue's state as it is (with Redis, all replicas report the same).
type queueGauges struct {
	q      queue.Queue
	errs   *prometheus.CounterVec
	now    func() time.Time
	depth  *prometheus.Desc
	oldest *prometheus.Desc
}

func newQueueGauges(q queue.Queue, errs *prometheus.CounterVec, now func() time.Time) *queueGauges {
	return &queueGauges{
		q: q, errs: errs, now: now,
		depth: prometheus.NewDesc("mailgate_queue_messages",
			"Messages in the queue, by state: queued (waiting, delayed ones included), due (queued and due now), sending.", []string{"state"}, nil),
		oldest: prometheus.NewDesc("mailgate_queue_oldest_age_seconds",
			"Age of the oldest message not yet finished (queued or sending); 0 when there is none.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (g *queueGauges) Describe(ch chan<- *prometheus.Desc) {
	ch <- g.depth
	ch <- g.oldest
}

// Collect implements prometheus.Collector.
func (g *queueGauges) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := g.q.Stats(ctx)
	if err != nil {
		g.errs.WithLabelValues("stats").Inc()
		return
	}
	ch <- prometheus.MustNewConstMetric(g.depth, prometheus.GaugeValue, float64(st.Queued), "queued")
	ch <- prometheus.MustNewConstMetric(g.depth, prometheus.GaugeValue, float64(st.Due), "due")
	ch <- prometheus.MustNewConstMetric(g.depth, prometheus.GaugeValue, float64(st.Sending), "sending")
	age := 0.0
	if !st.OldestQueued.IsZero() {
		age = max(0, g.now().Sub(st.OldestQueued).Seconds())
	}
	ch <- prometheus.MustNewConstMetric(g.oldest, prometheus.GaugeValue, age)
}
