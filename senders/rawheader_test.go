package senders

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestParseRawHeaderRefuses(t *testing.T) {
	t.Parallel()
	const ok = "From: a@b.com\r\nTo: c@d.com\r\nSubject: hi\r\n"
	long := strings.Repeat("x", 100<<10)
	tests := []struct {
		name, raw, want string
	}{
		{"second From", "From: billing@contoso.com\r\nFrom: evil@x.com\r\nTo: c@d.com\r\n\r\nhi\r\n", "From header: the message has more than one"},
		{"From with space before the colon", "From : evil@x.com\r\nFrom: billing@contoso.com\r\nTo: c@d.com\r\n\r\nhi\r\n", "From header: white space between the field name and the colon"},
		{"From with a tab before the colon", "From\t: evil@x.com\r\nTo: c@d.com\r\n\r\nhi\r\n", "From header: white space"},
		{"bcc with space before the colon", "From: a@b.com\r\nTo: c@d.com\r\nbcc : secret@example.com\r\n\r\nhi\r\n", "Bcc header: white space"},
		{"Resent-Bcc with space", "From: a@b.com\r\nTo: c@d.com\r\nResent-Bcc : s@x.com\r\n\r\nhi\r\n", "Resent-Bcc header: white space"},
		{"second Subject", ok + "subject: again\r\n\r\nhi\r\n", "Subject header: the message has more than one"},
		{"second To", ok + "TO: e@f.com\r\n\r\nhi\r\n", "To header: the message has more than one"},
		{"second Message-ID", ok + "Message-ID: <a@b>\r\nMessage-Id: <c@d>\r\n\r\nhi\r\n", "Message-ID header: the message has more than one"},
		{"second Date", ok + "Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nDate: Mon, 23 Nov 2026 11:00:00 +0000\r\n\r\nhi\r\n", "Date header: the message has more than one"},
		{"second Sender", ok + "Sender: a@b.com\r\nSender: x@y.com\r\n\r\nhi\r\n", "Sender header"},
		{"second Reply-To", ok + "Reply-To: a@b.com\r\nReply-to: x@y.com\r\n\r\nhi\r\n", "Reply-To header"},
		{"group in From", "From: friends: a@b.com, evil@x.com;\r\nTo: c@d.com\r\n\r\nhi\r\n", "group syntax"},
		{"empty group in From", "From: undisclosed:;\r\nTo: c@d.com\r\n\r\nhi\r\n", "group syntax"},
		{"NUL in a header", "From: a@b.com\r\nTo: c@d.com\r\nSubject: a\x00b\r\n\r\nhi\r\n", "NUL"},
		{"NUL in the body", ok + "\r\nhi\x00there\r\n", "NUL"},
		{"bare CR in a header", "From: a@b.com\r\nTo: c@d.com\rBcc: s@x.com\r\n\r\nhi\r\n", "CR not followed by LF"},
		{"bare CR in the body", ok + "\r\nhi\rthere\r\n", "CR not followed by LF"},
		{"100 KB header line", ok + "X-Long: " + long + "\r\n\r\nhi\r\n", "header line 4 is 102408 characters long; RFC 5322 allows 998"},
		{"1.5 MB Subject on one line", "From: a@b.com\r\nTo: c@d.com\r\nSubject: " + strings.Repeat("s", 1500<<10) + "\r\n\r\nhi\r\n", "RFC 5322 allows 998"},
		{"folded Subject over 16 KB", "From: a@b.com\r\nTo: c@d.com\r\nSubject: " + strings.Repeat(strings.Repeat("s", 900)+"\r\n ", 20) + "\r\n\r\nhi\r\n", "Subject header: 18"},
		{"header over 256 KB", "From: a@b.com\r\nTo: c@d.com\r\n" + strings.Repeat("X-A: "+strings.Repeat("a", 900)+"\r\n", 300) + "\r\nhi\r\n", "over 256 KB"},
		{"continuation first", " From: a@b.com\r\n\r\nhi\r\n", "continuation line"},
		{"not a field", "From: a@b.com\r\nthis is no field\r\n\r\nhi\r\n", "header line 2 is not a field"},
		{"8-bit field name", "From: a@b.com\r\nX-\xe4: 1\r\n\r\nhi\r\n", "printable ASCII"},
		{"two From addresses", "From: a@b.com, c@d.com\r\nTo: c@d.com\r\n\r\nhi\r\n", ""}, // refused by the service: exactly one
	}
	for _, tt := range tests {
		_, err := ParseRawHeader([]byte(tt.raw))
		switch {
		case tt.want == "":
			continue
		case err == nil:
			t.Errorf("%s: accepted", tt.name)
		case !strings.Contains(err.Error(), tt.want):
			t.Errorf("%s: error %q, want it to say %q", tt.name, err, tt.want)
		case len(err.Error()) > 300:
			t.Errorf("%s: error of %d bytes echoes the input", tt.name, len(err.Error()))
		}
	}
}

func TestParseRawHeaderAccepts(t *testing.T) {
	t.Parallel()
	longBody := strings.Repeat("y", 5000)
	for name, raw := range map[string]string{
		"8-bit body":                    "From: a@b.com\r\nTo: c@d.com\r\n\r\nGr\xfc\xdfe aus M\xfcnchen\r\n",
		"long body line":                "From: a@b.com\r\nTo: c@d.com\r\n\r\n" + longBody + "\r\n",
		"LF line endings":               "From: a@b.com\nTo: c@d.com\n\nhi\n",
		"998-character header line":     "From: a@b.com\r\nTo: c@d.com\r\nX-A: " + strings.Repeat("a", 993) + "\r\n\r\nhi\r\n",
		"repeated trace fields":         "Received: from a\r\nReceived: from b\r\nFrom: a@b.com\r\nTo: c@d.com\r\n\r\nhi\r\n",
		"space before a non-structural": "X-Device : mfp-3\r\nFrom: a@b.com\r\nTo: c@d.com\r\n\r\nhi\r\n",
		"header only":                   "From: a@b.com\r\nTo: c@d.com\r\n",
		"quoted colon in From name":     "From: \"Scan: floor 2\" <a@b.com>\r\nTo: c@d.com\r\n\r\nhi\r\n",
		"colon in a From comment":       "From: a@b.com (scanner: floor 2)\r\nTo: c@d.com\r\n\r\nhi\r\n",
	} {
		h, err := ParseRawHeader([]byte(raw))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if len(h.From) != 1 || h.From[0].Address != "a@b.com" {
			t.Errorf("%s: From %v", name, h.From)
		}
	}
}

// Every spelling of Bcc a parser accepts is left out of what every backend writes,
// with folded continuation lines; the rest stays byte for byte.
func TestBlindFieldsNeverWritten(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	for _, bcc := range []string{"Bcc: s@x.com\r\n", "bcc: s@x.com\r\n", "BCC: s@x.com\r\n", "bCc:s@x.com\r\n",
		"Bcc: s@x.com,\r\n\tt@x.com\r\n", "Resent-Bcc: s@x.com\r\n", "RESENT-BCC: s@x.com\r\n"} {
		for _, eol := range []string{"\r\n", "\n"} {
			head := "Message-ID: <m@b.com>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\nFrom: a@b.com\r\n"
			raw := strings.ReplaceAll(head+bcc+"To: c@d.com\r\n\r\nbody\r\n", "\r\n", eol)
			h, err := ParseRawHeader([]byte(raw))
			if err != nil {
				t.Fatalf("%q: %v", bcc, err)
			}
			m := NewRawMessage("id", []byte(raw), h, now)
			var b bytes.Buffer
			if _, err := m.WriteTo(&b); err != nil {
				t.Fatal(err)
			}
			want := strings.ReplaceAll(head+"To: c@d.com\r\n\r\nbody\r\n", "\r\n", eol)
			if b.String() != want {
				t.Errorf("%q: wrote %q, want %q", bcc, b.String(), want)
			}
			if m.RawSize() != b.Len() {
				t.Errorf("%q: RawSize %d, wrote %d", bcc, m.RawSize(), b.Len())
			}
		}
	}
}
