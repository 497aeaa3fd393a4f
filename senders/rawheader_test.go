package senders

import (
	"bytes"
	"net/mail"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
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
			want := head + "To: c@d.com\r\n\r\nbody\r\n" // CRLF either way
			if b.String() != want {
				t.Errorf("%q: wrote %q, want %q", bcc, b.String(), want)
			}
			if m.RawSize() != b.Len() {
				t.Errorf("%q: RawSize %d, wrote %d", bcc, m.RawSize(), b.Len())
			}
		}
	}
}

// To, Cc and Bcc in forms net/mail does not take are no reason to refuse a message: the
// envelope gives the recipients. RecipientsErr says why, for a caller without one.
func TestParseRawHeaderLenientRecipients(t *testing.T) {
	t.Parallel()
	const rest = "Subject: scan\r\n\r\nhi\r\n"
	tests := []struct {
		name, fields, wantErr string
		wantTo                []string
	}{
		{"unquoted comma in a display name", "To: Mueller, Hans <bob@example.com>\r\n", "To header", nil},
		{"Outlook's semicolons", "To: bob@example.com;carol@example.com\r\n", "To header", nil},
		{"undisclosed recipients without group syntax", "To: undisclosed recipients\r\n", "To header", nil},
		{"Cc that does not parse", "To: bob@example.com\r\nCc: Mueller, Hans <carol@example.com>\r\n", "Cc header", []string{"bob@example.com"}},
		{"Bcc that does not parse", "To: bob@example.com\r\nBcc: secret;other\r\n", "Bcc header", []string{"bob@example.com"}},
		{"Latin-1 display name", "To: Hans M\xfcller <bob@example.com>\r\n", "", []string{"bob@example.com"}},
		{"undisclosed group", "To: undisclosed-recipients:;\r\n", "", nil},
		{"Latin-1 byte in the address", "To: b\xf6b@example.com\r\n", "To header: 8-bit bytes that are not UTF-8 in an address", nil},
	}
	for _, tt := range tests {
		h, err := ParseRawHeader([]byte("From: app@contoso.com\r\n" + tt.fields + rest))
		if err != nil {
			t.Errorf("%s: refused: %v", tt.name, err)
			continue
		}
		switch {
		case tt.wantErr == "" && h.RecipientsErr != nil:
			t.Errorf("%s: %v", tt.name, h.RecipientsErr)
		case tt.wantErr != "" && (h.RecipientsErr == nil || !strings.Contains(h.RecipientsErr.Error(), tt.wantErr)):
			t.Errorf("%s: RecipientsErr %v, want it to say %q", tt.name, h.RecipientsErr, tt.wantErr)
		}
		var to []string
		for _, a := range h.To {
			to = append(to, a.Address)
			if !utf8.ValidString(a.Name) {
				t.Errorf("%s: display name %q is not UTF-8", tt.name, a.Name)
			}
		}
		if strings.Join(to, ",") != strings.Join(tt.wantTo, ",") {
			t.Errorf("%s: To %v, want %v", tt.name, to, tt.wantTo)
		}
	}
}

// Only the From addr-spec decides; its display name may be in any charset, or none.
func TestParseRawHeaderFromDisplayNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, from, wantName, wantErr string
	}{
		{"Latin-1", "J\xf6rg M\xfcller <app@contoso.com>", "Jörg Müller", ""},
		{"windows-1252 quotes", "\x93Scan\x94 <app@contoso.com>", "“Scan”", ""},
		{"quoted Latin-1", "\"M\xfcller, J\xf6rg\" <app@contoso.com>", "Müller, Jörg", ""},
		{"UTF-8", "J\xc3\xb6rg <app@contoso.com>", "Jörg", ""},
		{"encoded word in windows-1252", "=?windows-1252?q?J=F6rg?= <app@contoso.com>", "Jörg", ""},
		{"encoded word in an unknown charset", "=?x-unknown?q?J=F6rg?= <app@contoso.com>", "J\uFFFDrg", ""},
		{"Latin-1 in a comment", "app@contoso.com (J\xf6rg)", "Jörg", ""},
		{"Latin-1 in the address", "J\xf6rg <j\xf6rg@contoso.com>", "", "From header: 8-bit bytes that are not UTF-8 in an address"},
		{"Latin-1 in the domain", "app@cont\xf6so.com", "", "From header: 8-bit bytes that are not UTF-8 in an address"},
	}
	for _, tt := range tests {
		h, err := ParseRawHeader([]byte("From: " + tt.from + "\r\nTo: bob@example.com\r\n\r\nhi\r\n"))
		switch {
		case tt.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: error %v, want %q", tt.name, err, tt.wantErr)
			}
		case err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case len(h.From) != 1 || h.From[0].Name != tt.wantName || h.From[0].Address == "":
			t.Errorf("%s: From %+v, want name %q", tt.name, h.From, tt.wantName)
		}
	}
}

func TestNormalMessageID(t *testing.T) {
	t.Parallel()
	for v, want := range map[string]string{
		"<a@b>":                 "<a@b>",
		" <20261203.0001@mfp> ": "<20261203.0001@mfp>",
		"20261203.0001@mfp":     "<20261203.0001@mfp>",
		"<a.b$c@[192.0.2.1]>":   "<a.b$c@[192.0.2.1]>",
		"":                      "",
		"20261203":              "",
		"<20261203>":            "",
		"scan of 3 Dec":         "",
		"<a b@c>":               "",
		"<a@b> <c@d>":           "",
		"<a@b@c>":               "",
		"<a@b":                  "",
		"a@b>":                  "",
		"@b":                    "",
		"<a@>":                  "",
		"<\xe4@b>":              "",
		"<a@b> (comment)":       "",
	} {
		got, ok := NormalMessageID(v)
		if got != want || ok != (want != "") {
			t.Errorf("NormalMessageID(%q) = %q, %v; want %q", v, got, ok, want)
		}
	}
}

// The generated Message-ID of a structured or raw message is a msg-id in ASCII, whatever
// the From domain's form.
func TestMessageIDInternationalDomain(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	const want = "<id1@xn--exmple-cua.com>"
	m := NewMessage("id1", &Content{From: mail.Address{Address: "scan@exämple.com"}, To: []mail.Address{{Address: "b@example.com"}}, Text: "x"}, now)
	var b bytes.Buffer
	if _, err := m.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	if m.MessageID != want || !strings.Contains(b.String(), "Message-ID: "+want+"\r\n") {
		t.Errorf("structured: Message-ID %q, header:\n%s", m.MessageID, b.String())
	}
	raw := "From: scan@exämple.com\r\nTo: b@example.com\r\n\r\nx\r\n"
	h, err := ParseRawHeader([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	m = NewRawMessage("id1", []byte(raw), h, now)
	b.Reset()
	m.WriteTo(&b)
	if m.MessageID != want || !strings.HasPrefix(b.String(), "Message-ID: "+want+"\r\n") {
		t.Errorf("raw: Message-ID %q, message:\n%s", m.MessageID, b.String())
	}
}

// A large LF-only message is written with CRLF throughout, and RawSize says its size.
func TestRawMessageLFOnlyLarge(t *testing.T) {
	t.Parallel()
	var raw strings.Builder
	raw.WriteString("From: a@b.com\nTo: c@d.com\nBcc: e@f.com\nSubject: scan\n\n")
	for range 100_000 {
		raw.WriteString(strings.Repeat("QUJD", 19) + "\n")
	}
	h, err := ParseRawHeader([]byte(raw.String()))
	if err != nil {
		t.Fatal(err)
	}
	m := NewRawMessage("id1", []byte(raw.String()), h, time.Now())
	var b bytes.Buffer
	if _, err := m.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	if CountBareLF(b.Bytes()) != 0 || bareCR(b.Bytes()) >= 0 {
		t.Error("line endings other than CRLF written")
	}
	if m.RawSize() != b.Len() {
		t.Errorf("RawSize %d, wrote %d", m.RawSize(), b.Len())
	}
	if bytes.Contains(b.Bytes(), []byte("e@f.com")) {
		t.Error("Bcc written")
	}
}
