package server

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the service's own Prometheus series; gRPC request counts come from the
// go-grpc-middleware interceptors.
type metrics struct {
	messages *prometheus.CounterVec
	duration *prometheus.HistogramVec
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
	}
}

func (m *metrics) observe(route, backend, outcome string, d time.Duration) {
	m.messages.WithLabelValues(route, backend, outcome).Inc()
	m.duration.WithLabelValues(backend).Observe(d.Seconds())
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	m.messages.Describe(ch)
	m.duration.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.messages.Collect(ch)
	m.duration.Collect(ch)
}
