package shim

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// connLimit bounds the connections open at once. One over the limit is told so (421,
// as RFC 5321 §3.8 allows) and closed, rather than left waiting in the accept queue.
type connLimit struct {
	max  int64
	open atomic.Int64
}

func newConnLimit(max int) *connLimit { return &connLimit{max: int64(max)} }

func (l *connLimit) wrap(ln net.Listener) net.Listener {
	if l.max <= 0 {
		return ln
	}
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
		if ll.l.open.Add(1) > ll.l.max {
			ll.l.open.Add(-1)
			go func() {
				_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
				_, _ = c.Write([]byte("421 4.7.0 Too many connections; try again later\r\n"))
				_ = c.Close()
			}()
			continue
		}
		return &countedConn{Conn: c, l: ll.l}, nil
	}
}

type countedConn struct {
	net.Conn
	l    *connLimit
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.l.open.Add(-1) })
	return c.Conn.Close()
}
