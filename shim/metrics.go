package shim

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the shim's Prometheus series: connections, AUTH results and the replies
// to messages. The service's own series count the messages themselves.
type Metrics struct {
	connections  *prometheus.CounterVec
	open         prometheus.Gauge
	authTimeouts prometheus.Counter
	tlsFailures  *prometheus.CounterVec
	auth         *prometheus.CounterVec
	replies      *prometheus.CounterVec
}

// NewMetrics registers the shim's series with reg; nil registers nowhere.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		connections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailgate_shim_connections_total",
			Help: "SMTP connections to the shim: accepted; refused over max_connections; refused_source, over max_connections_per_source; refused_reserved, from outside the devices' ranges when only reserved_device_connections are left.",
		}, []string{"result"}),
		open: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mailgate_shim_connections_open",
			Help: "SMTP connections to the shim open now.",
		}),
		authTimeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mailgate_shim_auth_timeouts_total",
			Help: "SMTP sessions ended because the client had not authenticated within auth_timeout of connecting.",
		}),
		tlsFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailgate_shim_tls_handshake_failures_total",
			Help: "Failed TLS handshakes with SMTP clients, by mode: starttls, or implicit (implicit_tls_listen). The connection is closed.",
		}, []string{"mode"}),
		auth: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailgate_shim_auth_total",
			Help: "SMTP AUTH attempts by mechanism and result: ok, bad_credentials, error (the key could not be checked), malformed (a response that is not base64 or does not parse, 501), or cancelled (the client's \"*\").",
		}, []string{"mechanism", "result"}),
		replies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailgate_shim_messages_total",
			Help: "Messages the shim answered at the end of DATA, by SMTP reply code (250 accepted).",
		}, []string{"code"}),
	}
	if reg != nil {
		reg.MustRegister(m.connections, m.open, m.authTimeouts, m.tlsFailures, m.auth, m.replies)
	}
	return m
}

func (m *Metrics) reply(code int) { m.replies.WithLabelValues(strconv.Itoa(code)).Inc() }
