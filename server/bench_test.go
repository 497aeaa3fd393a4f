package server

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc/metadata"

	mailgatev1 "github.com/mailgate/mailgate/api/mailgate/v1"
	"github.com/mailgate/mailgate/mailaddr"
	"github.com/mailgate/mailgate/senders"
	"github.com/mailgate/mailgate/senders/discard"
	"github.com/mailgate/mailgate/server/apikey"
	"github.com/mailgate/mailgate/server/policy"
	"github.com/mailgate/mailgate/server/store"
	"github.com/mailgate/mailgate/server/store/storetest"
)

func benchService(b *testing.B) (*Service, context.Context) {
	svc, err := NewService(ServiceOptions{
		Router:   policy.NewRouter([]policy.Route{{Name: "r", Match: mailaddr.MustParsePattern("*"), Backend: "sink"}}),
		Backends: map[string]senders.Sender{"sink": discard.New(0)},
		Limits:   Limits{MaxMessageBytes: 35 << 20, MaxRecipients: 500},
		Mailbox:  MailboxLimits{}, // no rate limits: this measures the path, not the budget
	})
	if err != nil {
		b.Fatal(err)
	}
	key := &apikey.Key{Name: "bench", Senders: []mailaddr.Pattern{mailaddr.MustParsePattern("*")}}
	return svc, withKey(context.Background(), key)
}

// BenchmarkSendMail is the service path alone: validate, authorise, route, deliver to
// the discard backend, record, log (discarded).
func BenchmarkSendMail(b *testing.B) {
	svc, ctx := benchService(b)
	req := validRequest()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := svc.SendMail(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkSendMailAttachment adds a 1 MB attachment, composed to MIME by the backend
// (discard does not compose, so this measures validation and size estimation).
func BenchmarkSendMailAttachment(b *testing.B) {
	svc, ctx := benchService(b)
	req := validRequest()
	req.Attachments = []*mailgatev1.Attachment{{Filename: "a.pdf", Content: make([]byte, 1<<20)}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := svc.SendMail(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCompose1MB writes a message with a 1 MB attachment as MIME.
func BenchmarkCompose1MB(b *testing.B) {
	req := validRequest()
	req.Attachments = []*mailgatev1.Attachment{{Filename: "a.pdf", Content: make([]byte, 1<<20)}}
	msg, err := normalize(req, "01jx0000000000000000000000", testNow, Limits{MaxMessageBytes: 35 << 20, MaxRecipients: 500})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(1 << 20)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := msg.WriteTo(io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGRPC and BenchmarkREST go through real loopback listeners, interceptors,
// and (for REST) the gateway's JSON and in-process gRPC hop.
func BenchmarkGRPC(b *testing.B) {
	srv := startServer(b, nil)
	ctx := withAPIKey(appKey)
	req := validRequest()
	b.ReportAllocs()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := srv.mail.SendMail(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkREST(b *testing.B) {
	srv := startServer(b, nil)
	const body = `{"from":{"address":"app@example.com"},"to":[{"address":"bob@example.com"}],"subject":"Hello","text":"hi"}`
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.ReportAllocs()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest("POST", srv.url+"/v1/messages:send", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+appKey)
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
}

// BenchmarkSendMailStore compares the stores on the service path: every message claims an
// idempotency key and takes the mailbox budget (limits high enough never to refuse).
func BenchmarkSendMailStore(b *testing.B) {
	for _, tc := range []struct {
		name  string
		store func(b *testing.B) store.Store
	}{
		{"memory", func(*testing.B) store.Store { return store.NewMemory() }},
		{"redis", func(b *testing.B) store.Store {
			c := storetest.SharedRedis(b)
			return store.NewRedis(c, storetest.Prefix(b, c, "bench"))
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			svc, err := NewService(ServiceOptions{
				Router:   policy.NewRouter([]policy.Route{{Name: "r", Match: mailaddr.MustParsePattern("*"), Backend: "sink"}}),
				Backends: map[string]senders.Sender{"sink": discard.New(0)},
				Store:    tc.store(b),
				Limits:   Limits{MaxMessageBytes: 35 << 20, MaxRecipients: 500},
				Mailbox:  MailboxLimits{MessagesPerMinute: 1 << 30, RecipientsPerDay: 1 << 30},
			})
			if err != nil {
				b.Fatal(err)
			}
			key := &apikey.Key{Name: "bench", Senders: []mailaddr.Pattern{mailaddr.MustParsePattern("*")}}
			base := withKey(context.Background(), key)
			var n atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(16) // Redis latency is hidden by concurrency, as with real callers
			b.RunParallel(func(pb *testing.PB) {
				req := validRequest()
				for pb.Next() {
					ctx := metadata.NewIncomingContext(base, metadata.Pairs("idempotency-key", strconv.FormatInt(n.Add(1), 10)))
					if _, err := svc.SendMail(ctx, req); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
