package shim_test

import (
	"bytes"
	"encoding/base64"
	"net/mail"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/mailgate/mailgate/senders"
	"github.com/mailgate/mailgate/server"
	"github.com/mailgate/mailgate/shim"
)

// sendRaw runs one transaction after STARTTLS and AUTH PLAIN, with data sent as it is
// (net/smtp would turn every LF into CRLF), ended by CRLF . CRLF as curl ends it, and
// returns the final reply.
func (f *fixture) sendRaw(t *testing.T, user, key, from string, rcpts []string, data string) (int, string) {
	t.Helper()
	r := dialRaw(t, f.addr, "")
	r.startTLS()
	r.want(235, "AUTH PLAIN %s", base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+key)))
	smtputf8 := ""
	if !isASCII(from) {
		smtputf8 = " SMTPUTF8"
	}
	r.want(250, "MAIL FROM:<%s>%s", from, smtputf8)
	for _, rcpt := range rcpts {
		r.want(250, "RCPT TO:<%s>", rcpt)
	}
	r.want(354, "DATA")
	r.deadline()
	if _, err := r.conn.Write([]byte(data + "\r\n.\r\n")); err != nil {
		t.Fatal(err)
	}
	return r.reply()
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// messageIDs lists the values of a message's Message-ID fields, in any spelling.
func messageIDs(b []byte) []string {
	m, err := mail.ReadMessage(bytes.NewReader(b))
	if err != nil {
		return nil
	}
	var out []string
	for k, v := range m.Header {
		if strings.EqualFold(k, "Message-Id") {
			out = append(out, v...)
		}
	}
	return out
}

// Messages as devices and clients really write them: accepted, delivered with only the
// changes the documentation names, and with the Message-ID mailgate reports being the one
// in the delivered bytes.
func TestRawForms(t *testing.T) {
	t.Parallel()
	const date = "Date: Thu, 03 Dec 2026 10:00:00 +0000\r\n"
	const tail = "Subject: scan\r\n" + date + "\r\nPage 1.\r\n"
	type check func(t *testing.T, msg []byte, id string)
	contains := func(s string) check {
		return func(t *testing.T, msg []byte, _ string) {
			if !bytes.Contains(msg, []byte(s)) {
				t.Errorf("delivered message lacks %q:\n%q", s, msg)
			}
		}
	}
	idIs := func(want string) check {
		return func(t *testing.T, _ []byte, id string) {
			if id != want {
				t.Errorf("Message-ID %q, want %q", id, want)
			}
		}
	}
	idLike := func(re string) check {
		return func(t *testing.T, _ []byte, id string) {
			if !regexp.MustCompile(re).MatchString(id) {
				t.Errorf("Message-ID %q, want one like %s", id, re)
			}
		}
	}
	tests := []struct {
		name, user, key, from, data string
		checks                      []check
	}{
		{"To with an unquoted comma", "app", appKey, "app@contoso.com",
			"From: app@contoso.com\r\nTo: Mueller, Hans <bob@fabrikam.com>\r\nMessage-ID: <a1@mfp>\r\n" + tail,
			[]check{contains("\r\nTo: Mueller, Hans <bob@fabrikam.com>\r\n")}},
		{"Outlook's semicolons", "app", appKey, "app@contoso.com",
			"From: app@contoso.com\r\nTo: bob@fabrikam.com;carol@fabrikam.com\r\nMessage-ID: <a2@mfp>\r\n" + tail,
			[]check{contains("\r\nTo: bob@fabrikam.com;carol@fabrikam.com\r\n")}},
		{"undisclosed recipients", "app", appKey, "app@contoso.com",
			"From: app@contoso.com\r\nTo: undisclosed recipients\r\nMessage-ID: <a3@mfp>\r\n" + tail,
			[]check{contains("\r\nTo: undisclosed recipients\r\n")}},
		{"Latin-1 display names", "app", appKey, "app@contoso.com",
			"From: J\xf6rg M\xfcller <app@contoso.com>\r\nTo: Hans M\xfcller <bob@fabrikam.com>\r\nMessage-ID: <a4@mfp>\r\n" + tail,
			[]check{contains("From: =?utf-8?q?J=C3=B6rg_M=C3=BCller?=\r\n <app@contoso.com>\r\nTo: =?utf-8?q?Hans_M=C3=BCller?=\r\n <bob@fabrikam.com>\r\n"),
				func(t *testing.T, msg []byte, _ string) {
					head, _, _ := bytes.Cut(msg, []byte("\r\n\r\n"))
					if !utf8.Valid(head) {
						t.Errorf("header is not UTF-8: %q", head)
					}
				}}},
		{"bracketless Message-ID", "app", appKey, "app@contoso.com",
			"From: app@contoso.com\r\nTo: bob@fabrikam.com\r\nMessage-ID: 20261203.0001@mfp\r\n" + tail,
			[]check{idIs("<20261203.0001@mfp>"), contains("\r\nMessage-ID: <20261203.0001@mfp>\r\n")}},
		{"Message-ID with spaces", "app", appKey, "app@contoso.com",
			"From: app@contoso.com\r\nTo: bob@fabrikam.com\r\nMessage-ID: scan 3 Dec\r\n" + tail,
			[]check{idLike(`^<[0-9a-f]{32}\.shim@contoso\.com>$`)}},
		{"empty Message-ID", "app", appKey, "app@contoso.com",
			"From: app@contoso.com\r\nTo: bob@fabrikam.com\r\nMessage-ID:\r\n" + tail,
			[]check{idLike(`^<[0-9a-f]{32}\.shim@contoso\.com>$`)}},
		{"LF line endings", "app", appKey, "app@contoso.com",
			strings.ReplaceAll("From: app@contoso.com\r\nTo: bob@fabrikam.com\r\nMessage-ID: <a5@mfp>\r\n"+tail+"line 2\r\n", "\r\n", "\n"),
			[]check{contains("\r\nMessage-ID: <a5@mfp>\r\nSubject: scan\r\n" + date + "\r\nPage 1.\r\nline 2\r\n\r\n"),
				func(t *testing.T, msg []byte, _ string) {
					if n := senders.CountBareLF(msg); n != 0 {
						t.Errorf("%d bare LFs delivered: %q", n, msg)
					}
				}}},
		{"null reverse-path", "app", appKey, "",
			"From: app@contoso.com\r\nTo: bob@fabrikam.com\r\n" + tail,
			[]check{idLike(`^<[0-9a-f]{32}\.shim@contoso\.com>$`)}},
		{"internationalised From domain", "idn", idnKey, "",
			"From: scan@exämple.com\r\nTo: bob@fabrikam.com\r\n" + tail,
			[]check{idLike(`^<[0-9a-f]{32}\.shim@xn--exmple-cua\.com>$`)}},
		{"internationalised envelope sender", "idn", idnKey, "scan@exämple.com",
			"From: scan@exämple.com\r\nTo: bob@fabrikam.com\r\n" + tail,
			[]check{idLike(`^<[0-9a-f]{32}\.shim@xn--exmple-cua\.com>$`)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := start(t, nil)
			if code, msg := f.sendRaw(t, tt.user, tt.key, tt.from, []string{"bob@fabrikam.com"}, tt.data); code != 250 {
				t.Fatalf("reply %d %s", code, msg)
			}
			sent := f.box.sent()
			if len(sent) != 1 {
				t.Fatalf("%d messages at the backend", len(sent))
			}
			received, msg := trace(t, sent[0])
			if !receivedRE.MatchString(received) {
				t.Errorf("Received field %q", received)
			}
			f.box.mu.Lock()
			id := f.box.ids[0]
			f.box.mu.Unlock()
			if ids := messageIDs(msg); len(ids) != 1 || strings.TrimSpace(ids[0]) != id {
				t.Errorf("Message-ID fields %q, mailgate reports %q", ids, id)
			}
			for _, c := range tt.checks {
				c(t, msg, id)
			}
		})
	}
}

// Ambiguous messages stay refused, whatever the leniency above.
func TestRawFormsRefused(t *testing.T) {
	t.Parallel()
	f := start(t, nil)
	const tail = "To: bob@fabrikam.com\r\nSubject: scan\r\n\r\nPage 1.\r\n"
	for name, data := range map[string]string{
		"bare CR":                     "From: app@contoso.com\r\n" + tail + "a\rb\r\n",
		"Latin-1 in the From address": "From: J\xf6rg <j\xf6rg@contoso.com>\r\n" + tail,
		"group From":                  "From: team: app@contoso.com;\r\n" + tail,
		"second To":                   "From: app@contoso.com\r\nTo: eve@x.com\r\n" + tail,
	} {
		if code, msg := f.sendRaw(t, "app", appKey, "app@contoso.com", []string{"bob@fabrikam.com"}, data); code != 554 || !strings.HasPrefix(msg, "5.6.0") {
			t.Errorf("%s: reply %d %s, want 554 5.6.0", name, code, msg)
		}
	}
	if n := len(f.box.sent()); n != 0 {
		t.Errorf("%d messages sent", n)
	}
}

// The same Message-ID with and without angle brackets is the same message: a resend in
// the other form is answered from the record, not delivered again.
func TestBracketlessMessageIDResend(t *testing.T) {
	t.Parallel()
	f := start(t, nil)
	const rest = "From: app@contoso.com\r\nTo: bob@fabrikam.com\r\nSubject: scan\r\nDate: Thu, 03 Dec 2026 10:00:00 +0000\r\n\r\nPage 1.\r\n"
	var replies []string
	for _, id := range []string{"20261203.0001@mfp", "<20261203.0001@mfp>", "20261203.0001@mfp"} {
		code, msg := f.sendRaw(t, "app", appKey, "app@contoso.com", []string{"bob@fabrikam.com"}, "Message-ID: "+id+"\r\n"+rest)
		if code != 250 {
			t.Fatalf("%s: reply %d %s", id, code, msg)
		}
		replies = append(replies, msg)
	}
	if n := len(f.box.sent()); n != 1 {
		t.Errorf("%d deliveries, want 1", n)
	}
	if replies[0] != replies[1] || replies[1] != replies[2] {
		t.Errorf("replies %q: want one id", replies)
	}
}

// A device admitted by its address, without TLS or AUTH: the Received field says ESMTP.
func TestReceivedWithoutTLSOrAuth(t *testing.T) {
	t.Parallel()
	f := start(t, func(o *shim.Options, _ *server.ServiceOptions) {
		o.Devices = []shim.Device{{Prefix: netip.MustParsePrefix("127.0.0.0/8"), Principal: shim.Principal{Name: "scanners"}}}
	})
	c, _ := f.dial(t, true, "", "")
	scan := strings.Replace(message, "From: app@contoso.com", "From: scanner@contoso.com", 1)
	if err := send(c, "scanner@contoso.com", []string{"bob@fabrikam.com"}, scan); err != nil {
		t.Fatal(err)
	}
	sent := f.box.sent()
	if len(sent) != 1 {
		t.Fatalf("%d messages", len(sent))
	}
	received, rest := trace(t, sent[0])
	if !receivedRE.MatchString(received) || !strings.Contains(received, " with ESMTP id ") || string(rest) != scan {
		t.Errorf("Received %q; message %q", received, rest)
	}
}
