package shim_test

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mailgate/mailgate/server"
	"github.com/mailgate/mailgate/shim"
)

// An AUTH response that does not parse is the client's mistake, for good: 501 5.5.2, not
// the temporary 454 that had devices send it again for ever; a "*" cancels with 501
// (RFC 4954 §4). Each is counted and logged as an AUTH that failed, though no key was
// checked. The connection goes on, and a well-formed AUTH then succeeds.
func TestAuthSyntaxErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		lines    []string // each answered 334 but the last
		enhanced string
		mech     string // in the metric and the log
		result   string
	}{
		{"PLAIN, initial response not base64", []string{"AUTH PLAIN !!!"}, "5.5.2", "PLAIN", "malformed"},
		{"PLAIN, empty initial response", []string{"AUTH PLAIN ="}, "5.5.2", "PLAIN", "malformed"},
		{"PLAIN, empty response", []string{"AUTH PLAIN", ""}, "5.5.2", "PLAIN", "malformed"},
		{"PLAIN, response not base64", []string{"AUTH PLAIN", "not base64!"}, "5.5.2", "PLAIN", "malformed"},
		{"PLAIN, one NUL", []string{"AUTH PLAIN " + b64("app\x00"+appKey)}, "5.5.2", "PLAIN", "malformed"},
		{"PLAIN, no NUL", []string{"AUTH PLAIN", b64(appKey)}, "5.5.2", "PLAIN", "malformed"},
		{"PLAIN, cancelled", []string{"AUTH PLAIN", "*"}, "5.0.0", "PLAIN", "cancelled"},
		{"LOGIN, initial response not base64", []string{"AUTH LOGIN ***"}, "5.5.2", "LOGIN", "malformed"},
		{"LOGIN, user not base64", []string{"AUTH LOGIN", "@@@"}, "5.5.2", "LOGIN", "malformed"},
		{"LOGIN, password not base64", []string{"AUTH LOGIN", b64("app"), "%%%"}, "5.5.2", "LOGIN", "malformed"},
		{"LOGIN, cancelled at the user name", []string{"AUTH LOGIN", "*"}, "5.0.0", "LOGIN", "cancelled"},
		{"LOGIN, cancelled at the password", []string{"AUTH LOGIN " + b64("app"), "*"}, "5.0.0", "LOGIN", "cancelled"},
		{"lower-case mechanism", []string{"auth login", "@@@"}, "5.5.2", "LOGIN", "malformed"},
		{"a mechanism not offered", []string{"AUTH XOAUTH2 !!!"}, "5.5.2", "other", "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var logs logBuffer
			reg := prometheus.NewRegistry()
			f := start(t, func(o *shim.Options, _ *server.ServiceOptions) {
				o.Logger = logs.logger()
				o.Metrics = shim.NewMetrics(reg)
			})
			r := dialRaw(t, f.addr, "")
			r.startTLS()
			for _, l := range tt.lines[:len(tt.lines)-1] {
				r.want(334, "%s", l)
			}
			code, msg := r.cmd("%s", tt.lines[len(tt.lines)-1])
			if code != 501 || !strings.HasPrefix(msg, tt.enhanced+" ") {
				t.Errorf("reply %d %s, want 501 %s", code, msg, tt.enhanced)
			}
			series := `mailgate_shim_auth_total{mechanism="` + tt.mech + `",result="` + tt.result + `"}`
			if n := metricValue(t, reg, series); n != 1 {
				t.Errorf("%s = %v, want 1", series, n)
			}
			if want := `"msg":"smtp auth ` + tt.result + `",`; !strings.Contains(logs.String(), want) || !strings.Contains(logs.String(), `"mechanism":"`+tt.mech+`"`) {
				t.Errorf("no %s line for %s in the log:\n%s", want, tt.mech, logs.String())
			}
			r.want(235, "AUTH PLAIN %s", b64("\x00app\x00"+appKey))
			if n := metricValue(t, reg, `mailgate_shim_auth_total{mechanism="PLAIN",result="ok"}`); n != 1 {
				t.Errorf("AUTH ok counted %v times, want 1", n)
			}
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
