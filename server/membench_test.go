package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	mailgatev1 "github.com/mailgate/mailgate/api/mailgate/v1"
	"github.com/mailgate/mailgate/internal/memtest"
	"github.com/mailgate/mailgate/senders"
)

// BenchmarkLargeMessage sends one message with a 30 MB attachment over each API to a
// backend that writes the MIME message out as the SMTP backends do, and reports the peak
// heap above idle as a multiple of the attachment's size (peak-x).
func BenchmarkLargeMessage(b *testing.B) {
	const size = 30 << 20
	content := bytes.Repeat([]byte("mailgate"), size/8)
	sink := senderFunc(func(ctx context.Context, m *senders.Message) (*senders.Result, error) {
		if _, err := m.WriteTo(io.Discard); err != nil {
			return nil, err
		}
		return &senders.Result{Status: senders.Sent, Accepted: m.Recipients}, nil
	})
	srv := startServerWith(b, nil, func(o *Options) {
		o.Service.Limits.MaxMessageBytes = 45 << 20
		o.Service.Backends["ok"] = sink
	})
	req := &mailgatev1.SendMailRequest{From: addr("app@example.com"), To: []*mailgatev1.Address{addr("bob@example.com")},
		Subject: "scan", Text: "see attached",
		Attachments: []*mailgatev1.Attachment{{Filename: "scan.pdf", ContentType: "application/pdf", Content: content}}}
	body := []byte(`{"from":{"address":"app@example.com"},"to":[{"address":"bob@example.com"}],"subject":"scan","text":"see attached",` +
		`"attachments":[{"filename":"scan.pdf","contentType":"application/pdf","content":"` + base64.StdEncoding.EncodeToString(content) + `"}]}`)
	report := func(b *testing.B, send func()) {
		var worst uint64
		for b.Loop() {
			if p := memtest.HeapPeak(send); p > worst {
				worst = p
			}
		}
		b.ReportMetric(float64(worst)/size, "peak-x")
		b.ReportMetric(float64(worst)/(1<<20), "peak-MB")
	}
	// The request is encoded before the measurement, as the REST body is: the peak is
	// the server's.
	wire, err := proto.Marshal(req)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("grpc", func(b *testing.B) {
		report(b, func() {
			var resp mailgatev1.SendMailResponse
			if err := srv.grpc.Invoke(withAPIKey(appKey), mailgatev1.MailService_SendMail_FullMethodName, wireMessage(wire), &resp, grpc.ForceCodecV2(rawCodec{})); err != nil {
				b.Fatal(err)
			}
		})
	})
	// A raw message with LF line endings, as curl --upload-file sends it: the backend
	// writes it with CRLF.
	var raw bytes.Buffer
	raw.WriteString("From: app@example.com\nTo: bob@example.com\nSubject: scan\nMIME-Version: 1.0\n" +
		"Content-Type: application/pdf\nContent-Transfer-Encoding: base64\n\n")
	enc := base64.StdEncoding.EncodeToString(content)
	for len(enc) > 76 {
		raw.WriteString(enc[:76] + "\n")
		enc = enc[76:]
	}
	raw.WriteString(enc + "\n")
	rawWire, err := proto.Marshal(&mailgatev1.SendMailRequest{RawMime: raw.Bytes()})
	if err != nil {
		b.Fatal(err)
	}
	raw = bytes.Buffer{}
	b.Run("grpc-raw-lf", func(b *testing.B) {
		report(b, func() {
			var resp mailgatev1.SendMailResponse
			if err := srv.grpc.Invoke(withAPIKey(appKey), mailgatev1.MailService_SendMail_FullMethodName, wireMessage(rawWire), &resp, grpc.ForceCodecV2(rawCodec{})); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("rest", func(b *testing.B) {
		report(b, func() {
			r, _ := http.NewRequest("POST", srv.url+"/v1/messages:send", bytes.NewReader(body))
			r.Header.Set("Authorization", "Bearer "+appKey)
			resp, err := http.DefaultClient.Do(r)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatalf("status %d", resp.StatusCode)
			}
		})
	})
}
