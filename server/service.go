package server

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	mailgatev1 "github.com/mailgate/mailgate/api/mailgate/v1"
	"github.com/mailgate/mailgate/mailerr"
	"github.com/mailgate/mailgate/senders"
	"github.com/mailgate/mailgate/server/apikey"
	"github.com/mailgate/mailgate/server/policy"
	"github.com/mailgate/mailgate/server/store"
)

// Service implements mailgate.v1.MailService: every rule between a request and a
// backend lives here, once, whichever adapter (gRPC, REST, SMTP shim) the request came
// through.
type Service struct {
	mailgatev1.UnimplementedMailServiceServer

	router    *policy.Router
	backends  map[string]senders.Sender
	records   store.Records
	limits    Limits
	retention time.Duration
	log       *slog.Logger
	metrics   *metrics
	now       func() time.Time
}

// ServiceOptions are the parts a Service is built from.
type ServiceOptions struct {
	Router   *policy.Router
	Backends map[string]senders.Sender
	// Records keeps GetMessage's records; default: in-process.
	Records store.Records
	Limits  Limits
	// Retention is how long GetMessage can find a message; default 24 h.
	Retention time.Duration
	Logger    *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// NewService returns a service; every route's backend must be in opts.Backends.
func NewService(opts ServiceOptions) (*Service, error) {
	for _, r := range opts.Router.Routes() {
		if opts.Backends[r.Backend] == nil {
			return nil, errors.New("route " + r.Name + ": no backend " + r.Backend)
		}
	}
	s := &Service{
		router:    opts.Router,
		backends:  opts.Backends,
		records:   opts.Records,
		limits:    opts.Limits,
		retention: opts.Retention,
		log:       opts.Logger,
		now:       opts.Now,
		metrics:   newMetrics(),
	}
	if s.records == nil {
		s.records = store.NewMemory()
	}
	if s.retention <= 0 {
		s.retention = 24 * time.Hour
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
		return nil, toStatus(mailerr.New(mailerr.Unauthenticated, "no API key")).Err()
	}
	id := newID(start)
	log := s.log.With("id", id, "key", key.Name)

	resp, route, err := s.send(ctx, key, id, start, req)
	elapsed := s.now().Sub(start)
	if err != nil {
		e := mailerr.As(err, mailerr.Unavailable)
		s.metrics.observe(route.Name, route.Backend, e.Kind.Reason(), elapsed)
		attrs := []any{"route", route.Name, "backend", route.Backend, "outcome", e.ReasonOrDefault(),
			"duration_ms", elapsed.Milliseconds(), "error", e.Error()}
		if e.Kind == mailerr.Internal {
			log.Error("message failed", attrs...)
		} else {
			log.Info("message refused", attrs...)
		}
		return nil, toStatus(e).Err()
	}
	s.metrics.observe(route.Name, route.Backend, resp.GetStatus().String(), elapsed)
	log.Info("message accepted", "route", route.Name, "backend", route.Backend, "outcome", resp.GetStatus().String(),
		"message_id", resp.GetMessageId(), "recipients", len(resp.GetAcceptedRecipients()),
		"duration_ms", elapsed.Milliseconds())
	return resp, nil
}

// send runs the pipeline: validate, authorise the From, route, deliver, record.
func (s *Service) send(ctx context.Context, key *apikey.Key, id string, now time.Time, req *mailgatev1.SendMailRequest) (*mailgatev1.SendMailResponse, policy.Route, error) {
	msg, err := normalize(req, id, now, s.limits)
	if err != nil {
		return nil, policy.Route{}, err
	}
	for _, addr := range []string{msg.From.Address, msg.EnvelopeFrom} {
		if !key.MaySend(addr) {
			return nil, policy.Route{}, mailerr.New(mailerr.PermissionDenied,
				"API key %q may not send as %s", key.Name, addr).WithReason("SENDER_NOT_ALLOWED")
		}
	}
	route, ok := s.router.Route(msg.From.Address)
	if !ok {
		return nil, policy.Route{}, mailerr.New(mailerr.PermissionDenied,
			"no route for From %s: the configuration's routes do not match it", msg.From.Address).WithReason("NO_ROUTE")
	}
	msg.Mailbox = route.Mailbox

	res, err := s.backends[route.Backend].Send(ctx, msg)
	if err != nil {
		return nil, route, err
	}
	resp := &mailgatev1.SendMailResponse{
		Id:                 id,
		MessageId:          msg.MessageID,
		Route:              route.Name,
		Backend:            route.Backend,
		Status:             statusOf(res.Status),
		AcceptedRecipients: res.Accepted,
	}
	s.record(ctx, key, msg, req, resp, now)
	return resp, route, nil
}

// record keeps what GetMessage reports. The message is already accepted, so a failure
// here is logged, never turned into an error the caller would retry (and send twice).
func (s *Service) record(ctx context.Context, key *apikey.Key, msg *senders.Message, req *mailgatev1.SendMailRequest, resp *mailgatev1.SendMailResponse, now time.Time) {
	rec := &mailgatev1.GetMessageResponse{
		Id:                 resp.GetId(),
		MessageId:          resp.GetMessageId(),
		Route:              resp.GetRoute(),
		Backend:            resp.GetBackend(),
		Status:             resp.GetStatus(),
		AcceptedRecipients: resp.GetAcceptedRecipients(),
		From:               msg.From.Address,
		Tags:               req.GetTags(),
		AcceptTime:         timestamppb.New(now),
	}
	b, err := proto.Marshal(rec)
	if err == nil {
		err = s.records.PutRecord(context.WithoutCancel(ctx), recordKey(key.Name, rec.Id), b, s.retention)
	}
	if err != nil {
		s.log.Warn("message record not stored; GetMessage will not find it", "id", rec.Id, "error", err)
	}
}

// GetMessage implements mailgate.v1.MailService.
func (s *Service) GetMessage(ctx context.Context, req *mailgatev1.GetMessageRequest) (*mailgatev1.GetMessageResponse, error) {
	key := keyFrom(ctx)
	if key == nil {
		return nil, toStatus(mailerr.New(mailerr.Unauthenticated, "no API key")).Err()
	}
	if !validID(req.GetId()) {
		return nil, toStatus(mailerr.Violations([]mailerr.FieldViolation{{
			Field: "id", Description: "not a message id (26 characters, as SendMail returns)"}})).Err()
	}
	b, err := s.records.GetRecord(ctx, recordKey(key.Name, req.GetId()))
	if errors.Is(err, store.ErrNotFound) {
		return nil, toStatus(mailerr.New(mailerr.NotFound,
			"no message %s for this API key (records are kept for %s)", req.GetId(), humanDuration(s.retention))).Err()
	}
	if err != nil {
		return nil, toStatus(mailerr.Wrap(mailerr.Unavailable, err, "message records are unavailable")).Err()
	}
	rec := new(mailgatev1.GetMessageResponse)
	if err := proto.Unmarshal(b, rec); err != nil {
		return nil, toStatus(mailerr.Wrap(mailerr.Internal, err, "message record is corrupt")).Err()
	}
	return rec, nil
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
