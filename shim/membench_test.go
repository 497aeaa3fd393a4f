package shim_test

import (
	"context"
	"encoding/base64"
	"io"
	"strings"
	"testing"

	"github.com/mailgate/mailgate/internal/memtest"
	"github.com/mailgate/mailgate/senders"
	"github.com/mailgate/mailgate/server"
	"github.com/mailgate/mailgate/shim"
)

type streamingSender struct{ senders.SenderDefaults }

func (streamingSender) Send(_ context.Context, m *senders.Message) (*senders.Result, error) {
	if _, err := m.WriteTo(io.Discard); err != nil {
		return nil, err
	}
	return &senders.Result{Status: senders.Sent, Accepted: m.Recipients}, nil
}

// BenchmarkLargeMessage sends one message with a 30 MB attachment (base64, as a device
// writes it) through the shim to a backend that writes it out, and reports the peak heap
// above idle as a multiple of the attachment's size (the message itself, in base64, is
// 4/3 of it).
func BenchmarkLargeMessage(b *testing.B) { benchmarkLargeMessage(b, "\r\n") }

// BenchmarkLargeMessageLF is BenchmarkLargeMessage with LF line endings, as curl
// --upload-file sends a file: the shim makes them CRLF as it reads the message.
func BenchmarkLargeMessageLF(b *testing.B) { benchmarkLargeMessage(b, "\n") }

func benchmarkLargeMessage(b *testing.B, eol string) {
	const size = 30 << 20
	f := start(b, func(o *shim.Options, svc *server.ServiceOptions) {
		o.MaxMessageBytes = 45 << 20
		svc.Limits.MaxMessageBytes = 45 << 20
		svc.Backends["out"] = streamingSender{}
	})
	raw := make([]byte, size)
	enc := base64.StdEncoding.EncodeToString(raw)
	var body strings.Builder
	for len(enc) > 76 {
		body.WriteString(enc[:76] + eol)
		enc = enc[76:]
	}
	body.WriteString(enc + eol)
	msg := "From: app@contoso.com\r\nTo: bob@fabrikam.com\r\nSubject: scan\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n" + body.String()
	data := []byte(strings.ReplaceAll(msg, "\r\n", eol))
	var worst uint64
	for b.Loop() {
		c, err := f.dial(b, false, "app", appKey)
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Mail("app@contoso.com"); err != nil {
			b.Fatal(err)
		}
		if err := c.Rcpt("bob@fabrikam.com"); err != nil {
			b.Fatal(err)
		}
		p := memtest.HeapPeak(func() { // the message's bytes exist before: the peak is the shim's
			// The bytes go as they are: net/smtp's DATA writer would make every LF a
			// CRLF. No line starts with a dot, so none needs stuffing.
			id, err := c.Text.Cmd("DATA")
			if err != nil {
				b.Fatal(err)
			}
			c.Text.StartResponse(id)
			_, _, err = c.Text.ReadResponse(354)
			c.Text.EndResponse(id)
			if err != nil {
				b.Fatal(err)
			}
			c.Text.W.Write(data)
			c.Text.W.WriteString("\r\n.\r\n")
			if err := c.Text.W.Flush(); err != nil {
				b.Fatal(err)
			}
			if _, msg, err := c.Text.ReadResponse(250); err != nil {
				b.Fatal(msg, err)
			}
		})
		worst = max(worst, p)
	}
	b.ReportMetric(float64(worst)/size, "peak-x")
	b.ReportMetric(float64(worst)/(1<<20), "peak-MB")
}
