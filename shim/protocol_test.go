package shim_test

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/server"
	"github.com/mailgate/mailgate/shim"
)

// An AUTH response that does not parse is the client's mistake, for good: 501 5.5.2, not
// the temporary 454 that had devices send it again for ever. The session goes on, and a
// well-formed AUTH then succeeds.
func TestAuthSyntaxErrors(t *testing.T) {
	t.Parallel()
	f := start(t, nil)
	tests := []struct {
		name  string
		lines []string // each answered 334 but the last
	}{
		{"PLAIN, initial response not base64", []string{"AUTH PLAIN !!!"}},
		{"PLAIN, empty initial response", []string{"AUTH PLAIN ="}},
		{"PLAIN, empty response", []string{"AUTH PLAIN", ""}},
		{"PLAIN, response not base64", []string{"AUTH PLAIN", "not base64!"}},
		{"PLAIN, one NUL", []string{"AUTH PLAIN " + b64("app\x00"+appKey)}},
		{"PLAIN, no NUL", []string{"AUTH PLAIN", b64(appKey)}},
		{"LOGIN, initial response not base64", []string{"AUTH LOGIN ***"}},
		{"LOGIN, user not base64", []string{"AUTH LOGIN", "@@@"}},
		{"LOGIN, password not base64", []string{"AUTH LOGIN", b64("app"), "%%%"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := dialRaw(t, f.addr, "")
			r.startTLS()
			for _, l := range tt.lines[:len(tt.lines)-1] {
				r.want(334, "%s", l)
			}
			code, msg := r.cmd("%s", tt.lines[len(tt.lines)-1])
			if code != 501 || !strings.HasPrefix(msg, "5.5.2 ") {
				t.Errorf("reply %d %s, want 501 5.5.2", code, msg)
			}
			r.want(235, "AUTH PLAIN %s", b64("\x00app\x00"+appKey))
		})
	}
}

// A message the shim could not read to its end gets a fixed, temporary reply, never the
// read error's text (which named the socket addresses), and is not sent.
func TestIncompleteMessage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		tls  bool
		// send writes the start of a message after RCPT TO.
		send func(r *rawConn)
	}{
		{"BDAT chunk times out", true, func(r *rawConn) {
			r.tp.W.WriteString("BDAT 5000 LAST\r\n" + message)
			r.tp.W.Flush()
		}},
		{"BDAT chunk cut short by the end of the connection", false, func(r *rawConn) {
			r.tp.W.WriteString("BDAT 5000 LAST\r\n" + message)
			r.tp.W.Flush()
			r.conn.(*net.TCPConn).CloseWrite()
		}},
		{"second BDAT chunk times out", true, func(r *rawConn) {
			r.tp.W.WriteString("BDAT 10\r\n" + message[:10])
			r.tp.W.Flush()
			if code, msg := r.reply(); code != 250 {
				t.Errorf("first chunk: %d %s", code, msg)
			}
			r.tp.W.WriteString("BDAT 5000 LAST\r\n" + message[10:])
			r.tp.W.Flush()
		}},
		{"DATA times out", true, func(r *rawConn) {
			r.want(354, "DATA")
			r.tp.W.WriteString(message)
			r.tp.W.Flush()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var logs logBuffer
			f := start(t, func(o *shim.Options, _ *server.ServiceOptions) {
				o.ReadTimeout = 200 * time.Millisecond
				o.AllowInsecureAuth = true
				o.Logger = logs.logger()
			})
			r := dialRaw(t, f.addr, "")
			if tt.tls {
				r.startTLS()
			} else {
				r.want(250, "EHLO client.test")
			}
			r.want(235, "AUTH PLAIN %s", b64("\x00app\x00"+appKey))
			r.want(250, "MAIL FROM:<app@contoso.com>")
			r.want(250, "RCPT TO:<bob@fabrikam.com>")
			tt.send(r)
			code, msg := r.reply()
			const want = "4.4.2 The message was not received completely (the connection broke or timed out); send it again"
			if code != 451 || msg != want {
				t.Errorf("reply %d %s, want 451 %s", code, msg, want)
			}
			_, port, _ := net.SplitHostPort(r.conn.LocalAddr().String())
			if strings.Contains(msg, "127.0.0.1") || strings.Contains(msg, port) {
				t.Errorf("the reply names a socket address: %s", msg)
			}
			if n := len(f.box.sent()); n != 0 {
				t.Errorf("%d incomplete messages sent", n)
			}
		})
	}
}
