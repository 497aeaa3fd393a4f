package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/timestamppb"

	mailgatev1 "github.com/mailgate/mailgate/api/mailgate/v1"
	"github.com/mailgate/mailgate/mailaddr"
	"github.com/mailgate/mailgate/mailerr"
	"github.com/mailgate/mailgate/senders"
	"github.com/mailgate/mailgate/server/apikey"
	"github.com/mailgate/mailgate/server/policy"
	"github.com/mailgate/mailgate/server/queue"
	"github.com/mailgate/mailgate/server/queue/spool"
	"github.com/mailgate/mailgate/server/store"
)

// The dispatcher's tests drive a started server through its API with delivery QUEUED,
// a real spool in t.TempDir() and the in-process store, and a scripted backend that
// records every call. They wait by polling up to patience, and assert only lower bounds
// on waits (a retry never comes before its backoff or Retry-After), never tight upper
// ones: they run on loaded 2-core machines under -race.

// patience bounds every wait for something the dispatcher is to do.
const patience = 20 * time.Second

// Small dispatch settings: DispatchOptions, unlike the configuration, takes backoffs
// under a second.
const (
	testMinBackoff = 100 * time.Millisecond
	testMaxBackoff = 400 * time.Millisecond
)

func fastDispatch() DispatchOptions {
	return DispatchOptions{Workers: 4, Lease: 2 * time.Second, MinBackoff: testMinBackoff, MaxBackoff: testMaxBackoff, Poll: 20 * time.Millisecond}
}

// sendCall is one call a scriptSender received.
type sendCall struct {
	backend    string
	id         string // mailgate's id
	messageID  string
	from, to   string // From and the first recipient
	start, end time.Time
	err        error
}

// scriptSender is a backend whose answer to each call the test scripts, and which
// records every call with its time and how many calls were in flight at once.
type scriptSender struct {
	name  string
	scope senders.Scope
	conc  int
	// answer says how the try-th call (1-based) for msg on this backend ends; nil, or a
	// nil error, is a success.
	answer func(ctx context.Context, msg *senders.Message, try int) error

	mu          sync.Mutex
	calls       []sendCall
	tries       map[string]int
	inflight    int
	maxInflight int
}

func (s *scriptSender) Send(ctx context.Context, msg *senders.Message) (*senders.Result, error) {
	start := time.Now()
	s.mu.Lock()
	if s.tries == nil {
		s.tries = make(map[string]int)
	}
	s.tries[msg.ID]++
	try := s.tries[msg.ID]
	s.inflight++
	s.maxInflight = max(s.maxInflight, s.inflight)
	s.mu.Unlock()
	var err error
	if s.answer != nil {
		err = s.answer(ctx, msg, try)
	}
	c := sendCall{backend: s.name, id: msg.ID, messageID: msg.MessageID, from: msg.From.Address, start: start, end: time.Now(), err: err}
	if len(msg.Recipients) > 0 {
		c.to = msg.Recipients[0]
	}
	s.mu.Lock()
	s.inflight--
	s.calls = append(s.calls, c)
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return &senders.Result{Status: senders.Sent, Accepted: msg.Recipients}, nil
}

func (s *scriptSender) Scope() senders.Scope { return s.scope }
func (s *scriptSender) Concurrency() int     { return s.conc }
func (s *scriptSender) Close() error         { return nil }

// callsFor returns the calls for message id (every call when id is ""), by start time.
func (s *scriptSender) callsFor(id string) []sendCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []sendCall
	for _, c := range s.calls {
		if id == "" || c.id == id {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b sendCall) int { return a.start.Compare(b.start) })
	return out
}

func (s *scriptSender) peak() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxInflight
}

// queuedSetup is what a dispatcher test's server is made of.
type queuedSetup struct {
	// routes default to one: *@example.com through backend "mx".
	routes   []policy.Route
	backends map[string]senders.Sender
	// q defaults to a new spool in t.TempDir().
	q           queue.Queue
	lifetime    time.Duration // QueueOptions.MaxLifetime; default 1 h
	sendTimeout time.Duration
	dispatch    *DispatchOptions // default fastDispatch()
	notifier    Notifier
}

func (c queuedSetup) apply(o *Options, logger *slog.Logger) {
	routes := c.routes
	if routes == nil {
		routes = []policy.Route{{Name: "main", Match: mailaddr.MustParsePattern("*@example.com"), Backend: "mx"}}
	}
	o.Service.Router = policy.NewRouter(routes)
	o.Service.Backends = c.backends
	o.Service.Queue = c.q
	o.Service.Notifier = c.notifier
	o.Service.QueueOptions = QueueOptions{MaxLifetime: c.lifetime, MaxSchedule: time.Hour}
	if o.Service.QueueOptions.MaxLifetime == 0 {
		o.Service.QueueOptions.MaxLifetime = time.Hour
	}
	o.Service.SendTimeout = c.sendTimeout
	o.Dispatch = fastDispatch()
	if c.dispatch != nil {
		o.Dispatch = *c.dispatch
	}
	o.Logger = logger
	o.ShutdownTimeout = patience
}

// testLog keeps a test server's log, and shows it when the test failed.
func testLog(t testing.TB) *slog.Logger {
	var mu sync.Mutex
	var buf bytes.Buffer
	t.Cleanup(func() {
		if t.Failed() {
			mu.Lock()
			defer mu.Unlock()
			t.Logf("server log:\n%s", buf.String())
		}
	})
	return slog.New(slog.NewTextHandler(lockedWriter{&mu, &buf}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func openSpool(t testing.TB, path string) *spool.Spool {
	t.Helper()
	sp, err := spool.Open(path, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	return sp
}

// startQueued starts a test server (startServerWith's keys: "app" may send as
// *@example.com) with the setup's routes and backends and a queue.
func startQueued(t testing.TB, c queuedSetup) *testServer {
	t.Helper()
	log := testLog(t) // its Cleanup runs after the server's: it shows the whole log
	if c.q == nil {
		c.q = openSpool(t, filepath.Join(t.TempDir(), "queue.db"))
	}
	return startServerWith(t, nil, func(o *Options) { c.apply(o, log) })
}

// runServer is startServerWith for a test that stops the server itself: stop drains
// it and returns Serve's error (it is called again, to no effect, at cleanup).
func runServer(t testing.TB, opts Options) (*testServer, func() error) {
	t.Helper()
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	httpLn, _ := net.Listen("tcp", "127.0.0.1:0")
	grpcLn, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, httpLn, grpcLn) }()
	conn, err := grpc.NewClient(grpcLn.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	stop := sync.OnceValue(func() error {
		cancel()
		err := <-done
		conn.Close()
		return err
	})
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &testServer{grpc: conn, url: "http://" + httpLn.Addr().String(), mail: mailgatev1.NewMailServiceClient(conn), srv: srv}, stop
}

func testKeys() *apikey.Keyring {
	keys := apikey.NewKeyring()
	keys.Add(&apikey.Key{Name: "app", Senders: []mailaddr.Pattern{mailaddr.MustParsePattern("*@example.com")}}, apikey.Hash(appKey))
	keys.Add(&apikey.Key{Name: "other", Senders: []mailaddr.Pattern{mailaddr.MustParsePattern("*")}}, apikey.Hash(otherKey))
	return keys
}

// queuedRequest is a valid request from from to to, with delivery QUEUED.
func queuedRequest(from, to string) *mailgatev1.SendMailRequest {
	req := validRequest()
	req.From = addr(from)
	req.To = []*mailgatev1.Address{addr(to)}
	req.Delivery = mailgatev1.SendMailRequest_QUEUED
	return req
}

// enqueue sends req with the app key and requires the answer QUEUED.
func enqueue(t testing.TB, ts *testServer, req *mailgatev1.SendMailRequest) *mailgatev1.SendMailResponse {
	t.Helper()
	resp, err := ts.mail.SendMail(withAPIKey(appKey), req)
	if err != nil {
		t.Fatalf("SendMail: %v", err)
	}
	if resp.GetStatus() != mailgatev1.Status_QUEUED || resp.GetId() == "" {
		t.Fatalf("SendMail = %v, want QUEUED", resp)
	}
	return resp
}

func getMessage(t testing.TB, ts *testServer, id string) *mailgatev1.GetMessageResponse {
	t.Helper()
	rec, err := ts.mail.GetMessage(withAPIKey(appKey), &mailgatev1.GetMessageRequest{Id: id})
	if err != nil {
		t.Fatalf("GetMessage(%s): %v", id, err)
	}
	return rec
}

func terminal(s mailgatev1.Status) bool {
	switch s {
	case mailgatev1.Status_SENT, mailgatev1.Status_FAILED, mailgatev1.Status_CANCELED, mailgatev1.Status_UNKNOWN:
		return true
	}
	return false
}

// waitStatus polls GetMessage until the message is in status want; a message that ends
// in another status fails the test at once.
func waitStatus(t testing.TB, ts *testServer, id string, want mailgatev1.Status) *mailgatev1.GetMessageResponse {
	t.Helper()
	deadline := time.Now().Add(patience)
	for {
		rec := getMessage(t, ts, id)
		switch {
		case rec.GetStatus() == want:
			return rec
		case terminal(rec.GetStatus()):
			t.Fatalf("message %s ended %v, want %v: %v", id, rec.GetStatus(), want, rec)
		case time.Now().After(deadline):
			t.Fatalf("message %s still %v after %s, want %v: %v", id, rec.GetStatus(), patience, want, rec)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitFor polls cond until it holds.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting after %s for %s", patience, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// outcomes lists the attempts as backend/outcome.
func outcomes(rec *mailgatev1.GetMessageResponse) []string {
	var out []string
	for _, a := range rec.GetAttempts() {
		out = append(out, a.GetBackend()+"/"+a.GetOutcome())
	}
	return out
}

// metricValue reads one sample from the server's /metrics.
func metricValue(t *testing.T, ts *testServer, name string) float64 {
	t.Helper()
	resp, err := http.Get(ts.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("no %s in /metrics", name)
	return 0
}

// smtpError is a classified backend error carrying the server's reply, as the SMTP
// backend makes them.
func smtpError(kind mailerr.Kind, reply, msg string) *mailerr.Error {
	e := mailerr.New(kind, "%s", msg)
	e.Metadata = map[string]string{mailerr.MetaSMTPReply: reply, mailerr.MetaSMTPCommand: "DATA"}
	return e
}

// A transient failure is retried after the backoff, doubling, until the backend takes
// the message: SENT after three attempts, sent once, with both failures in its history.
func TestDispatchRetriesTransientFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		err     error
		outcome string
		reply   string
	}{
		{"unavailable with a reply", smtpError(mailerr.Unavailable, "451 4.4.0",
			"smtp.office365.com refused DATA: 451 4.4.0; nothing was sent, a retry may succeed"), "UNAVAILABLE", "451 4.4.0"},
		{"backend auth failed", mailerr.New(mailerr.Unavailable, "Graph refused mailgate's token").
			WithReason(mailerr.ReasonBackendAuthFailed), "BACKEND_AUTH_FAILED", ""},
		{"mailbox unavailable", mailerr.New(mailerr.Unavailable, "the mailbox is full").
			WithReason(mailerr.ReasonMailboxUnavailable), "BACKEND_MAILBOX_UNAVAILABLE", ""},
		{"unclassified error", errors.New("dial tcp 52.96.0.1:587: connect: connection refused"), "UNAVAILABLE", ""},
		{"canceled", context.Canceled, "CANCELED", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			mx := &scriptSender{name: "mx", answer: func(_ context.Context, _ *senders.Message, try int) error {
				if try <= 2 {
					return tt.err
				}
				return nil
			}}
			ts := startQueued(t, queuedSetup{backends: map[string]senders.Sender{"mx": mx}})
			resp := enqueue(t, ts, queuedRequest("app@example.com", "bob@example.com"))
			rec := waitStatus(t, ts, resp.GetId(), mailgatev1.Status_SENT)

			want := []string{"mx/" + tt.outcome, "mx/" + tt.outcome, "mx/SENT"}
			if got := outcomes(rec); !slices.Equal(got, want) {
				t.Fatalf("attempts %v, want %v", got, want)
			}
			wantErr := mailerr.Classify(tt.err, mailerr.Unavailable).Msg
			for i, a := range rec.GetAttempts()[:2] {
				if a.GetError() != wantErr || a.GetReply() != tt.reply {
					t.Errorf("attempt %d: error %q reply %q, want %q %q", i, a.GetError(), a.GetReply(), wantErr, tt.reply)
				}
			}
			if a := rec.GetAttempts()[2]; a.GetError() != "" || a.GetReply() != "" {
				t.Errorf("successful attempt: %v", a)
			}
			if rec.GetLastError() != "" || rec.GetFinishTime() == nil || rec.GetNextAttemptTime() != nil || rec.GetBackend() != "mx" {
				t.Errorf("SENT record: lastError %q finishTime %v nextAttemptTime %v backend %q",
					rec.GetLastError(), rec.GetFinishTime(), rec.GetNextAttemptTime(), rec.GetBackend())
			}
			if got := rec.GetAcceptedRecipients(); !slices.Equal(got, []string{"bob@example.com"}) {
				t.Errorf("acceptedRecipients %v", got)
			}

			calls := mx.callsFor(resp.GetId())
			if len(calls) != 3 {
				t.Fatalf("%d sends, want 3", len(calls))
			}
			for i, c := range calls {
				if (c.err == nil) != (i == 2) {
					t.Errorf("send %d: error %v; want only the third to succeed", i, c.err)
				}
				if c.messageID != resp.GetMessageId() {
					t.Errorf("send %d carries Message-ID %s, the caller was told %s", i, c.messageID, resp.GetMessageId())
				}
			}
			// The nth retry waits MinBackoff·2^(n-1), less at most 25% jitter.
			for i, minWait := range []time.Duration{testMinBackoff * 3 / 4, 2 * testMinBackoff * 3 / 4} {
				if wait := calls[i+1].start.Sub(calls[i].end); wait < minWait {
					t.Errorf("retry %d came %s after the failure, before the backoff's least %s", i+1, wait, minWait)
				}
			}
			// Delivery latency runs from acceptance, not from the last retry.
			sent := rec.GetAttempts()[2].GetTime().AsTime()
			if got, least := metricValue(t, ts, "mailgate_queue_delivery_seconds_sum"), sent.Sub(rec.GetAcceptTime().AsTime()).Seconds(); got < least {
				t.Errorf("mailgate_queue_delivery_seconds_sum = %.3f, less than the %.3f s from acceptance to the successful attempt", got, least)
			}
		})
	}
}

// A failure after which the message may have gone out, or that a retry cannot fix,
// ends the message at once after one attempt, and it is never sent again.
func TestDispatchSettlesFinalFailures(t *testing.T) {
	t.Parallel()
	sendAsDenied := mailerr.New(mailerr.PermissionDenied, "Graph refused to send as app@example.com (the sending identity has no Send As right)").
		WithReason(mailerr.ReasonSendAsDenied)
	sendAsDenied.Metadata = map[string]string{mailerr.MetaGraphStatus: "403", mailerr.MetaGraphCode: "ErrorSendAsDenied"}
	tests := []struct {
		name        string
		err         error
		block       bool          // the send blocks until its context is done, then returns its error
		sendTimeout time.Duration // ServiceOptions.SendTimeout
		status      mailgatev1.Status
		outcome     string
		reply       string
	}{
		{name: "recipient rejected", err: smtpError(mailerr.Rejected, "550 5.1.10",
			"smtp.office365.com refused RCPT TO: 550 5.1.10 RESOLVER.ADR.RecipientNotFound"),
			status: mailgatev1.Status_FAILED, outcome: "BACKEND_REJECTED", reply: "550 5.1.10"},
		{name: "send as denied", err: sendAsDenied, status: mailgatev1.Status_FAILED, outcome: "SEND_AS_DENIED", reply: "403 ErrorSendAsDenied"},
		{name: "too large", err: smtpError(mailerr.TooLarge, "552 5.3.4",
			"smtp.office365.com refused DATA: 552 5.3.4 (the message is over the server's size limit)"),
			status: mailgatev1.Status_FAILED, outcome: "MESSAGE_TOO_LARGE", reply: "552 5.3.4"},
		{name: "invalid", err: mailerr.New(mailerr.Invalid, "Graph refused the message: ErrorInvalidRecipients"),
			status: mailgatev1.Status_FAILED, outcome: "INVALID_ARGUMENT"},
		{name: "internal", err: mailerr.New(mailerr.Internal, "a bug"), status: mailgatev1.Status_FAILED, outcome: "INTERNAL"},
		{name: "outcome unknown", err: smtpError(mailerr.OutcomeUnknown, "",
			"the connection to smtp.office365.com broke after the message was sent; it may have been delivered"),
			status: mailgatev1.Status_UNKNOWN, outcome: "OUTCOME_UNKNOWN"},
		{name: "deadline exceeded", err: context.DeadlineExceeded, status: mailgatev1.Status_UNKNOWN, outcome: "DEADLINE_EXCEEDED"},
		{name: "send timeout", block: true, sendTimeout: 300 * time.Millisecond, status: mailgatev1.Status_UNKNOWN, outcome: "DEADLINE_EXCEEDED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			mx := &scriptSender{name: "mx", answer: func(ctx context.Context, _ *senders.Message, _ int) error {
				if tt.block {
					if _, ok := ctx.Deadline(); !ok {
						return errors.New("the send has no deadline")
					}
					<-ctx.Done()
					return ctx.Err()
				}
				return tt.err
			}}
			ts := startQueued(t, queuedSetup{backends: map[string]senders.Sender{"mx": mx}, sendTimeout: tt.sendTimeout})
			resp := enqueue(t, ts, queuedRequest("app@example.com", "bob@example.com"))
			rec := waitStatus(t, ts, resp.GetId(), tt.status)

			if got, want := outcomes(rec), []string{"mx/" + tt.outcome}; !slices.Equal(got, want) {
				t.Fatalf("attempts %v, want %v", got, want)
			}
			a := rec.GetAttempts()[0]
			wantErr := a.GetError()
			if tt.err != nil {
				wantErr = mailerr.Classify(tt.err, mailerr.Unavailable).Msg
			}
			if a.GetError() == "" || a.GetError() != wantErr || a.GetReply() != tt.reply {
				t.Errorf("attempt: error %q reply %q, want %q %q", a.GetError(), a.GetReply(), wantErr, tt.reply)
			}
			if rec.GetLastError() != a.GetError() || rec.GetFinishTime() == nil || rec.GetNextAttemptTime() != nil {
				t.Errorf("record: lastError %q finishTime %v nextAttemptTime %v", rec.GetLastError(), rec.GetFinishTime(), rec.GetNextAttemptTime())
			}
			// Never sent again: give the dispatcher several backoffs' time to misbehave.
			time.Sleep(4 * testMaxBackoff)
			if n := len(mx.callsFor("")); n != 1 {
				t.Errorf("%d sends, want 1", n)
			}
			if rec := getMessage(t, ts, resp.GetId()); rec.GetStatus() != tt.status || len(rec.GetAttempts()) != 1 {
				t.Errorf("later: %v with %d attempts", rec.GetStatus(), len(rec.GetAttempts()))
			}
		})
	}
}

// After Microsoft throttles a mailbox with a Retry-After, its message is not tried
// again before that time, and then goes out.
func TestDispatchHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	const retryAfter = 1500 * time.Millisecond
	throttle := smtpError(mailerr.Throttled, "432 4.3.2", "smtp.office365.com refused MAIL FROM: 432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded")
	throttle.RetryAfter = retryAfter
	mx := &scriptSender{name: "mx", answer: func(_ context.Context, _ *senders.Message, try int) error {
		if try == 1 {
			return throttle
		}
		return nil
	}}
	ts := startQueued(t, queuedSetup{backends: map[string]senders.Sender{"mx": mx}})
	resp := enqueue(t, ts, queuedRequest("app@example.com", "bob@example.com"))

	waitFor(t, "the throttled attempt", func() bool { return len(getMessage(t, ts, resp.GetId()).GetAttempts()) > 0 })
	if rec := getMessage(t, ts, resp.GetId()); rec.GetStatus() == mailgatev1.Status_QUEUED {
		// Still waiting: it says when it is next tried, and why it waits.
		if next := rec.GetNextAttemptTime().AsTime(); next.Before(rec.GetAttempts()[0].GetTime().AsTime().Add(retryAfter)) {
			t.Errorf("nextAttemptTime %s is before the attempt (%s) plus Retry-After", next, rec.GetAttempts()[0].GetTime().AsTime())
		}
		if rec.GetLastError() != throttle.Msg {
			t.Errorf("lastError %q, want %q", rec.GetLastError(), throttle.Msg)
		}
	}
	rec := waitStatus(t, ts, resp.GetId(), mailgatev1.Status_SENT)
	if got, want := outcomes(rec), []string{"mx/THROTTLED", "mx/SENT"}; !slices.Equal(got, want) {
		t.Fatalf("attempts %v, want %v", got, want)
	}
	if a := rec.GetAttempts()[0]; a.GetReply() != "432 4.3.2" || a.GetError() != throttle.Msg {
		t.Errorf("throttled attempt: %v", a)
	}
	calls := mx.callsFor("")
	if len(calls) != 2 {
		t.Fatalf("%d sends, want 2", len(calls))
	}
	if wait := calls[1].start.Sub(calls[0].end); wait < retryAfter {
		t.Errorf("retried %s after the throttle, before its Retry-After %s", wait, retryAfter)
	}
}

// One throttled mailbox does not hold up another's messages; its own wait, and the
// pause applies to its synchronous sends too.
func TestDispatchThrottledMailboxDoesNotBlockOthers(t *testing.T) {
	t.Parallel()
	const retryAfter = time.Minute
	throttle := mailerr.New(mailerr.Throttled, "Graph answered 429: ApplicationThrottled")
	throttle.RetryAfter = retryAfter
	throttle.Metadata = map[string]string{mailerr.MetaGraphStatus: "429", mailerr.MetaGraphCode: "ApplicationThrottled"}
	mx := &scriptSender{name: "mx", answer: func(_ context.Context, msg *senders.Message, _ int) error {
		if msg.From.Address == "busy@example.com" {
			return throttle
		}
		return nil
	}}
	ts := startQueued(t, queuedSetup{backends: map[string]senders.Sender{"mx": mx}})
	first := enqueue(t, ts, queuedRequest("busy@example.com", "bob@example.com"))
	waitFor(t, "the throttled attempt", func() bool { return len(mx.callsFor(first.GetId())) == 1 })

	second := enqueue(t, ts, queuedRequest("busy@example.com", "carol@example.com"))
	other := enqueue(t, ts, queuedRequest("idle@example.com", "dave@example.com"))
	waitStatus(t, ts, other.GetId(), mailgatev1.Status_SENT)

	rec := getMessage(t, ts, first.GetId())
	if rec.GetStatus() != mailgatev1.Status_QUEUED || !slices.Equal(outcomes(rec), []string{"mx/THROTTLED"}) || rec.GetLastError() != throttle.Msg {
		t.Fatalf("throttled message: %v %v lastError %q", rec.GetStatus(), outcomes(rec), rec.GetLastError())
	}
	if a := rec.GetAttempts()[0]; a.GetReply() != "429 ApplicationThrottled" {
		t.Errorf("reply %q", a.GetReply())
	}
	if next, least := rec.GetNextAttemptTime().AsTime(), rec.GetAttempts()[0].GetTime().AsTime().Add(retryAfter); next.Before(least) {
		t.Errorf("nextAttemptTime %s, before the attempt plus Retry-After (%s)", next, least)
	}
	// A synchronous send as the paused mailbox is told to wait; another mailbox's goes.
	syncReq := validRequest()
	syncReq.From = addr("busy@example.com")
	_, err := ts.mail.SendMail(withAPIKey(appKey), syncReq)
	if code, info, _ := errorInfo(t, err); code != codes.ResourceExhausted || info.GetReason() != "THROTTLED" {
		t.Errorf("synchronous send as the paused mailbox: %v %s", code, info.GetReason())
	}
	syncReq.From = addr("idle@example.com")
	if r, err := ts.mail.SendMail(withAPIKey(appKey), syncReq); err != nil || r.GetStatus() != mailgatev1.Status_SENT {
		t.Errorf("synchronous send as another mailbox: %v, %v", r, err)
	}

	// The paused mailbox's other message waits, untried, for the pause to end.
	time.Sleep(4 * testMaxBackoff)
	if rec := getMessage(t, ts, second.GetId()); rec.GetStatus() != mailgatev1.Status_QUEUED || len(rec.GetAttempts()) != 0 {
		t.Errorf("the paused mailbox's second message: %v %v", rec.GetStatus(), outcomes(rec))
	}
	for _, c := range mx.callsFor("") {
		if c.from == "busy@example.com" && c.id != first.GetId() {
			t.Errorf("message %s sent as the paused mailbox", c.id)
		}
	}
	if n := len(mx.callsFor(first.GetId())); n != 1 {
		t.Errorf("the throttled message was sent %d times during its pause", n)
	}
}

// A route's fallbacks carry a queued message whose first backend is failing,
// throttled or paused; the attempts show both backends.
func TestDispatchFailover(t *testing.T) {
	t.Parallel()
	throttle := mailerr.New(mailerr.Throttled, "Graph answered 429")
	throttle.RetryAfter = time.Minute
	pause := mailerr.New(mailerr.Throttled, "Graph answered 429 to a synchronous send")
	pause.RetryAfter = time.Minute
	tests := []struct {
		name          string
		fallbackScope senders.Scope
		graphErr      error
		pauseFirst    bool // a synchronous send gets the mailbox paused first
		want          []string
	}{
		{"first unavailable", senders.ScopeBackend, mailerr.New(mailerr.Unavailable, "Graph answered 503"), false,
			[]string{"graph/UNAVAILABLE", "relay/SENT"}},
		{"first throttled", senders.ScopeBackend, throttle, false, []string{"graph/THROTTLED", "relay/SENT"}},
		{"first's mailbox paused", senders.ScopeBackend, nil, true, []string{"relay/SENT"}},
		// SMTP AUTH as the same mailbox: a Graph outage is not the mailbox's.
		{"first unavailable, fallback as the same mailbox", senders.ScopeMailbox, mailerr.New(mailerr.Unavailable, "Graph answered 503"), false,
			[]string{"graph/UNAVAILABLE", "relay/SENT"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			graph := &scriptSender{name: "graph", answer: func(_ context.Context, msg *senders.Message, _ int) error {
				if msg.Recipients[0] == "pause@example.com" {
					return pause
				}
				return tt.graphErr
			}}
			relay := &scriptSender{name: "relay", scope: tt.fallbackScope}
			ts := startQueued(t, queuedSetup{
				routes:   []policy.Route{{Name: "main", Match: mailaddr.MustParsePattern("*@example.com"), Backend: "graph", Fallbacks: []string{"relay"}}},
				backends: map[string]senders.Sender{"graph": graph, "relay": relay},
			})
			if tt.pauseFirst {
				syncReq := validRequest()
				syncReq.To = []*mailgatev1.Address{addr("pause@example.com")}
				_, err := ts.mail.SendMail(withAPIKey(appKey), syncReq)
				if code, _, _ := errorInfo(t, err); code != codes.ResourceExhausted {
					t.Fatalf("synchronous send: %v", err)
				}
			}
			resp := enqueue(t, ts, queuedRequest("app@example.com", "bob@example.com"))
			rec := waitStatus(t, ts, resp.GetId(), mailgatev1.Status_SENT)
			if got := outcomes(rec); !slices.Equal(got, tt.want) {
				t.Fatalf("attempts %v, want %v", got, tt.want)
			}
			if rec.GetBackend() != "relay" {
				t.Errorf("backend %q, want relay", rec.GetBackend())
			}
			if n := len(relay.callsFor(resp.GetId())); n != 1 {
				t.Errorf("relay sent it %d times", n)
			}
			if n, want := len(graph.callsFor(resp.GetId())), len(tt.want)-1; n != want {
				t.Errorf("graph tried it %d times, want %d", n, want)
			}
		})
	}
}

// A message with a sendAt waits for it; one canceled before it is never sent; only a
// QUEUED message can be canceled.
func TestDispatchSendAtAndCancel(t *testing.T) {
	t.Parallel()
	mx := &scriptSender{name: "mx"}
	ts := startQueued(t, queuedSetup{backends: map[string]senders.Sender{"mx": mx}})
	ctx := withAPIKey(appKey)

	sendAt := time.Now().Add(1500 * time.Millisecond)
	req := queuedRequest("app@example.com", "later@example.com")
	req.Delivery = mailgatev1.SendMailRequest_DELIVERY_UNSPECIFIED // a sendAt alone queues it
	req.SendAt = timestamppb.New(sendAt)
	scheduled := enqueue(t, ts, req)
	canceled := enqueue(t, ts, req)

	rec := getMessage(t, ts, scheduled.GetId())
	if rec.GetStatus() != mailgatev1.Status_QUEUED || !rec.GetNextAttemptTime().AsTime().Equal(sendAt) || len(rec.GetAttempts()) != 0 {
		t.Errorf("scheduled: %v nextAttemptTime %s (sendAt %s) attempts %v", rec.GetStatus(), rec.GetNextAttemptTime().AsTime(), sendAt, outcomes(rec))
	}
	cr, err := ts.mail.CancelMessage(ctx, &mailgatev1.CancelMessageRequest{Id: canceled.GetId()})
	if err != nil {
		t.Fatalf("CancelMessage: %v", err)
	}
	if m := cr.GetMessage(); m.GetId() != canceled.GetId() || m.GetStatus() != mailgatev1.Status_CANCELED || m.GetFinishTime() == nil || m.GetNextAttemptTime() != nil {
		t.Errorf("canceled: %v", m)
	}

	rec = waitStatus(t, ts, scheduled.GetId(), mailgatev1.Status_SENT)
	calls := mx.callsFor(scheduled.GetId())
	if len(calls) != 1 || calls[0].start.Before(sendAt) {
		t.Fatalf("sends %v, want one after sendAt %s", calls, sendAt)
	}
	if got := outcomes(rec); !slices.Equal(got, []string{"mx/SENT"}) {
		t.Errorf("attempts %v", got)
	}
	// Both were due together: by now the canceled one would have gone too.
	time.Sleep(4 * testMaxBackoff)
	if n := len(mx.callsFor(canceled.GetId())); n != 0 {
		t.Errorf("the canceled message was sent %d times", n)
	}
	if rec := getMessage(t, ts, canceled.GetId()); rec.GetStatus() != mailgatev1.Status_CANCELED || len(rec.GetAttempts()) != 0 {
		t.Errorf("canceled later: %v %v", rec.GetStatus(), outcomes(rec))
	}

	syncSent, err := ts.mail.SendMail(ctx, validRequest())
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, id string
		ctx      context.Context
		code     codes.Code
		reason   string
		says     string
	}{
		{"canceled again", canceled.GetId(), ctx, codes.FailedPrecondition, "NOT_CANCELABLE", "is CANCELED"},
		{"sent", scheduled.GetId(), ctx, codes.FailedPrecondition, "NOT_CANCELABLE", "is SENT"},
		{"sent synchronously", syncSent.GetId(), ctx, codes.FailedPrecondition, "NOT_CANCELABLE", "not queued"},
		{"another key's", scheduled.GetId(), withAPIKey(otherKey), codes.NotFound, "NOT_FOUND", ""},
		{"no such message", newID(time.Now()), ctx, codes.NotFound, "NOT_FOUND", ""},
	} {
		_, err := ts.mail.CancelMessage(tt.ctx, &mailgatev1.CancelMessageRequest{Id: tt.id})
		code, info, st := errorInfo(t, err)
		if code != tt.code || info.GetReason() != tt.reason || !strings.Contains(st.Message(), tt.says) {
			t.Errorf("cancel %s: %v %s %q, want %v %s %q", tt.name, code, info.GetReason(), st.Message(), tt.code, tt.reason, tt.says)
		}
	}
	lr, err := ts.mail.ListMessages(ctx, &mailgatev1.ListMessagesRequest{Status: []mailgatev1.Status{mailgatev1.Status_CANCELED}})
	if err != nil || len(lr.GetMessages()) != 1 || lr.GetMessages()[0].GetId() != canceled.GetId() {
		t.Errorf("ListMessages(CANCELED) = %v, %v", lr, err)
	}
}

// A message not delivered within queue.max_lifetime is FAILED, its last attempt saying
// why, and not sent after its deadline.
func TestDispatchMaxLifetime(t *testing.T) {
	t.Parallel()
	pause := mailerr.New(mailerr.Throttled, "Graph answered 429")
	pause.RetryAfter = 2 * time.Second
	tests := []struct {
		name     string
		lifetime time.Duration
		// pauseFirst: a synchronous send gets the mailbox paused for longer than the
		// lifetime, so the message is never tried.
		pauseFirst bool
	}{
		{"failing until the deadline", 700 * time.Millisecond, false},
		{"paused past the deadline", 500 * time.Millisecond, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			mx := &scriptSender{name: "mx", answer: func(_ context.Context, msg *senders.Message, _ int) error {
				if msg.Recipients[0] == "pause@example.com" {
					return pause
				}
				return mailerr.New(mailerr.Unavailable, "Graph answered 503")
			}}
			ts := startQueued(t, queuedSetup{backends: map[string]senders.Sender{"mx": mx}, lifetime: tt.lifetime})
			if tt.pauseFirst {
				syncReq := validRequest()
				syncReq.To = []*mailgatev1.Address{addr("pause@example.com")}
				if _, err := ts.mail.SendMail(withAPIKey(appKey), syncReq); err == nil {
					t.Fatal("the synchronous send went through")
				}
			}
			resp := enqueue(t, ts, queuedRequest("app@example.com", "bob@example.com"))
			rec := waitStatus(t, ts, resp.GetId(), mailgatev1.Status_FAILED)
			deadline := rec.GetAcceptTime().AsTime().Add(tt.lifetime)

			as := rec.GetAttempts()
			last := as[len(as)-1]
			if rec.GetLastError() != last.GetError() || rec.GetFinishTime() == nil {
				t.Errorf("lastError %q, last attempt's %q; finishTime %v", rec.GetLastError(), last.GetError(), rec.GetFinishTime())
			}
			calls := mx.callsFor(resp.GetId())
			for _, c := range calls {
				if !c.start.Before(deadline) {
					t.Errorf("sent at %s, after the deadline %s", c.start, deadline)
				}
			}
			if tt.pauseFirst {
				// Never tried: the worker found it past its deadline.
				if len(calls) != 0 || len(as) != 1 || last.GetOutcome() != "EXPIRED" || last.GetBackend() != "" {
					t.Fatalf("sends %d, attempts %v", len(calls), outcomes(rec))
				}
				if want := "not delivered within queue.max_lifetime (" + humanDuration(tt.lifetime) + ")"; !strings.HasPrefix(last.GetError(), want) {
					t.Errorf("error %q, want it to start %q", last.GetError(), want)
				}
				return
			}
			if len(calls) < 2 || len(as) != len(calls) && len(as) != len(calls)+1 {
				t.Fatalf("%d sends, attempts %v: want several tries, each recorded", len(calls), outcomes(rec))
			}
			// The last try either knew that no retry could come in time, or the worker
			// found the message past its deadline.
			switch last.GetOutcome() {
			case "UNAVAILABLE":
				if !strings.Contains(last.GetError(), "no more retries: queue.max_lifetime ends") {
					t.Errorf("last attempt's error %q does not say why it was the last", last.GetError())
				}
			case "EXPIRED":
				if !strings.HasPrefix(last.GetError(), "not delivered within queue.max_lifetime ("+humanDuration(tt.lifetime)+"); last error: Graph answered 503") {
					t.Errorf("EXPIRED error %q", last.GetError())
				}
			default:
				t.Errorf("last attempt %v", last)
			}
		})
	}
}

// A backend that sends at most two messages at once per mailbox never has more in
// flight while ten queued messages drain, and each is sent once.
func TestDispatchConcurrencyCap(t *testing.T) {
	t.Parallel()
	const n = 10
	var pair atomic.Int32
	bothIn := make(chan struct{})
	mx := &scriptSender{name: "mx", conc: 2}
	mx.answer = func(context.Context, *senders.Message, int) error {
		// The first two sends wait for each other, so the cap is reached for sure.
		if k := pair.Add(1); k <= 2 {
			if k == 2 {
				close(bothIn)
			}
			select {
			case <-bothIn:
			case <-time.After(patience / 2):
			}
		}
		time.Sleep(20 * time.Millisecond)
		return nil
	}
	dispatch := fastDispatch()
	dispatch.Workers = 8
	ts := startQueued(t, queuedSetup{backends: map[string]senders.Sender{"mx": mx}, dispatch: &dispatch})
	var ids []string
	for i := range n {
		ids = append(ids, enqueue(t, ts, queuedRequest("app@example.com", "r"+strconv.Itoa(i)+"@example.com")).GetId())
	}
	for _, id := range ids {
		rec := waitStatus(t, ts, id, mailgatev1.Status_SENT)
		if got := outcomes(rec); !slices.Equal(got, []string{"mx/SENT"}) {
			t.Errorf("%s: attempts %v; waiting for a slot is not an attempt", id, got)
		}
		if c := len(mx.callsFor(id)); c != 1 {
			t.Errorf("%s sent %d times", id, c)
		}
	}
	if p := mx.peak(); p != 2 {
		t.Errorf("at most %d sends in flight, want 2 (the backend's Concurrency)", p)
	}
}

// A retried queued request (same Idempotency-Key) is answered with the same QUEUED
// response, before and after delivery, and the message is sent once.
func TestDispatchIdempotentRetry(t *testing.T) {
	t.Parallel()
	for _, transport := range []string{"grpc", "rest"} {
		t.Run(transport, func(t *testing.T) {
			t.Parallel()
			mx := &scriptSender{name: "mx"}
			ts := startQueued(t, queuedSetup{backends: map[string]senders.Sender{"mx": mx}})
			send := func() *mailgatev1.SendMailResponse {
				t.Helper()
				if transport == "grpc" {
					ctx := metadata.AppendToOutgoingContext(withAPIKey(appKey), "idempotency-key", "invoice-1001")
					resp, err := ts.mail.SendMail(ctx, queuedRequest("app@example.com", "bob@example.com"))
					if err != nil {
						t.Fatalf("SendMail: %v", err)
					}
					return resp
				}
				body := `{"from":{"address":"app@example.com"},"to":[{"address":"bob@example.com"}],"subject":"Hello","text":"hi","delivery":"QUEUED"}`
				req, _ := http.NewRequest("POST", ts.url+"/v1/messages:send", strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+appKey)
				req.Header.Set("Idempotency-Key", `"invoice-1001"`)
				hr, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer hr.Body.Close()
				b, _ := io.ReadAll(hr.Body)
				if hr.StatusCode != http.StatusAccepted {
					t.Fatalf("POST: %d %s, want 202", hr.StatusCode, b)
				}
				var r struct {
					ID, MessageID, Status string
					Replayed              bool
				}
				if err := json.Unmarshal(b, &r); err != nil {
					t.Fatalf("%v: %s", err, b)
				}
				return &mailgatev1.SendMailResponse{Id: r.ID, MessageId: r.MessageID, Status: mailgatev1.Status(mailgatev1.Status_value[r.Status]), Replayed: r.Replayed}
			}
			first := send()
			if first.GetStatus() != mailgatev1.Status_QUEUED || first.GetReplayed() {
				t.Fatalf("first: %v", first)
			}
			check := func(when string, r *mailgatev1.SendMailResponse) {
				t.Helper()
				if r.GetStatus() != mailgatev1.Status_QUEUED || !r.GetReplayed() || r.GetId() != first.GetId() || r.GetMessageId() != first.GetMessageId() {
					t.Errorf("retry %s: %v, want first's QUEUED (%s) replayed", when, r, first.GetId())
				}
			}
			check("at once", send())
			waitStatus(t, ts, first.GetId(), mailgatev1.Status_SENT)
			check("after delivery", send())
			time.Sleep(4 * testMaxBackoff)
			if calls := mx.callsFor(""); len(calls) != 1 || calls[0].id != first.GetId() {
				t.Errorf("sends %v, want one of %s", calls, first.GetId())
			}
			lr, err := ts.mail.ListMessages(withAPIKey(appKey), &mailgatev1.ListMessagesRequest{})
			if err != nil || len(lr.GetMessages()) != 1 {
				t.Errorf("ListMessages = %v, %v: want the one message", lr, err)
			}
		})
	}
}

// gatedQueue holds the dispatcher's next successful Lease, once armed, until the
// dispatcher is shutting down (Lease's context is the dispatcher's): the message is
// then in a worker's hands, not yet tried.
type gatedQueue struct {
	queue.Queue
	armed  atomic.Bool
	leased chan string
}

func (g *gatedQueue) Lease(ctx context.Context, ready func(g store.GroupID) bool, d time.Duration) (*queue.Item, error) {
	it, err := g.Queue.Lease(ctx, ready, d)
	if err == nil && g.armed.CompareAndSwap(true, false) {
		g.leased <- it.ID
		<-ctx.Done()
	}
	return it, err
}

// On shutdown, a send under way is finished and recorded, and a message a worker held
// but had not tried goes back to QUEUED; a new server on the same spool delivers it, and
// does not send the first again.
func TestDispatchShutdownKeepsMessages(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "queue.db")
	log := testLog(t)
	sp, err := spool.Open(path, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	gq := &gatedQueue{Queue: sp, leased: make(chan string, 1)}
	started, release := make(chan string, 1), make(chan struct{})
	first := &scriptSender{name: "mx", answer: func(_ context.Context, msg *senders.Message, _ int) error {
		if msg.Recipients[0] == "slow@example.com" {
			started <- msg.ID
			<-release
		}
		return nil
	}}
	opts := Options{Keys: testKeys(), Service: ServiceOptions{Limits: Limits{MaxMessageBytes: 64 << 10, MaxRecipients: 10}}}
	queuedSetup{backends: map[string]senders.Sender{"mx": first}, q: gq}.apply(&opts, log)
	ts, stop := runServer(t, opts)

	inProgress := enqueue(t, ts, queuedRequest("app@example.com", "slow@example.com"))
	select {
	case <-started:
	case <-time.After(patience):
		t.Fatal("the first message was not sent")
	}
	gq.armed.Store(true)
	untried := enqueue(t, ts, queuedRequest("app@example.com", "bob@example.com"))
	select {
	case id := <-gq.leased:
		if id != untried.GetId() {
			t.Fatalf("leased %s, want %s", id, untried.GetId())
		}
	case <-time.After(patience):
		t.Fatal("the second message was not taken")
	}

	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	select {
	case err := <-stopped:
		t.Fatalf("the server stopped with a send under way: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(patience):
		t.Fatal("the server did not stop after the send finished")
	}
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}

	// What the spool holds once the server is gone.
	sp = openSpool(t, path)
	ctx := context.Background()
	if it, err := sp.Get(ctx, inProgress.GetId()); err != nil || it.State != queue.Sent || len(it.Attempts) != 1 {
		t.Fatalf("the message being sent: %+v, %v; want SENT after one attempt", it, err)
	}
	if it, err := sp.Get(ctx, untried.GetId()); err != nil || it.State != queue.Queued || len(it.Attempts) != 0 || it.TakenOver || !it.Lease.IsZero() {
		t.Fatalf("the message held untried: %+v, %v; want QUEUED, no attempt, no lease", it, err)
	}
	if calls := first.callsFor(""); len(calls) != 1 || calls[0].id != inProgress.GetId() {
		t.Errorf("first server's sends: %v", calls)
	}

	// A new server on the same spool.
	second := &scriptSender{name: "mx"}
	opts = Options{Keys: testKeys(), Service: ServiceOptions{Limits: Limits{MaxMessageBytes: 64 << 10, MaxRecipients: 10}}}
	queuedSetup{backends: map[string]senders.Sender{"mx": second}, q: sp}.apply(&opts, log)
	ts, _ = runServer(t, opts)
	rec := waitStatus(t, ts, untried.GetId(), mailgatev1.Status_SENT)
	if got := outcomes(rec); !slices.Equal(got, []string{"mx/SENT"}) {
		t.Errorf("attempts %v", got)
	}
	if rec := getMessage(t, ts, inProgress.GetId()); rec.GetStatus() != mailgatev1.Status_SENT || len(rec.GetAttempts()) != 1 {
		t.Errorf("the first message after restart: %v %v", rec.GetStatus(), outcomes(rec))
	}
	time.Sleep(4 * testMaxBackoff)
	if calls := second.callsFor(""); len(calls) != 1 || calls[0].id != untried.GetId() {
		t.Errorf("second server's sends: %v, want only %s", calls, untried.GetId())
	}
}

// ListMessages finds a key's queued messages by recipient (To, Cc or Bcc, in any case),
// and refuses a recipient that is no address, naming the field.
func TestListMessagesByRecipient(t *testing.T) {
	t.Parallel()
	mx := &scriptSender{name: "mx"}
	ts := startQueued(t, queuedSetup{backends: map[string]senders.Sender{"mx": mx}})
	ctx := withAPIKey(appKey)
	later := timestamppb.New(time.Now().Add(time.Hour))
	toAlice := queuedRequest("app@example.com", "Alice@Example.org")
	toAlice.SendAt = later
	bccAlice := queuedRequest("app@example.com", "bob@example.org")
	bccAlice.Bcc, bccAlice.SendAt = []*mailgatev1.Address{addr("alice@example.org")}, later
	toBob := queuedRequest("app@example.com", "bob@example.org")
	toBob.SendAt = later
	a, b := enqueue(t, ts, toAlice), enqueue(t, ts, bccAlice)
	enqueue(t, ts, toBob)
	lr, err := ts.mail.ListMessages(ctx, &mailgatev1.ListMessagesRequest{Recipient: "ALICE@example.org"})
	var got []string
	for _, m := range lr.GetMessages() {
		got = append(got, m.GetId())
	}
	if err != nil || !slices.Equal(got, []string{b.GetId(), a.GetId()}) {
		t.Errorf("ListMessages(recipient alice) = %v, %v; want %v", got, err, []string{b.GetId(), a.GetId()})
	}
	_, err = ts.mail.ListMessages(ctx, &mailgatev1.ListMessagesRequest{Recipient: "not an address"})
	if code, _, st := errorInfo(t, err); code != codes.InvalidArgument || !strings.Contains(st.Message(), "recipient") {
		t.Errorf("ListMessages(recipient not an address) = %v %q, want INVALID_ARGUMENT naming recipient", code, st.Message())
	}
}
