package shim

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/mailgate/mailgate/mailerr"
)

// connLimit admits connections, and bounds them: in all, per source address, and for
// clients outside the devices' ranges, which leave the reserved slots to the devices.
// One over a limit is told so (421, as RFC 5321 §3.8 allows) and closed, rather than left
// waiting in the accept queue.
//
// A client that a slot is not reserved for must also authenticate within authTimeout of
// connecting: its read deadlines are capped until then. Without that, a client that
// sends a byte at a time holds its slot for as long as it likes, since each read is
// within read_timeout.
type connLimit struct {
	max         int // 0: no limit
	reserved    int // of max, for devices only
	perSource   int // 0: no limit
	authTimeout time.Duration
	isDevice    func(netip.Addr) bool
	metrics     *Metrics
	log         *slog.Logger

	mu       sync.Mutex
	open     int
	bySource map[netip.Addr]int
}

// wrap admits ln's connections; implicitTLS says that they start with a TLS handshake.
func (l *connLimit) wrap(ln net.Listener, implicitTLS bool) net.Listener {
	return &limitListener{Listener: ln, l: l, implicitTLS: implicitTLS}
}

type limitListener struct {
	net.Listener
	l           *connLimit
	implicitTLS bool
}

// Refusal texts; all mailerr.ReplyTooManyConnections (421 4.7.0), a temporary refusal,
// so a client tries again later.
const (
	refusedFull   = "Too many connections; try again later"
	refusedSource = "Too many connections from your address; try again later"
)

func (ll *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := ll.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := addrOf(c.RemoteAddr())
		device := ll.l.isDevice(ip)
		if result, text := ll.l.admit(ip, device); result != "" {
			ll.l.metrics.connections.WithLabelValues(result).Inc()
			ll.l.log.Debug("smtp connection refused", "remote", c.RemoteAddr().String(), "result", result)
			go func() {
				_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
				_, _ = c.Write([]byte(mailerr.ReplyTooManyConnections.String() + " " + text + "\r\n"))
				_ = c.Close()
			}()
			continue
		}
		ll.l.metrics.connections.WithLabelValues("accepted").Inc()
		ll.l.metrics.open.Inc()
		lc := &limitedConn{Conn: c, l: ll.l, ip: ip, implicitTLS: ll.implicitTLS}
		if !device && ll.l.authTimeout > 0 {
			lc.authBy = time.Now().Add(ll.l.authTimeout)
			_ = c.SetReadDeadline(lc.authBy)
		}
		return lc, nil
	}
}

// admit takes a slot for a connection from ip, or says which limit refuses it: its
// metrics result and the reply text.
func (l *connLimit) admit(ip netip.Addr, device bool) (result, text string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.perSource > 0 && l.bySource[ip] >= l.perSource:
		return "refused_source", refusedSource
	case l.max > 0 && l.open >= l.max:
		return "refused", refusedFull
	case l.max > 0 && !device && l.open >= l.max-l.reserved:
		return "refused_reserved", refusedFull
	}
	l.open++
	l.bySource[ip]++
	return "", ""
}

func (l *connLimit) release(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.bySource[ip]--; l.bySource[ip] <= 0 {
		delete(l.bySource, ip)
	}
}

// addrOf is the client's IP address; the zero Addr when it has none (all such clients
// then count as one source).
func addrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// limitedConn is an admitted connection: it gives its slot back on Close, and holds
// the client to the auth deadline until authenticated.
type limitedConn struct {
	net.Conn
	l           *connLimit
	ip          netip.Addr
	implicitTLS bool
	once        sync.Once

	mu sync.Mutex
	// authBy is the auth deadline; zero once the client authenticated, or when there is
	// none for it.
	authBy time.Time
	// readWant is the read deadline go-smtp last asked for, to restore after AUTH.
	readWant time.Time
	expired  bool
	// hello is what the client's ClientHello offered, once there was one.
	hello     offer
	helloSeen bool
}

func (c *limitedConn) Close() error {
	c.once.Do(func() {
		c.l.release(c.ip)
		c.l.metrics.open.Dec()
	})
	return c.Conn.Close()
}

func (c *limitedConn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return c.SetReadDeadline(t)
}

// SetReadDeadline caps go-smtp's read deadlines (each read_timeout from now) at the auth
// deadline. Writes are not capped: the reply that says the time is up must still go out.
func (c *limitedConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.readWant = t
	if !c.authBy.IsZero() && (t.IsZero() || t.After(c.authBy)) {
		t = c.authBy
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *limitedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		c.mu.Lock()
		if ne, ok := err.(net.Error); ok && ne.Timeout() && !c.authBy.IsZero() && !time.Now().Before(c.authBy) && !c.expired {
			c.expired = true
			c.l.metrics.authTimeouts.Inc()
			c.l.log.Debug("smtp client did not authenticate in time", "remote", c.RemoteAddr().String())
		}
		c.mu.Unlock()
	}
	return n, err
}

func (c *limitedConn) setOffer(o offer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hello, c.helloSeen = o, true
}

func (c *limitedConn) offered() (offer, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hello, c.helloSeen
}

// authenticated lifts the auth deadline: the session goes on under read_timeout alone.
func (c *limitedConn) authenticated() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.authBy.IsZero() {
		return
	}
	c.authBy = time.Time{}
	_ = c.Conn.SetReadDeadline(c.readWant)
}

// limitedOf finds the admitted connection under a session's (possibly TLS) connection.
func limitedOf(c net.Conn) *limitedConn {
	for {
		switch v := c.(type) {
		case *limitedConn:
			return v
		case interface{ NetConn() net.Conn }:
			c = v.NetConn()
		default:
			return nil
		}
	}
}
