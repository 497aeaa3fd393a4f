package smtptest

import (
	"crypto/tls"
	"io"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// connState is what the fake knows about one TCP connection. It outlives go-smtp's
// Session, which go-smtp replaces after STARTTLS.
type connState struct {
	s         *Server
	raw       net.Conn
	closeOnce sync.Once

	// Guarded by s.mu.
	info        SessionInfo
	authKey     string // lower-cased user counted in s.active, "" if none
	closed      bool
	hungUp      bool // the fake closed the connection on purpose
	closeOnRead bool // close instead of reading the next command
}

// listener counts connections and answers StageConnect scripts before go-smtp sees a
// connection: go-smtp always sends its own 220 greeting, and a Backend can refuse only
// at EHLO (see backend.NewSession).
type listener struct {
	net.Listener
	s *Server
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		c := l.s.track(nc)
		if r, ok := l.s.next(StageConnect); ok {
			// Serve's goroutine holds a count on wg, so Add here cannot race with Wait.
			l.s.wg.Add(1)
			go func() {
				defer l.s.wg.Done()
				c.refuse(r)
			}()
			continue
		}
		return c, nil
	}
}

func (s *Server) track(nc net.Conn) *trackedConn {
	st := &connState{s: s, raw: nc}
	s.mu.Lock()
	s.conns = append(s.conns, st)
	s.mu.Unlock()
	return &trackedConn{Conn: nc, st: st}
}

// trackedConn is the net.Conn go-smtp serves (directly, or under its *tls.Conn after
// STARTTLS). It lets the fake find its connState from a *smtp.Conn, release the
// session's concurrency slot when the connection closes, and hang up.
type trackedConn struct {
	net.Conn
	st *connState
}

func (c *trackedConn) Read(p []byte) (int, error) {
	s := c.st.s
	s.mu.Lock()
	closeNow := c.st.closeOnRead
	s.mu.Unlock()
	if closeNow {
		c.st.hangup()
		return 0, io.EOF
	}
	n, err := c.Conn.Read(p)
	if err != nil {
		s.mu.Lock()
		hungUp := c.st.hungUp
		s.mu.Unlock()
		if hungUp {
			// An ordinary end of stream, so that go-smtp ends the session quietly.
			return n, io.EOF
		}
	}
	return n, err
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.st.closeOnce.Do(c.st.release)
	return err
}

// release marks the connection closed and frees its concurrency slot.
func (st *connState) release() {
	s := st.s
	s.mu.Lock()
	defer s.mu.Unlock()
	st.closed = true
	st.info.Closed = true
	if st.authKey != "" {
		s.active[st.authKey]--
		st.authKey = ""
		close(s.released)
		s.released = make(chan struct{})
	}
}

// hangup closes the TCP connection without a word (no TLS close_notify either), as
// when a front-end server dies.
func (st *connState) hangup() {
	st.s.mu.Lock()
	st.hungUp = true
	st.s.mu.Unlock()
	_ = st.raw.Close()
	st.closeOnce.Do(st.release)
}

// closeAfterReply makes the fake close the connection once the reply being produced
// has been written: go-smtp writes a reply before it reads the next command.
func (st *connState) closeAfterReply() {
	st.s.mu.Lock()
	defer st.s.mu.Unlock()
	st.closeOnRead = true
}

// refuse answers a connection with r instead of the greeting, and closes it.
func (c *trackedConn) refuse(r Reply) {
	if !r.Hangup {
		_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.WriteString(c.Conn, r.wire())
	}
	_ = c.Close()
}

// stateOf finds the connState behind a go-smtp connection.
func stateOf(c *smtp.Conn) *connState {
	nc := c.Conn()
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	if tc, ok := nc.(*trackedConn); ok {
		return tc.st
	}
	return nil
}
