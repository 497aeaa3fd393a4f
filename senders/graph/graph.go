// Package graph is the Microsoft Graph backend: it sends with POST /users/{mailbox}/sendMail
// (JSON for structured messages, MIME for raw ones), and through a draft with upload
// sessions when a message is too large for one 4 MB request.
//
// It is built on msgraph-sdk-go's request builders and models, with an HTTP client of its
// own: the SDK's default middleware would retry a sendMail that may already have been
// accepted (a duplicate mail) and gzip bodies. Here a request is retried only when it
// certainly did not reach Microsoft, or after a short 429.
package graph

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	absser "github.com/microsoft/kiota-abstractions-go/serialization"
	jsonserialization "github.com/microsoft/kiota-serialization-json-go"
	textserialization "github.com/microsoft/kiota-serialization-text-go"
	msgraphgocore "github.com/microsoftgraph/msgraph-sdk-go-core"
	msgraphauth "github.com/microsoftgraph/msgraph-sdk-go-core/authentication"
	"github.com/microsoftgraph/msgraph-sdk-go/users"

	"github.com/mailgate/mailgate/mailaddr"
	"github.com/mailgate/mailgate/mailerr"
	"github.com/mailgate/mailgate/senders"
)

const (
	// requestLimit is Graph's limit on one request body (4 MB), less headroom for the
	// JSON around the content.
	requestLimit = 4<<20 - 64<<10
	// directAttachmentLimit: an attachment under 3,000,000 bytes goes into a draft with
	// one POST (its base64 and JSON stay under 4 MiB); a larger one needs an upload
	// session (3 to 150 MB). Just under 3 MiB would overflow the 4 MiB request.
	directAttachmentLimit = 3_000_000
	// uploadSlice is the size of one upload-session PUT: under 4 MB, a multiple of
	// 320 KiB as Microsoft's upload sessions prefer.
	uploadSlice = 12 * 320 << 10
	// mailboxConcurrency is Outlook's limit of concurrent requests per app and mailbox.
	mailboxConcurrency = 4
	// maxQuickRetry is the longest 429 Retry-After waited out here rather than returned.
	maxQuickRetry = 2 * time.Second
)

// Sender sends through Microsoft Graph. Its methods are safe for concurrent use.
type Sender struct {
	senders.SenderDefaults
	name        string
	log         *slog.Logger
	users       *users.UsersRequestBuilder
	upload      *http.Client // upload sessions: pre-authenticated URLs, no token
	saveDefault *bool

	mu    sync.Mutex
	slots map[string]chan struct{} // per mailbox, mailboxConcurrency each
}

// New returns a Graph sender. It contacts nothing until the first message.
func New(c *Config, env senders.Env) (*Sender, error) {
	client, err := c.httpClient()
	if err != nil {
		return nil, err
	}
	cred, err := c.TokenCredential(client)
	if err != nil {
		return nil, fmt.Errorf("credential: %w", err)
	}
	base := c.BaseURL()
	host := strings.TrimPrefix(strings.TrimPrefix(base, "https://"), "http://")
	host, _, _ = strings.Cut(host, "/")
	if h, _, ok := strings.Cut(host, ":"); ok {
		host = h
	}
	// Tokens go only to the Graph host: upload-session URLs (another host) must carry
	// none, as Microsoft requires.
	auth, err := msgraphauth.NewAzureIdentityAuthenticationProviderWithScopesAndValidHosts(cred, []string{c.Audience()}, []string{host})
	if err != nil {
		return nil, err
	}
	writers := absser.NewSerializationWriterFactoryRegistry()
	writers.ContentTypeAssociatedFactories["application/json"] = jsonserialization.NewJsonSerializationWriterFactory()
	writers.ContentTypeAssociatedFactories["text/plain"] = textserialization.NewTextSerializationWriterFactory()
	parsers := absser.NewParseNodeFactoryRegistry()
	parsers.ContentTypeAssociatedFactories["application/json"] = jsonserialization.NewJsonParseNodeFactory()
	parsers.ContentTypeAssociatedFactories["text/plain"] = textserialization.NewTextParseNodeFactory()
	graphClient := &http.Client{Transport: traceTransport{client.Transport}}
	adapter, err := msgraphgocore.NewGraphRequestAdapterBaseWithParseNodeFactoryAndSerializationWriterFactoryAndHttpClient(
		auth, msgraphgocore.GraphClientOptions{}, parsers, writers, graphClient)
	if err != nil {
		return nil, err
	}
	adapter.SetBaseUrl(base)
	return &Sender{
		name:        env.Name,
		log:         env.Log(),
		users:       users.NewUsersRequestBuilderInternal(map[string]string{"baseurl": base}, adapter),
		upload:      graphClient,
		saveDefault: c.SaveToSentItems,
		slots:       make(map[string]chan struct{}),
	}, nil
}

// Concurrency implements senders.Sender: Graph's Outlook service allows 4 concurrent
// requests per app and mailbox (Microsoft Graph throttling limits).
func (s *Sender) Concurrency() int { return 4 }

// Send implements senders.Sender. The message goes to /users/{mailbox}/sendMail, where the
// mailbox is the route's (or the From address); a From other than the mailbox needs Send
// As or Send on Behalf in Exchange Online.
func (s *Sender) Send(ctx context.Context, msg *senders.Message) (*senders.Result, error) {
	mailbox := msg.SendingMailbox()
	release, err := s.acquire(ctx, mailbox)
	if err != nil {
		return nil, err
	}
	defer release()

	switch {
	case msg.Content == nil && rawFits(msg) && !msg.HeaderRecipientsUnparsed():
		err = s.sendMIME(ctx, mailbox, msg)
	case msg.Content == nil:
		// Too large for the MIME form, or with a To or Cc field that does not parse:
		// Graph's MIME form takes the recipients from those fields, and would refuse
		// the message or guess. The draft path sends to the envelope.
		var c *senders.Content
		if c, err = contentFromMIME(msg); err == nil {
			err = s.sendDraft(ctx, mailbox, msg, c)
		}
	case jsonSize(msg.Content) <= requestLimit:
		err = s.sendJSON(ctx, mailbox, msg)
		if e := (*mailerr.Error)(nil); errors.As(err, &e) && e.Reason == reasonRequestTooLarge {
			// Graph measured the request otherwise: it was refused, so nothing was
			// sent, and the draft path can take it.
			err = s.sendDraft(ctx, mailbox, msg, msg.Content)
		}
	default:
		err = s.sendDraft(ctx, mailbox, msg, msg.Content)
	}
	if err != nil {
		return nil, err
	}
	return &senders.Result{Status: senders.Sent, Accepted: msg.Recipients}, nil
}

// acquire waits for one of the mailbox's concurrency slots, as long as ctx allows.
func (s *Sender) acquire(ctx context.Context, mailbox string) (release func(), err error) {
	key := mailaddr.Key(mailbox)
	s.mu.Lock()
	slot, ok := s.slots[key]
	if !ok {
		slot = make(chan struct{}, mailboxConcurrency)
		s.slots[key] = slot
	}
	s.mu.Unlock()
	select {
	case slot <- struct{}{}:
		return func() { <-slot }, nil
	case <-ctx.Done():
		return nil, mailerr.Wrap(mailerr.Unavailable, ctx.Err(),
			"Graph backend: mailbox %s already has %d requests in flight; nothing was sent", mailbox, mailboxConcurrency)
	}
}

// call runs one Graph request (fn), retrying it only when that cannot duplicate anything:
// when it never reached the wire, or after a 429 whose Retry-After is short. canDeliver
// says whether a success of this request sends the mail (sendMail, send): only then is a
// failure after the request went out an unknown outcome.
func (s *Sender) call(ctx context.Context, op, mailbox string, canDeliver bool, fn func(ctx context.Context) error) error {
	backoff := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		var wrote wroteFlag
		err := fn(context.WithValue(ctx, wroteKey{}, &wrote))
		if err == nil {
			return nil
		}
		e := s.classify(op, mailbox, err, wrote.Load() && canDeliver)
		retry := attempt < 3 && (!wrote.Load() && e.Kind == mailerr.Unavailable && e.Reason != reasonAuth && ctx.Err() == nil ||
			e.Kind == mailerr.Throttled && e.RetryAfter <= maxQuickRetry && attempt == 1)
		if !retry {
			return e
		}
		wait := backoff
		if e.Kind == mailerr.Throttled {
			wait = e.RetryAfter
		}
		s.log.Debug("retrying a Graph request that did not go through", "op", op, "mailbox", mailbox, "after", wait, "error", e.Error())
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return e
		}
		backoff *= 4
	}
}

type wroteKey struct{}

// wroteFlag records that a request was written to the connection in full: from then on
// Microsoft may act on it even if no answer comes back.
type wroteFlag struct{ atomic.Bool }

// traceTransport sets the request's wroteFlag, when it has one.
type traceTransport struct{ base http.RoundTripper }

func (t traceTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if f, ok := req.Context().Value(wroteKey{}).(*wroteFlag); ok {
		trace := &httptrace.ClientTrace{WroteRequest: func(info httptrace.WroteRequestInfo) {
			if info.Err == nil {
				f.Store(true)
			}
		}}
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
	}
	return t.base.RoundTrip(req)
}
