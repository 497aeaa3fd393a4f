package shim_test

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/textproto"
	"testing"
	"time"
)

// rawConn is an SMTP client that sends what it is told, well-formed or not, and reads
// each reply as it comes.
type rawConn struct {
	t    *testing.T
	conn net.Conn
	tp   *textproto.Conn
}

// dialRaw connects to addr from local (an address such as 127.0.0.2; "" for any) and
// reads the greeting.
func dialRaw(t *testing.T, addr, local string) *rawConn {
	t.Helper()
	d := net.Dialer{Timeout: 10 * time.Second}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r := &rawConn{t: t, conn: c, tp: textproto.NewConn(c)}
	r.deadline()
	if code, msg := r.reply(); code != 220 {
		t.Fatalf("greeting %d %s", code, msg)
	}
	return r
}

// deadline bounds each exchange, so a test that goes wrong fails instead of hanging.
func (r *rawConn) deadline() { _ = r.conn.SetDeadline(time.Now().Add(20 * time.Second)) }

func (r *rawConn) reply() (int, string) {
	r.t.Helper()
	code, msg, err := r.tp.ReadResponse(0)
	if err != nil {
		r.t.Fatalf("reading a reply: %v", err)
	}
	return code, msg
}

// cmd sends one line and returns the reply to it.
func (r *rawConn) cmd(format string, args ...any) (int, string) {
	r.t.Helper()
	r.deadline()
	if err := r.tp.PrintfLine(format, args...); err != nil {
		r.t.Fatalf("sending %q: %v", fmt.Sprintf(format, args...), err)
	}
	return r.reply()
}

// want sends one line and fails unless the reply has code.
func (r *rawConn) want(code int, format string, args ...any) string {
	r.t.Helper()
	got, msg := r.cmd(format, args...)
	if got != code {
		r.t.Fatalf("%q: reply %d %s, want %d", fmt.Sprintf(format, args...), got, msg, code)
	}
	return msg
}

// startTLS says EHLO, upgrades the connection and says EHLO again.
func (r *rawConn) startTLS() {
	r.t.Helper()
	r.want(250, "EHLO client.test")
	r.want(220, "STARTTLS")
	tc := tls.Client(r.conn, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		r.t.Fatal(err)
	}
	r.conn, r.tp = tc, textproto.NewConn(tc)
	r.want(250, "EHLO client.test")
}
