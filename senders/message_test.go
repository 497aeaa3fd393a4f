package senders

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func testContent() *Content {
	pdf := make([]byte, 10_000)
	rand.Read(pdf)
	return &Content{
		From:    mail.Address{Name: "Contoso Billing", Address: "billing@contoso.com"},
		To:      []mail.Address{{Name: "Bob", Address: "bob@fabrikam.com"}},
		Cc:      []mail.Address{{Address: "carol@fabrikam.com"}},
		Bcc:     []mail.Address{{Address: "audit@contoso.com"}},
		ReplyTo: []mail.Address{{Address: "help@contoso.com"}},
		Subject: "Invoice ☃ 42",
		Text:    "Your invoice is attached.",
		HTML:    `<p>Your invoice <img src="cid:logo"></p>`,
		Headers: []Header{{Name: "X-Invoice", Value: "42"}},
		Attachments: []Attachment{
			{Filename: "invoice.pdf", ContentType: "application/pdf", Content: pdf},
			{Filename: "logo.png", ContentType: "image/png", ContentID: "logo", Content: []byte("\x89PNG")},
		},
	}
}

// Walks the composed message as a mail reader would and checks every part.
func TestComposeStructured(t *testing.T) {
	t.Parallel()
	c := testContent()
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	m := NewMessage("01jx0000000000000000000000", c, now)
	var buf bytes.Buffer
	if _, err := m.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	raw := buf.String()
	if strings.Contains(raw, "audit@contoso.com") {
		t.Error("the Bcc address appears in the message")
	}
	if n := strings.Count(strings.ToLower(raw), "\nmessage-id:") + boolInt(strings.HasPrefix(strings.ToLower(raw), "message-id:")); n != 1 {
		t.Errorf("%d Message-ID fields, want 1", n)
	}
	msg, err := mail.ReadMessage(strings.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	h := msg.Header
	dec := new(mime.WordDecoder)
	subject, _ := dec.DecodeHeader(h.Get("Subject"))
	from, _ := h.AddressList("From")
	date, _ := h.Date()
	checks := map[string]bool{
		"Message-ID":       h.Get("Message-Id") == "<01jx0000000000000000000000@contoso.com>",
		"Subject":          subject == c.Subject,
		"From":             len(from) == 1 && from[0].Address == "billing@contoso.com" && from[0].Name == "Contoso Billing",
		"Date":             date.Equal(now),
		"X-Invoice":        h.Get("X-Invoice") == "42",
		"Reply-To":         strings.Contains(h.Get("Reply-To"), "help@contoso.com"),
		"no Bcc":           h.Get("Bcc") == "",
		"no User-Agent":    h.Get("User-Agent") == "" && h.Get("X-Mailer") == "",
		"multipart/mixed":  strings.HasPrefix(h.Get("Content-Type"), "multipart/mixed"),
		"envelope has bcc": strings.Join(m.Recipients, ",") == "bob@fabrikam.com,carol@fabrikam.com,audit@contoso.com",
	}
	for name, ok := range checks {
		if !ok {
			t.Errorf("%s wrong; header:\n%v", name, h)
		}
	}
	parts := map[string][]byte{}
	walk(t, msg.Header.Get("Content-Type"), msg.Body, parts)
	if !bytes.Equal(parts["invoice.pdf"], c.Attachments[0].Content) {
		t.Error("attachment bytes differ")
	}
	if string(parts["<logo>"]) != "\x89PNG" {
		t.Errorf("inline part: %q", parts["<logo>"])
	}
	if string(parts["text/plain"]) != c.Text || string(parts["text/html"]) != c.HTML {
		t.Errorf("bodies: %q / %q", parts["text/plain"], parts["text/html"])
	}
	// Writing twice gives the same content (boundaries differ): readers are rewound.
	var again bytes.Buffer
	m.WriteTo(&again)
	parts2 := map[string][]byte{}
	msg2, _ := mail.ReadMessage(&again)
	walk(t, msg2.Header.Get("Content-Type"), msg2.Body, parts2)
	if !bytes.Equal(parts2["invoice.pdf"], c.Attachments[0].Content) {
		t.Error("second write lost the attachment")
	}
	if est := c.EstimatedSize(); est < int64(buf.Len()) || est > int64(buf.Len())*11/10+2048 {
		t.Errorf("EstimatedSize %d for a %d-byte message", est, buf.Len())
	}
}

// walk collects leaf parts by file name, Content-ID or media type.
func walk(t *testing.T, ctype string, body io.Reader, out map[string][]byte) {
	t.Helper()
	mt, params, err := mime.ParseMediaType(ctype)
	if err != nil {
		t.Fatalf("Content-Type %q: %v", ctype, err)
	}
	if strings.HasPrefix(mt, "multipart/") {
		r := multipart.NewReader(body, params["boundary"])
		for {
			p, err := r.NextRawPart()
			if err == io.EOF {
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			walkPart(t, p, out)
		}
	}
}

func walkPart(t *testing.T, p *multipart.Part, out map[string][]byte) {
	ctype := p.Header.Get("Content-Type")
	if strings.HasPrefix(ctype, "multipart/") {
		walk(t, ctype, p, out)
		return
	}
	var r io.Reader = p
	switch p.Header.Get("Content-Transfer-Encoding") {
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, p)
	case "quoted-printable":
		r = quotedPrintable(p)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	key, _, _ := mime.ParseMediaType(ctype)
	if id := p.Header.Get("Content-Id"); id != "" {
		key = id
	} else if _, params, err := mime.ParseMediaType(p.Header.Get("Content-Disposition")); err == nil && params["filename"] != "" {
		key = params["filename"]
	}
	out[key] = b
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestRawMessage(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	const date = "Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
	const rest = "From: a@b.com\r\nTo: c@d.com\r\n\r\nhi\r\n"
	tests := []struct {
		name, raw, want, wantID string
	}{
		{"CRLF, nothing missing", "Message-ID: <a@b>\r\n" + date + rest, "Message-ID: <a@b>\r\n" + date + rest, "<a@b>"},
		{"CRLF, adds both", rest, "Message-ID: <id1@b.com>\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\n" + rest, "<id1@b.com>"},
		{"LF, adds Message-ID, CRLF throughout", strings.ReplaceAll(date+rest, "\r\n", "\n"), "Message-ID: <id1@b.com>\r\n" + date + rest, "<id1@b.com>"},
		{"mixed line endings", "Date: Mon, 23 Nov 2026 10:00:00 +0000\nFrom: a@b.com\r\nTo: c@d.com\n\r\nhi\nthere\r\n\n",
			"Message-ID: <id1@b.com>\r\n" + date + "From: a@b.com\r\nTo: c@d.com\r\n\r\nhi\r\nthere\r\n\r\n", "<id1@b.com>"},
		{"added after the trace fields", "Received: from a\r\n by b; Mon, 23 Nov 2026 10:00:00 +0000\r\n" + rest,
			"Received: from a\r\n by b; Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <id1@b.com>\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\n" + rest, "<id1@b.com>"},
		{"Message-ID bracketed in place", "Message-Id: 20261203.0001@mfp\r\n" + date + rest, "Message-Id: <20261203.0001@mfp>\r\n" + date + rest, "<20261203.0001@mfp>"},
		{"folded Message-ID bracketed", date + "Message-ID:\r\n 20261203.0001@mfp\r\n" + rest, date + "Message-ID: <20261203.0001@mfp>\r\n" + rest, "<20261203.0001@mfp>"},
		{"Message-ID with spaces replaced", "Message-ID: scan of 3 Dec\r\n" + date + rest, "Message-ID: <id1@b.com>\r\n" + date + rest, "<id1@b.com>"},
		{"Message-ID without @ replaced", date + "Message-ID: <20261203>\r\n" + rest, date + "Message-ID: <id1@b.com>\r\n" + rest, "<id1@b.com>"},
		{"8-bit Message-ID replaced", date + "Message-ID: <sc\xe4n@mfp>\r\n" + rest, date + "Message-ID: <id1@b.com>\r\n" + rest, "<id1@b.com>"},
		{"empty Message-ID replaced", date + "Message-ID:\r\n" + rest, date + "Message-ID: <id1@b.com>\r\n" + rest, "<id1@b.com>"},
		{"Latin-1 From name re-encoded", date + "Message-ID: <a@b>\r\nFrom: J\xf6rg M\xfcller <a@b.com>\r\nTo: c@d.com\r\n\r\nhi\r\n",
			date + "Message-ID: <a@b>\r\nFrom: =?utf-8?q?J=C3=B6rg_M=C3=BCller?=\r\n <a@b.com>\r\nTo: c@d.com\r\n\r\nhi\r\n", "<a@b>"},
		{"UTF-8 From name as it is", date + "Message-ID: <a@b>\r\nFrom: J\xc3\xb6rg <a@b.com>\r\nTo: c@d.com\r\n\r\nhi\r\n",
			date + "Message-ID: <a@b>\r\nFrom: J\xc3\xb6rg <a@b.com>\r\nTo: c@d.com\r\n\r\nhi\r\n", "<a@b>"},
	}
	for _, tt := range tests {
		h, err := ParseRawHeader([]byte(tt.raw))
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		m := NewRawMessage("id1", []byte(tt.raw), h, now)
		var b bytes.Buffer
		m.WriteTo(&b)
		if b.String() != tt.want {
			t.Errorf("%s: wrote\n%q\nwant\n%q", tt.name, b.String(), tt.want)
		}
		if m.RawSize() != b.Len() {
			t.Errorf("%s: RawSize %d, wrote %d", tt.name, m.RawSize(), b.Len())
		}
		if m.MessageID != tt.wantID {
			t.Errorf("%s: Message-ID %q, want %q", tt.name, m.MessageID, tt.wantID)
		}
		if n := strings.Count(strings.ToLower(b.String()), "message-id:"); n != 1 {
			t.Errorf("%s: %d Message-ID fields", tt.name, n)
		}
		if m.Content != nil || m.From.Address != "a@b.com" || len(m.Recipients) != 1 {
			t.Errorf("%s: from %v recipients %v", tt.name, m.From, m.Recipients)
		}
		if !utf8.ValidString(m.From.Name) || !utf8.ValidString(m.MessageID) {
			t.Errorf("%s: From name %q or Message-ID %q is not UTF-8", tt.name, m.From.Name, m.MessageID)
		}
	}
	// Bcc and Resent-Bcc fields (folded or not, in any case) are left out; everything
	// else stays byte for byte.
	withBcc := "From: a@b.com\r\nBCC: x@y.com,\r\n z@y.com\r\nTo: c@d.com\r\nresent-bcc: w@y.com\r\n\r\nBcc: in the body stays\r\n"
	h, err := ParseRawHeader([]byte(withBcc))
	if err != nil {
		t.Fatal(err)
	}
	m := NewRawMessage("id2", []byte(withBcc), h, now)
	var b bytes.Buffer
	m.WriteTo(&b)
	want := "Message-ID: <id2@b.com>\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\nFrom: a@b.com\r\nTo: c@d.com\r\n\r\nBcc: in the body stays\r\n"
	if b.String() != want {
		t.Errorf("with Bcc fields wrote\n%q\nwant\n%q", b.String(), want)
	}
	if strings.Join(m.Recipients, ",") != "c@d.com,x@y.com,z@y.com" {
		t.Errorf("envelope lost the Bcc recipients: %v", m.Recipients)
	}
	if _, err := ParseRawHeader([]byte("From: <<<\r\n\r\n")); err == nil {
		t.Error("accepted a malformed From")
	}
}
