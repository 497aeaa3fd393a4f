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

type streamingSender struct{}

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
func BenchmarkLargeMessage(b *testing.B) {
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
		body.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	body.WriteString(enc + "\r\n")
	msg := "From: app@contoso.com\r\nTo: bob@fabrikam.com\r\nSubject: scan\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n" + body.String()
	data := []byte(msg)
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
			w, err := c.Data()
			if err != nil {
				b.Fatal(err)
			}
			w.Write(data)
			if err := w.Close(); err != nil {
				b.Fatal(err)
			}
		})
		worst = max(worst, p)
	}
	b.ReportMetric(float64(worst)/size, "peak-x")
	b.ReportMetric(float64(worst)/(1<<20), "peak-MB")
}
