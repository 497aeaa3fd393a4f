package shim

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// connLimit counts the connections open, and bounds them. One over the limit is told so (421,
// as RFC 5321 §3.8 allows) and closed, rather than left waiting in the accept queue.
type connLimit struct {
	max     int64 // 0: no limit
	open    atomic.Int64
	metrics *Metrics
}

func newConnLimit(max int, m *Metrics) *connLimit { return &connLimit{max: int64(max), metrics: m} }

func (l *connLimit) wrap(ln net.Listener) net.Listener {
	return &limitListener{Listener: ln, l: l}
}

type limitListener struct {
	net.Listener
	l *connLimit
}

func (ll *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := ll.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if n := ll.l.open.Add(1); ll.l.max > 0 && n > ll.l.max {
			ll.l.open.Add(-1)
			ll.l.metrics.connections.WithLabelValues("refused").Inc()
			go func() {
				_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
				_, _ = c.Write([]byte("421 4.7.0 Too many connections; try again later\r\n"))
				_ = c.Close()
			}()
			continue
		}
		ll.l.metrics.connections.WithLabelValues("accepted").Inc()
		ll.l.metrics.open.Inc()
		return &countedConn{Conn: c, l: ll.l}, nil
	}
}

type countedConn struct {
	net.Conn
	l    *connLimit
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() {
		c.l.open.Add(-1)
		c.l.metrics.open.Dec()
	})
	return c.Conn.Close()
}
