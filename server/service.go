package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	mailgatev1 "github.com/mailgate/mailgate/api/mailgate/v1"
	"github.com/mailgate/mailgate/mailaddr"
	"github.com/mailgate/mailgate/mailerr"
	"github.com/mailgate/mailgate/mailerr/mailstatus"
	"github.com/mailgate/mailgate/senders"
	"github.com/mailgate/mailgate/server/apikey"
	"github.com/mailgate/mailgate/server/policy"
	"github.com/mailgate/mailgate/server/queue"
	"github.com/mailgate/mailgate/server/store"
)

// Service implements mailgate.v1.MailService: every rule between a request and a
// backend lives here, once, whichever adapter (gRPC, REST, SMTP shim) the request came
// through.
type Service struct {
	mailgatev1.UnimplementedMailServiceServer

	router      *policy.Router
	backends    map[string]senders.Sender
	scopes      map[string]senders.Scope // by backend name
	store       store.Store
	limits      Limits
	mailbox     MailboxLimits
	retention   time.Duration
	recordTTL   time.Duration
	sendTimeout time.Duration
	log         *slog.Logger
	metrics     *metrics
	now         func() time.Time

	queue     queue.Queue // nil: queued delivery is off
	queueOpts QueueOptions
	wake      func() // tells the dispatcher a message is ready; nil without one
	notifier  Notifier
}

// MailboxLimits are the per-mailbox rates (Exchange Online's, by default); 0 is no limit.
type MailboxLimits struct {
	MessagesPerMinute int
	RecipientsPerDay  int
}

// ServiceOptions are the parts a Service is built from.
type ServiceOptions struct {
	Router   *policy.Router
	Backends map[string]senders.Sender
	// Store holds idempotency records, rate budgets and message records; default:
	// in-process (one replica only).
	Store   store.Store
	Limits  Limits
	Mailbox MailboxLimits
	// Retention is how long a response is replayed for its idempotency key; default
	// 24 h.
	Retention time.Duration
	// RecordRetention is how long GetMessage finds a message sent at once; default
	// Retention.
	RecordRetention time.Duration
	// SendTimeout bounds a backend send; default 2 min.
	SendTimeout time.Duration
	Logger      *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Queue keeps queued messages; nil turns queued delivery off (a request for it is
	// refused with QUEUE_UNAVAILABLE).
	Queue        queue.Queue
	QueueOptions QueueOptions
	// Notifier is told what happens to queued messages (webhooks); nil: nobody is.
	Notifier Notifier
}

// NewService returns a service; every route's backend must be in opts.Backends.
func NewService(opts ServiceOptions) (*Service, error) {
	for _, r := range opts.Router.Routes() {
		if opts.Backends[r.Backend] == nil {
			return nil, errors.New("route " + r.Name + ": no backend " + r.Backend)
		}
	}
	s := &Service{
		router:      opts.Router,
		backends:    opts.Backends,
		store:       opts.Store,
		limits:      opts.Limits,
		mailbox:     opts.Mailbox,
		retention:   opts.Retention,
		recordTTL:   opts.RecordRetention,
		sendTimeout: opts.SendTimeout,
		log:         opts.Logger,
		now:         opts.Now,
		metrics:     newMetrics(),
		scopes:      make(map[string]senders.Scope),
		queue:       opts.Queue,
		queueOpts:   opts.QueueOptions,
		notifier:    opts.Notifier,
	}
	if s.queueOpts.MaxLifetime <= 0 {
		s.queueOpts.MaxLifetime = 24 * time.Hour
	}
	for name, b := range opts.Backends {
		if b != nil {
			s.scopes[name] = b.Scope()
		}
	}
	if s.store == nil {
		s.store = store.NewMemory()
	}
	if s.retention <= 0 {
		s.retention = 24 * time.Hour
	}
	if s.recordTTL <= 0 {
		s.recordTTL = s.retention
	}
	if s.sendTimeout <= 0 {
		s.sendTimeout = 2 * time.Minute
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s, nil
}

// SendMail implements mailgate.v1.MailService.
func (s *Service) SendMail(ctx context.Context, req *mailgatev1.SendMailRequest) (*mailgatev1.SendMailResponse, error) {
	start := s.now()
	key := keyFrom(ctx)
	if key == nil {
		return nil, mailstatus.Err(mailerr.New(mailerr.Unauthenticated, "no API key"))
	}
	id := newID(start)
	log := s.log.With("id", id, "key", key.Name)

	resp, route, err := s.send(ctx, key, id, start, req)
	elapsed := s.now().Sub(start)
	if err != nil {
		// A replayed error arrives as a status; everything else is classified here.
		st, replayed := status.FromError(err)
		var e *mailerr.Error
		if replayed {
			e, err = mailstatus.FromStatus(st), st.Err()
		} else {
			e = mailerr.Classify(err, mailerr.Unavailable)
			err = mailstatus.Err(e)
		}
		reason := string(e.ReasonOrDefault())
		s.metrics.observe(route.Name, route.Backend, reason, elapsed)
		attrs := []any{"route", route.Name, "backend", route.Backend, "outcome", reason,
			"replayed", replayed, "duration_ms", elapsed.Milliseconds(), "error", e.Error()}
		if remote := e.Remote(); remote != "" {
			attrs = append(attrs, "remote", remote)
		}
		if e.Kind == mailerr.Internal {
			log.Error("message failed", attrs...)
		} else {
			log.Info("message refused", attrs...)
		}
		return nil, err
	}
	if resp.GetReplayed() {
		// Not a send: counted and logged as a replay, under the original message's id.
		s.metrics.observe(route.Name, route.Backend, "REPLAYED", elapsed)
		s.log.Info("response replayed", "id", resp.GetId(), "key", key.Name, "route", route.Name,
			"backend", route.Backend, "outcome", "REPLAYED", "message_id", resp.GetMessageId(),
			"duration_ms", elapsed.Milliseconds())
		return resp, nil
	}
	s.metrics.observe(route.Name, route.Backend, resp.GetStatus().String(), elapsed)
	log.Info("message accepted", "route", route.Name, "backend", route.Backend, "outcome", resp.GetStatus().String(),
		"message_id", resp.GetMessageId(), "recipients", len(resp.GetAcceptedRecipients()),
		"duration_ms", elapsed.Milliseconds())
	return resp, nil
}

// send runs the pipeline: validate, authorise the From, route, admit (idempotency and
// rate limits), deliver, complete. It returns a *mailerr.Error, or a replayed status.
func (s *Service) send(ctx context.Context, key *apikey.Key, id string, now time.Time, req *mailgatev1.SendMailRequest) (*mailgatev1.SendMailResponse, policy.Route, error) {
	msg, err := normalize(req, id, now, s.limits)
	if err != nil {
		return nil, policy.Route{}, err
	}
	idemKey, err := idempotencyKey(ctx, req)
	if err != nil {
		return nil, policy.Route{}, err
	}
	for _, addr := range []string{msg.From.Address, msg.EnvelopeFrom} {
		if !key.MaySend(addr) {
			return nil, policy.Route{}, mailerr.New(mailerr.PermissionDenied,
				"API key %q may not send as %s", key.Name, addr).WithReason(mailerr.ReasonSenderNotAllowed)
		}
	}
	route, ok := s.router.Route(msg.From.Address)
	if !ok {
		return nil, policy.Route{}, mailerr.New(mailerr.PermissionDenied,
			"no route for From %s: the configuration's routes do not match it", msg.From.Address).WithReason(mailerr.ReasonNoRoute)
	}
	msg.Mailbox = route.Mailbox
	queued, notBefore, err := s.deliveryOf(req, route, now)
	if err != nil {
		return nil, route, err
	}

	adm := s.admission(key, msg, route.Backend)
	if queued {
		// The mailbox's budgets are taken when a worker sends; the key's own and the
		// idempotency claim now, so that a runaway caller is still told to slow down and
		// a retry replays QUEUED instead of queueing twice.
		adm = &store.Admission{Groups: adm.Groups[1:]}
	}
	if idemKey != "" {
		adm.Claim = &store.Claim{
			Scope: key.Name, Key: idemKey, Fingerprint: fingerprint(req),
			// Longer than any send, so only a crashed request's claim runs out.
			LockTTL: s.sendTimeout + 30*time.Second,
		}
	}
	var ticket *store.Ticket
	if !queued || adm.Claim != nil || len(adm.Groups) > 0 {
		var replay *mailgatev1.SendMailResponse
		ticket, replay, err = s.admit(ctx, adm, key)
		if err != nil || replay != nil {
			return replay, route, err
		}
	}
	if queued {
		resp, err := s.enqueue(ctx, key, id, now, notBefore, req, msg, route, ticket)
		return resp, route, err
	}

	// From here the message is admitted: it is sent to the end even if the caller goes
	// away, and the outcome is recorded, so that a retry replays it instead of sending
	// twice.
	sendCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.sendTimeout)
	defer cancel()
	sendStart := s.now()
	res, sendErr := s.backends[route.Backend].Send(sendCtx, msg)
	sendTime := s.now().Sub(sendStart).Seconds()
	if sendErr != nil {
		e := mailerr.Classify(sendErr, mailerr.Unavailable)
		s.metrics.backend.WithLabelValues(route.Backend, string(e.ReasonOrDefault())).Observe(sendTime)
		if group := adm.PauseTarget; e.Kind == mailerr.Throttled && e.RetryAfter > 0 && !group.IsZero() {
			// Microsoft throttled this mailbox (or this relaying backend): pause it for
			// every replica.
			if err := s.store.Pause(sendCtx, group, e.RetryAfter); err != nil {
				s.metrics.storeErrors.WithLabelValues("pause").Inc()
				s.log.Warn("could not pause sending", "group", group.String(), "error", err)
			}
		}
		c := store.Completion{Refund: e.Kind != mailerr.OutcomeUnknown, Retention: s.retention}
		if recordable(e.Kind) {
			c.Outcome = encodeError(e)
		}
		s.complete(sendCtx, ticket, c)
		return nil, route, e
	}
	s.metrics.backend.WithLabelValues(route.Backend, res.Status.String()).Observe(sendTime)
	resp := &mailgatev1.SendMailResponse{
		Id:                 id,
		MessageId:          msg.MessageID,
		Route:              route.Name,
		Backend:            route.Backend,
		Status:             statusOf(res.Status),
		AcceptedRecipients: res.Accepted,
	}
	for _, r := range res.Rejected {
		// The reply is the remote server's text: it may hold 8-bit bytes (a localised
		// Exchange server), which protobuf cannot carry, and then the caller would get
		// an error for a message that was sent.
		resp.RejectedRecipients = append(resp.RejectedRecipients, &mailgatev1.RejectedRecipient{Address: r.Recipient, Reply: mailstatus.Text(r.Reply, mailstatus.MaxDetail)})
	}
	s.complete(sendCtx, ticket, store.Completion{
		Outcome:   encodeResponse(resp),
		Retention: s.retention,
		Record:    s.record(key, msg, req, resp, now),
	})
	return resp, route, nil
}

// admit asks the store for adm: a Proceed ticket, a replayed response, or the refusal.
func (s *Service) admit(ctx context.Context, adm *store.Admission, key *apikey.Key) (*store.Ticket, *mailgatev1.SendMailResponse, error) {
	ticket, err := s.store.Admit(ctx, adm)
	if errors.Is(err, store.ErrInvalid) {
		return nil, nil, mailerr.Wrap(mailerr.Internal, err, "mailgate built rate limits its store cannot apply; nothing was sent")
	}
	if err != nil {
		s.metrics.storeErrors.WithLabelValues("admit").Inc()
		return nil, nil, mailerr.Wrap(mailerr.Unavailable, err, "mailgate's store is unavailable; nothing was sent").WithReason(mailerr.ReasonStoreUnavailable)
	}
	if adm.Claim != nil {
		s.metrics.idempotency.WithLabelValues(map[store.Decision]string{
			store.Proceed: "proceed", store.Replay: "replay", store.InFlight: "in_flight", store.Mismatch: "mismatch",
		}[ticket.Decision]).Inc()
	}
	switch ticket.Decision {
	case store.Replay:
		resp, err := decodeOutcome(ticket.Outcome)
		return nil, resp, err
	case store.InFlight:
		return nil, nil, mailerr.New(mailerr.InFlight,
			"a request with this idempotency key is still in progress; retry shortly")
	case store.Mismatch:
		return nil, nil, mailerr.New(mailerr.KeyReused,
			"this idempotency key was used for a different request; use a new key for a new message")
	case store.Throttled:
		s.metrics.refused(*ticket.Refused)
		// Whole seconds, rounded up, as the Retry-After header says it.
		wait := time.Duration(math.Ceil(ticket.RetryAfter.Seconds())) * time.Second
		e := mailerr.New(mailerr.Throttled, "%s; retry in %s", describeRefusal(*ticket.Refused, s.mailbox, key), humanDuration(wait))
		e.RetryAfter = ticket.RetryAfter
		return nil, nil, e
	}

	return ticket, nil, nil
}

// complete finishes an admitted request. The message's fate is already decided, so a
// failure here is logged, never returned: reporting it would invite a retry that sends
// the message again.
func (s *Service) complete(ctx context.Context, t *store.Ticket, c store.Completion) {
	if err := s.store.Complete(ctx, t, c); err != nil {
		s.metrics.storeErrors.WithLabelValues("complete").Inc()
		s.log.Warn("outcome not recorded: a retry with the same idempotency key may be refused as in flight until its lock expires, and GetMessage will not find the message",
			"error", err)
	}
}

// admission is what a message asks of the store, but for its idempotency claim: the
// budgets of its sending mailbox (shared by every key that sends as it) and of its API
// key, and the group Microsoft's throttle pauses. A backend that relays into the tenant
// rather than sending as a mailbox has no mailbox limits and is itself the pause target.
func (s *Service) admission(key *apikey.Key, msg *senders.Message, backend string) *store.Admission {
	target := store.Group{Kind: store.Backend, Name: backend}
	if s.scopes[backend] != senders.ScopeBackend {
		target = store.Group{
			Kind: store.Mailbox,
			Name: mailaddr.Key(msg.SendingMailbox()),
			Limits: []store.Limit{
				{ID: store.MessagesPerMinute, Count: s.mailbox.MessagesPerMinute, Period: time.Minute, Cost: 1},
				{ID: store.RecipientsPerDay, Count: s.mailbox.RecipientsPerDay, Period: 24 * time.Hour, Cost: len(msg.Recipients)},
			},
		}
	}
	adm := &store.Admission{Groups: []store.Group{target}, PauseTarget: target.ID()}
	if key != nil && key.MessagesPerMinute > 0 {
		adm.Groups = append(adm.Groups, store.Group{
			Kind:   store.APIKey,
			Name:   key.Name,
			Limits: []store.Limit{{ID: store.MessagesPerMinute, Count: key.MessagesPerMinute, Period: time.Minute, Cost: 1}},
		})
	}
	return adm
}

// describeRefusal says which limit refused a request, naming the mailbox, backend or key.
func describeRefusal(r store.Refusal, mb MailboxLimits, key *apikey.Key) string {
	name := r.Group.Name
	switch kind := r.Group.Kind; {
	case r.Paused && kind == store.Backend:
		return fmt.Sprintf("Microsoft 365 throttled backend %s; mailgate holds its messages back for every replica", name)
	case r.Paused && kind == store.Mailbox:
		return fmt.Sprintf("Microsoft 365 throttled mailbox %s; mailgate holds its messages back for every replica", name)
	case kind == store.Mailbox && r.Limit == store.MessagesPerMinute:
		return fmt.Sprintf("mailbox %s may send %d messages per minute", name, mb.MessagesPerMinute)
	case kind == store.Mailbox && r.Limit == store.RecipientsPerDay:
		return fmt.Sprintf("mailbox %s may send to %d recipients per day", name, mb.RecipientsPerDay)
	case kind == store.APIKey && r.Limit == store.MessagesPerMinute:
		return fmt.Sprintf("API key %q may send %d messages per minute", name, key.MessagesPerMinute)
	}
	return "rate limit " + r.String() + " reached"
}

// recordable reports whether an outcome is final, and so replayed to a retry with the
// same idempotency key. Transient failures are not: the retry may go through.
func recordable(k mailerr.Kind) bool {
	// PermissionDenied is left out: an operator can fix it (grant Send As), and then the
	// retry should go through rather than replay the refusal for a day.
	switch k {
	case mailerr.Rejected, mailerr.Invalid, mailerr.TooLarge, mailerr.OutcomeUnknown:
		return true
	}
	return false
}

// Outcomes are stored as one tag byte and a protobuf: 'R' a SendMailResponse, 'E' a
// google.rpc.Status.
// A value that does not marshal (a string that is not UTF-8) is a bug in mailgate, not
// something the caller can change; it is recorded as unreadable, so that a retry gets
// "stored idempotency outcome is unreadable" rather than a second send.
func encodeResponse(r *mailgatev1.SendMailResponse) []byte {
	b, err := proto.Marshal(r)
	if err != nil {
		return []byte{'?'}
	}
	return append([]byte{'R'}, b...)
}

func encodeError(e *mailerr.Error) []byte {
	b, err := proto.Marshal(mailstatus.ToStatus(e).Proto())
	if err != nil {
		return []byte{'?'}
	}
	return append([]byte{'E'}, b...)
}

func decodeOutcome(b []byte) (*mailgatev1.SendMailResponse, error) {
	if len(b) > 0 {
		switch b[0] {
		case 'R':
			r := new(mailgatev1.SendMailResponse)
			if err := proto.Unmarshal(b[1:], r); err == nil {
				r.Replayed = true
				return r, nil
			}
		case 'E':
			st := new(spb.Status)
			if err := proto.Unmarshal(b[1:], st); err == nil {
				return nil, status.FromProto(st).Err()
			}
		}
	}
	return nil, mailerr.New(mailerr.Internal, "stored idempotency outcome is unreadable")
}

// record builds what GetMessage reports about an accepted message.
func (s *Service) record(key *apikey.Key, msg *senders.Message, req *mailgatev1.SendMailRequest, resp *mailgatev1.SendMailResponse, now time.Time) *store.Record {
	rec := &mailgatev1.GetMessageResponse{
		Id:                 resp.GetId(),
		MessageId:          resp.GetMessageId(),
		Route:              resp.GetRoute(),
		Backend:            resp.GetBackend(),
		Status:             resp.GetStatus(),
		AcceptedRecipients: resp.GetAcceptedRecipients(),
		RejectedRecipients: resp.GetRejectedRecipients(),
		From:               msg.From.Address,
		Tags:               req.GetTags(),
		AcceptTime:         timestamppb.New(now),
	}
	b, err := proto.Marshal(rec)
	if err != nil {
		// Every string in it was validated or made by mailgate; a failure is a bug, and
		// GetMessage then answers NOT_FOUND rather than an unreadable record.
		s.log.Error("message record not stored: it does not encode", "id", rec.Id, "error", err)
		return nil
	}
	return &store.Record{Key: recordKey(key.Name, rec.Id), Value: b, TTL: s.recordTTL}
}

// GetMessage implements mailgate.v1.MailService.
func (s *Service) GetMessage(ctx context.Context, req *mailgatev1.GetMessageRequest) (*mailgatev1.GetMessageResponse, error) {
	key := keyFrom(ctx)
	if key == nil {
		return nil, mailstatus.Err(mailerr.New(mailerr.Unauthenticated, "no API key"))
	}
	if !validID(req.GetId()) {
		return nil, mailstatus.Err(mailerr.Violations([]mailerr.FieldViolation{{
			Field: "id", Description: "not a message id (26 characters, as SendMail returns)"}}))
	}
	if rec, err := s.queuedMessage(ctx, key, req.GetId()); err != nil {
		return nil, mailstatus.Err(err)
	} else if rec != nil {
		return rec, nil
	}
	b, err := s.store.GetRecord(ctx, recordKey(key.Name, req.GetId()))
	if errors.Is(err, store.ErrNotFound) {
		return nil, mailstatus.Err(mailerr.New(mailerr.NotFound,
			"no message %s for this API key (records are kept for %s)", req.GetId(), humanDuration(s.recordTTL)))
	}
	if err != nil {
		s.metrics.storeErrors.WithLabelValues("get_record").Inc()
		return nil, mailstatus.Err(mailerr.Wrap(mailerr.Unavailable, err, "message records are unavailable").WithReason(mailerr.ReasonStoreUnavailable))
	}
	rec := new(mailgatev1.GetMessageResponse)
	if err := proto.Unmarshal(b, rec); err != nil {
		return nil, mailstatus.Err(mailerr.Wrap(mailerr.Internal, err, "message record is corrupt"))
	}
	rec.Delivery = mailgatev1.SendMailRequest_SYNC
	return rec, nil
}

// WhoAmI implements mailgate.v1.MailService.
func (s *Service) WhoAmI(ctx context.Context, _ *mailgatev1.WhoAmIRequest) (*mailgatev1.WhoAmIResponse, error) {
	key := keyFrom(ctx)
	if key == nil {
		return nil, mailstatus.Err(mailerr.New(mailerr.Unauthenticated, "no API key"))
	}
	resp := &mailgatev1.WhoAmIResponse{Name: key.Name}
	for _, p := range key.Senders {
		resp.Senders = append(resp.Senders, p.String())
	}
	return resp, nil
}

// humanDuration prints 24h rather than 24h0m0s.
func humanDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// recordKey scopes records by API key: one key cannot read another's messages.
func recordKey(keyName, id string) string { return "msg:" + keyName + ":" + id }

func statusOf(s senders.Status) mailgatev1.Status {
	switch s {
	case senders.Sent:
		return mailgatev1.Status_SENT
	case senders.Queued:
		return mailgatev1.Status_QUEUED
	}
	return mailgatev1.Status_STATUS_UNSPECIFIED
}
