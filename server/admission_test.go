package server

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	mailgatev1 "github.com/mailgate/mailgate/api/mailgate/v1"
	"github.com/mailgate/mailgate/mailaddr"
	"github.com/mailgate/mailgate/mailerr"
	"github.com/mailgate/mailgate/senders"
	"github.com/mailgate/mailgate/server/apikey"
	"github.com/mailgate/mailgate/server/store"
	"github.com/mailgate/mailgate/server/store/storetest"
)

// countingSender counts deliveries and answers with the test's function.
type countingSender struct {
	senders.SenderDefaults
	n      atomic.Int64
	answer func(n int64, msg *senders.Message) (*senders.Result, error)
}

func (c *countingSender) Send(ctx context.Context, msg *senders.Message) (*senders.Result, error) {
	n := c.n.Add(1)
	if c.answer != nil {
		return c.answer(n, msg)
	}
	return &senders.Result{Status: senders.Sent, Accepted: msg.Recipients}, nil
}

func withIdemKey(ctx context.Context, k string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "idempotency-key", k)
}

// startWithBackend serves every "*@example.com" message through b.
func startWithBackend(t testing.TB, b senders.Sender, adjust func(*Options)) *testServer {
	return startServerWith(t, nil, func(o *Options) {
		o.Service.Backends["ok"] = b
		if adjust != nil {
			adjust(o)
		}
	})
}

func TestParseIdempotencyHeader(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want, err string }{
		{`"8e03978e-40d5-43e8-bc93-6894a57f9324"`, "8e03978e-40d5-43e8-bc93-6894a57f9324", ""},
		{`8e03978e-40d5`, "8e03978e-40d5", ""},
		{` "a\"b\\c" `, `a"b\c`, ""},
		{`"unterminated`, "", "unterminated"},
		{`"a"b"`, "", "unescaped"},
		{`"a\nb"`, "", "may only escape"},
		{`""`, "", "empty"},
		{"\"é\"", "", "printable ASCII"},
	}
	for _, tt := range tests {
		got, err := parseIdempotencyHeader(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("parse(%q) error %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parse(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestFingerprint(t *testing.T) {
	t.Parallel()
	a := validRequest()
	a.Attachments = []*mailgatev1.Attachment{{Filename: "a.pdf", Content: []byte("one")}}
	a.Tags = map[string]string{"x": "1", "y": "2"}
	b := validRequest()
	b.Tags = map[string]string{"y": "2", "x": "1"}
	b.Attachments = []*mailgatev1.Attachment{{Filename: "a.pdf", Content: []byte("one")}}
	b.IdempotencyKey = "ignored"
	if fingerprint(a) != fingerprint(b) {
		t.Error("same content, different fingerprints")
	}
	for name, change := range map[string]func(r *mailgatev1.SendMailRequest){
		"attachment bytes": func(r *mailgatev1.SendMailRequest) { r.Attachments[0].Content = []byte("two") },
		"attachment name":  func(r *mailgatev1.SendMailRequest) { r.Attachments[0].Filename = "b.pdf" },
		"subject":          func(r *mailgatev1.SendMailRequest) { r.Subject = "other" },
		"recipient":        func(r *mailgatev1.SendMailRequest) { r.To[0].Address = "eve@example.com" },
		"raw":              func(r *mailgatev1.SendMailRequest) { r.RawMime = []byte("x") },
		"moved bytes":      func(r *mailgatev1.SendMailRequest) { r.Attachments[0].Content = []byte("on"); r.Subject += "e" },
	} {
		c := validRequest()
		c.Tags = map[string]string{"x": "1", "y": "2"}
		c.Attachments = []*mailgatev1.Attachment{{Filename: "a.pdf", Content: []byte("one")}}
		change(c)
		if fingerprint(c) == fingerprint(a) {
			t.Errorf("%s changed but the fingerprint did not", name)
		}
	}
}

func TestIdempotency(t *testing.T) {
	t.Parallel()
	backend := &countingSender{}
	srv := startWithBackend(t, backend, nil)
	ctx := withIdemKey(withAPIKey(appKey), `"order-1001"`)

	first, err := srv.mail.SendMail(ctx, validRequest())
	if err != nil {
		t.Fatal(err)
	}
	second, err := srv.mail.SendMail(ctx, validRequest())
	if err != nil {
		t.Fatal(err)
	}
	if !second.GetReplayed() || second.GetId() != first.GetId() || first.GetReplayed() {
		t.Errorf("first %v, second %v: want the second replayed with the same id", first, second)
	}
	// The same key in the field instead of the header is the same request.
	req := validRequest()
	req.IdempotencyKey = "order-1001"
	if third, err := srv.mail.SendMail(withAPIKey(appKey), req); err != nil || third.GetId() != first.GetId() {
		t.Errorf("key given as a field: %v, %v", third, err)
	}
	if n := backend.n.Load(); n != 1 {
		t.Errorf("%d deliveries, want 1", n)
	}

	// Another key's scope does not see it.
	other, err := srv.mail.SendMail(withIdemKey(withAPIKey(otherKey), "order-1001"), validRequest())
	if err != nil || other.GetReplayed() {
		t.Errorf("other API key, same idempotency key: %v, %v", other, err)
	}

	changed := validRequest()
	changed.Subject = "something else"
	_, err = srv.mail.SendMail(ctx, changed)
	if code, info, _ := errorInfo(t, err); code != codes.FailedPrecondition || info.GetReason() != "IDEMPOTENCY_KEY_REUSED" {
		t.Errorf("reused key: %v %s", code, info.GetReason())
	}
	req.IdempotencyKey = "order-1002"
	_, err = srv.mail.SendMail(ctx, req)
	if code, _, st := errorInfo(t, err); code != codes.InvalidArgument || !strings.Contains(st.Message(), "idempotencyKey") {
		t.Errorf("header and field disagree: %v", err)
	}
}

func TestIdempotencyInFlight(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	backend := &countingSender{answer: func(n int64, msg *senders.Message) (*senders.Result, error) {
		started <- struct{}{}
		<-release
		return &senders.Result{Status: senders.Sent, Accepted: msg.Recipients}, nil
	}}
	srv := startWithBackend(t, backend, nil)
	ctx := withIdemKey(withAPIKey(appKey), "k1")
	done := make(chan error, 1)
	go func() { _, err := srv.mail.SendMail(ctx, validRequest()); done <- err }()
	<-started
	_, err := srv.mail.SendMail(ctx, validRequest())
	if code, info, _ := errorInfo(t, err); code != codes.Aborted || info.GetReason() != "IDEMPOTENCY_KEY_IN_FLIGHT" {
		t.Errorf("same key in flight: %v %s", code, info.GetReason())
	}
	// The same request over REST: validRequest() as JSON.
	resp, _ := post(t, srv.url, appKey, `{"from":{"address":"app@example.com","name":"App"},"to":[{"address":"bob@example.com"}],"subject":"Hello","text":"hi","idempotencyKey":"k1"}`)
	if resp.StatusCode != http.StatusConflict {
		t.Errorf("REST, same key in flight: %d, want 409", resp.StatusCode)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A transient failure is not recorded, so the retry goes through; a permanent one is,
// so the retry gets the same answer without touching the backend again.
func TestIdempotencyRecordsOnlyFinalOutcomes(t *testing.T) {
	t.Parallel()
	backend := &countingSender{answer: func(n int64, msg *senders.Message) (*senders.Result, error) {
		switch {
		case n == 1:
			return nil, mailerr.New(mailerr.Unavailable, "connection refused")
		case strings.HasPrefix(msg.Recipients[0], "reject"):
			return nil, mailerr.New(mailerr.Rejected, "550 5.1.10 recipient not found")
		case strings.HasPrefix(msg.Recipients[0], "unknown"):
			return nil, mailerr.New(mailerr.OutcomeUnknown, "Graph answered 504 after receiving the message")
		}
		return &senders.Result{Status: senders.Sent, Accepted: msg.Recipients}, nil
	}}
	srv := startWithBackend(t, backend, nil)
	ctx := withIdemKey(withAPIKey(appKey), "k-transient")
	if _, err := srv.mail.SendMail(ctx, validRequest()); status.Code(err) != codes.Unavailable {
		t.Fatalf("first attempt: %v", err)
	}
	if resp, err := srv.mail.SendMail(ctx, validRequest()); err != nil || resp.GetReplayed() {
		t.Fatalf("retry after a transient failure: %v, %v", resp, err)
	}

	rejected := validRequest()
	rejected.To[0].Address = "rejected@example.com"
	ctx = withIdemKey(withAPIKey(appKey), "k-permanent")
	_, err1 := srv.mail.SendMail(ctx, rejected)
	before := backend.n.Load()
	_, err2 := srv.mail.SendMail(ctx, rejected)
	if status.Code(err1) != codes.FailedPrecondition || status.Convert(err2).Message() != status.Convert(err1).Message() {
		t.Errorf("permanent failure: %v then %v, want the same answer twice", err1, err2)
	}
	if backend.n.Load() != before {
		t.Error("the replayed permanent failure reached the backend again")
	}

	// An unknown outcome is kept too: the message may have gone out, so a retry with the
	// same key must not send it again.
	unknown := validRequest()
	unknown.To[0].Address = "unknown@example.com"
	ctx = withIdemKey(withAPIKey(appKey), "k-unknown")
	_, err1 = srv.mail.SendMail(ctx, unknown)
	before = backend.n.Load()
	_, err2 = srv.mail.SendMail(ctx, unknown)
	for _, err := range []error{err1, err2} {
		if code, info, _ := errorInfo(t, err); code != codes.Unavailable || info.GetReason() != "OUTCOME_UNKNOWN" {
			t.Errorf("unknown outcome: %v %s", code, info.GetReason())
		}
	}
	if backend.n.Load() != before {
		t.Error("a message whose outcome was unknown was sent again")
	}
}

func TestThrottling(t *testing.T) {
	t.Parallel()
	backend := &countingSender{}
	srv := startWithBackend(t, backend, func(o *Options) {
		o.Service.Mailbox = MailboxLimits{MessagesPerMinute: 3, RecipientsPerDay: 100}
	})
	// Refused requests consume nothing.
	for range 5 {
		bad := validRequest()
		bad.To = nil
		srv.mail.SendMail(withAPIKey(appKey), bad)
		srv.mail.SendMail(withAPIKey("mg_wrong"), validRequest())
	}
	for i := range 3 {
		if _, err := srv.mail.SendMail(withAPIKey(appKey), validRequest()); err != nil {
			t.Fatalf("message %d: %v", i+1, err)
		}
	}
	_, err := srv.mail.SendMail(withAPIKey(appKey), validRequest())
	code, info, st := errorInfo(t, err)
	if code != codes.ResourceExhausted || info.GetReason() != "THROTTLED" || !strings.Contains(st.Message(), "3 messages per minute") {
		t.Fatalf("4th message: %v", err)
	}
	var retry time.Duration
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			retry = ri.GetRetryDelay().AsDuration()
		}
	}
	if retry < 55*time.Second || retry > time.Minute {
		t.Errorf("RetryInfo %v, want about 1m (when the first message leaves the window)", retry)
	}
	if !strings.Contains(st.Message(), "retry in 1m") && !strings.Contains(st.Message(), "retry in 60s") {
		t.Errorf("message %q should say when, as Retry-After does", st.Message())
	}
	resp, e := post(t, srv.url, appKey, `{"from":{"address":"app@example.com"},"to":[{"address":"bob@example.com"}],"text":"hi"}`)
	if resp.StatusCode != 429 || e.reason() != "THROTTLED" {
		t.Fatalf("REST: %d %+v", resp.StatusCode, e)
	}
	if ra := resp.Header.Get("Retry-After"); ra < "55" || ra > "60" || len(ra) != 2 {
		t.Errorf("Retry-After %q, want whole seconds, about 60", ra)
	}
	if n := backend.n.Load(); n != 3 {
		t.Errorf("%d deliveries, want 3", n)
	}
}

func TestKeyLimit(t *testing.T) {
	t.Parallel()
	srv := startWithBackend(t, &countingSender{}, func(o *Options) {
		limited := apikey.NewKeyring()
		limited.Add(&apikey.Key{Name: "app", Senders: []mailaddr.Pattern{mailaddr.MustParsePattern("*@example.com")}, MessagesPerMinute: 2}, apikey.Hash(appKey))
		o.Keys = limited
	})
	for range 2 {
		if _, err := srv.mail.SendMail(withAPIKey(appKey), validRequest()); err != nil {
			t.Fatal(err)
		}
	}
	other := validRequest()
	other.From = addr("second-mailbox@example.com") // another mailbox: the key's limit still applies
	_, err := srv.mail.SendMail(withAPIKey(appKey), other)
	if _, _, st := errorInfo(t, err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), `API key "app"`) {
		t.Errorf("3rd message of a 2-per-minute key: %v", err)
	}
}

// Microsoft's own throttle pauses the mailbox: later messages are refused without
// reaching the backend, until the time passes.
func TestBackendThrottlePausesMailbox(t *testing.T) {
	t.Parallel()
	backend := &countingSender{answer: func(n int64, msg *senders.Message) (*senders.Result, error) {
		if n == 1 {
			e := mailerr.New(mailerr.Throttled, "429 ApplicationThrottled")
			e.RetryAfter = 1500 * time.Millisecond
			return nil, e
		}
		return &senders.Result{Status: senders.Sent, Accepted: msg.Recipients}, nil
	}}
	srv := startWithBackend(t, backend, nil)
	resp, e := post(t, srv.url, appKey, `{"from":{"address":"app@example.com"},"to":[{"address":"bob@example.com"}],"text":"hi"}`)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "2" || e.reason() != "THROTTLED" {
		t.Fatalf("Microsoft's 429: %d Retry-After %q %+v", resp.StatusCode, resp.Header.Get("Retry-After"), e)
	}
	_, err := srv.mail.SendMail(withAPIKey(appKey), validRequest())
	if _, _, st := errorInfo(t, err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "Microsoft 365 throttled mailbox app@example.com") {
		t.Errorf("while paused: %v", err)
	}
	other := validRequest()
	other.From = addr("other-mailbox@example.com")
	if _, err := srv.mail.SendMail(withAPIKey(appKey), other); err != nil {
		t.Errorf("another mailbox is not paused: %v", err)
	}
	if n := backend.n.Load(); n != 2 {
		t.Errorf("%d backend calls, want 2 (the paused mailbox's message must not reach it)", n)
	}
}

// roundTrips counts what a go-redis client sends: one per command, one per pipeline.
type roundTrips struct{ n atomic.Int64 }

func (r *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (r *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { r.n.Add(1); return next(ctx, cmd) }
}
func (r *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { r.n.Add(1); return next(ctx, cmds) }
}

func TestRedisRoundTripsPerMessage(t *testing.T) {
	t.Parallel()
	client := storetest.SharedRedis(t)
	counter := &roundTrips{}
	client.AddHook(counter)
	prefix := storetest.Prefix(t, client, "roundtrips")
	srv := startWithBackend(t, &countingSender{}, func(o *Options) {
		o.Service.Store = store.NewRedis(client, prefix)
		o.Service.Mailbox = MailboxLimits{MessagesPerMinute: 1000, RecipientsPerDay: 10000}
		limited := apikey.NewKeyring()
		limited.Add(&apikey.Key{Name: "app", Senders: []mailaddr.Pattern{mailaddr.MustParsePattern("*@example.com")}, MessagesPerMinute: 1000}, apikey.Hash(appKey))
		o.Keys = limited
	})
	// The first message also pays for connection setup (HELLO, CLIENT SETINFO), once per
	// pooled connection; the claim is about every message after that.
	if _, err := srv.mail.SendMail(withAPIKey(appKey), validRequest()); err != nil {
		t.Fatal(err)
	}
	for i, ctx := range []context.Context{withAPIKey(appKey), withIdemKey(withAPIKey(appKey), "rt-1")} {
		before := counter.n.Load()
		if _, err := srv.mail.SendMail(ctx, validRequest()); err != nil {
			t.Fatal(err)
		}
		if n := counter.n.Load() - before; n > 2 {
			t.Errorf("case %d: %d Redis round trips for one accepted message, want at most 2", i, n)
		} else {
			t.Logf("case %d: %d round trips", i, n)
		}
	}
}

func TestRedisOutage(t *testing.T) {
	t.Parallel()
	redisSrv := storetest.StartRedis(t)
	backend := &countingSender{}
	srv := startWithBackend(t, backend, func(o *Options) {
		o.Service.Store = store.NewRedis(redisSrv.Client(t), "mg:")
	})
	ready := func() int {
		r, err := http.Get(srv.url + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		return r.StatusCode
	}
	if _, err := srv.mail.SendMail(withAPIKey(appKey), validRequest()); err != nil || ready() != 200 {
		t.Fatalf("before the outage: %v, ready %d", err, ready())
	}
	redisSrv.Stop(t)
	_, err := srv.mail.SendMail(withAPIKey(appKey), validRequest())
	if code, info, _ := errorInfo(t, err); code != codes.Unavailable || info.GetReason() != "STORE_UNAVAILABLE" {
		t.Errorf("Redis down: %v %s", code, info.GetReason())
	}
	if r := ready(); r != 503 {
		t.Errorf("/readyz with Redis down: %d", r)
	}
	if n := backend.n.Load(); n != 1 {
		t.Errorf("%d deliveries, want 1: nothing may be sent while Redis is down", n)
	}
	redisSrv.Start(t)
	if _, err := srv.mail.SendMail(withAPIKey(appKey), validRequest()); err != nil || ready() != 200 {
		t.Errorf("after Redis came back: %v, ready %d", err, ready())
	}
}

// Many concurrent requests with one key: exactly one delivery, everyone else 409 or a
// replay of it.
func TestIdempotencyConcurrent(t *testing.T) {
	t.Parallel()
	backend := &countingSender{answer: func(n int64, msg *senders.Message) (*senders.Result, error) {
		time.Sleep(20 * time.Millisecond)
		return &senders.Result{Status: senders.Sent, Accepted: msg.Recipients}, nil
	}}
	client := storetest.SharedRedis(t)
	prefix := storetest.Prefix(t, client, "concurrent")
	srv := startWithBackend(t, backend, func(o *Options) { o.Service.Store = store.NewRedis(client, prefix) })
	var wg sync.WaitGroup
	var mu sync.Mutex
	ids := map[string]int{}
	codesSeen := map[codes.Code]int{}
	for range 50 {
		wg.Go(func() {
			resp, err := srv.mail.SendMail(withIdemKey(withAPIKey(appKey), "burst"), validRequest())
			mu.Lock()
			defer mu.Unlock()
			codesSeen[status.Code(err)]++
			if err == nil {
				ids[resp.GetId()]++
			}
		})
	}
	wg.Wait()
	if backend.n.Load() != 1 || len(ids) != 1 || codesSeen[codes.OK]+codesSeen[codes.Aborted] != 50 {
		t.Errorf("deliveries %d, ids %v, codes %v: want one delivery, one id, only OK and ABORTED", backend.n.Load(), ids, codesSeen)
	}
}

// relayingSender is a backend that relays into the tenant rather than sending as a
// mailbox (relay, Direct Send).
type relayingSender struct{ countingSender }

func (*relayingSender) Scope() senders.Scope { return senders.ScopeBackend }

// A relaying backend has no per-mailbox limits, and Microsoft's throttle pauses the
// whole backend, whatever the From.
func TestRelayingBackendScope(t *testing.T) {
	t.Parallel()
	backend := &relayingSender{countingSender{answer: func(n int64, msg *senders.Message) (*senders.Result, error) {
		if n == 5 {
			e := mailerr.New(mailerr.Throttled, "451 4.7.500 Server busy")
			e.RetryAfter = time.Minute
			return nil, e
		}
		return &senders.Result{Status: senders.Sent, Accepted: msg.Recipients}, nil
	}}}
	srv := startWithBackend(t, backend, func(o *Options) {
		o.Service.Mailbox = MailboxLimits{MessagesPerMinute: 2, RecipientsPerDay: 100}
	})
	for i := range 4 { // twice the mailbox limit: it does not apply
		if _, err := srv.mail.SendMail(withAPIKey(appKey), validRequest()); err != nil {
			t.Fatalf("message %d: %v", i+1, err)
		}
	}
	if _, err := srv.mail.SendMail(withAPIKey(appKey), validRequest()); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("throttled by Microsoft: %v", err)
	}
	other := validRequest()
	other.From = addr("other-sender@example.com")
	_, err := srv.mail.SendMail(withAPIKey(appKey), other)
	if _, _, st := errorInfo(t, err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "Microsoft 365 throttled backend ok") {
		t.Errorf("another From through the paused backend: %v", err)
	}
	if n := backend.n.Load(); n != 5 {
		t.Errorf("%d backend calls, want 5", n)
	}
}

// Recipients a backend refuses while it takes the others are in the response, its
// replay and the message record.
func TestRejectedRecipientsReported(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, reply, want string }{
		{"ascii", "550 5.1.10 RESOLVER.ADR.RecipientNotFound", "550 5.1.10 RESOLVER.ADR.RecipientNotFound"},
		// A localised server's reply in Latin-1: protobuf strings must be UTF-8, so it
		// would have turned a sent message into an error.
		{"latin1", "550 5.1.1 Empf\xe4nger unbekannt", `550 5.1.1 Empf\xe4nger unbekannt`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			backend := &countingSender{answer: func(n int64, msg *senders.Message) (*senders.Result, error) {
				return &senders.Result{Status: senders.Sent, Accepted: msg.Recipients[1:],
					Rejected: []senders.RecipientError{{Recipient: msg.Recipients[0], Reply: tc.reply}}}, nil
			}}
			srv := startWithBackend(t, backend, nil)
			req := validRequest()
			req.To = append(req.To, addr("carol@example.com"))
			ctx := withIdemKey(withAPIKey(appKey), `"partial-1"`)
			for i := range 2 {
				resp, err := srv.mail.SendMail(ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				rr := resp.GetRejectedRecipients()
				if len(rr) != 1 || rr[0].GetAddress() != req.To[0].GetAddress() || rr[0].GetReply() != tc.want ||
					len(resp.GetAcceptedRecipients()) != 1 || resp.GetReplayed() != (i == 1) {
					t.Errorf("response %d: %v", i+1, resp)
				}
				rec, err := srv.mail.GetMessage(withAPIKey(appKey), &mailgatev1.GetMessageRequest{Id: resp.GetId()})
				if err != nil || len(rec.GetRejectedRecipients()) != 1 || rec.GetRejectedRecipients()[0].GetReply() != tc.want {
					t.Errorf("record: %v, %v", rec, err)
				}
			}
			if n := backend.n.Load(); n != 1 {
				t.Errorf("%d sends, want 1", n)
			}
		})
	}
}

// The operator's series: what refused a request, idempotency decisions, backend time.
func TestMetricsSeries(t *testing.T) {
	t.Parallel()
	srv := startWithBackend(t, &countingSender{}, func(o *Options) {
		o.Service.Mailbox = MailboxLimits{MessagesPerMinute: 1}
	})
	ctx := withIdemKey(withAPIKey(appKey), `"metrics-1"`)
	srv.mail.SendMail(ctx, validRequest())
	srv.mail.SendMail(ctx, validRequest())                // replay
	srv.mail.SendMail(withAPIKey(appKey), validRequest()) // over the mailbox's limit
	resp, err := http.Get(srv.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`mailgate_idempotency_total{decision="proceed"} 1`,
		`mailgate_idempotency_total{decision="replay"} 1`,
		`mailgate_throttled_total{limit="messages_per_minute",scope="mailbox"} 1`,
		`mailgate_backend_send_duration_seconds_count{backend="ok",outcome="SENT"} 1`,
		`mailgate_messages_total{backend="ok",outcome="REPLAYED",route="main"} 1`,
		`grpc_server_handled_total{grpc_code="ResourceExhausted",grpc_method="SendMail"`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// The Received fields at the top of a raw message are no part of its fingerprint: the
// shim adds one per attempt, with the time. Anything after them is.
func TestFingerprintRawTrace(t *testing.T) {
	t.Parallel()
	const msg = "Message-ID: <a@b>\r\nFrom: a@example.com\r\nTo: b@example.com\r\n\r\nhi\r\n"
	raw := func(s string) *mailgatev1.SendMailRequest { return &mailgatev1.SendMailRequest{RawMime: []byte(s)} }
	base := fingerprint(raw(msg))
	for _, same := range []string{
		"Received: from mfp ([192.0.2.1])\r\n\tby shim.test (mailgate) with ESMTPSA id 1;\r\n\tMon, 23 Nov 2026 10:00:00 +0000\r\n" + msg,
		"received: from a\r\nReceived: from b\r\n by c\r\n" + msg,
	} {
		if fingerprint(raw(same)) != base {
			t.Errorf("leading Received fields changed the fingerprint: %q", same)
		}
	}
	for _, other := range []string{
		strings.Replace(msg, "hi", "ho", 1),
		"X-A: 1\r\nReceived: from a\r\n" + msg,
		msg + "Received: from a\r\n",
		"Received: from a\r\n" + strings.Replace(msg, "<a@b>", "<c@d>", 1),
	} {
		if fingerprint(raw(other)) == base {
			t.Errorf("%q: same fingerprint as a different message", other)
		}
	}
}
