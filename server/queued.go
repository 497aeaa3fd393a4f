package server

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

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
	"github.com/mailgate/mailgate/webhook"
)

// QueueOptions bound queued delivery.
type QueueOptions struct {
	// MaxLifetime is how long a queued message is retried, from its sendAt (or its
	// acceptance); default 24 h.
	MaxLifetime time.Duration
	// MaxSchedule is how far ahead sendAt may be; 0 refuses sendAt.
	MaxSchedule time.Duration
}

// deliveryOf decides whether req is queued: its delivery field, else a sendAt (which only
// the queue can honour), else the route's setting. It refuses a delivery no code knows, a
// sendAt with SYNC, and a sendAt beyond queue.max_schedule.
func (s *Service) deliveryOf(req *mailgatev1.SendMailRequest, route policy.Route, now time.Time) (queued bool, notBefore time.Time, err error) {
	var v violations
	d := req.GetDelivery()
	switch d {
	case mailgatev1.SendMailRequest_DELIVERY_UNSPECIFIED, mailgatev1.SendMailRequest_SYNC, mailgatev1.SendMailRequest_QUEUED:
	default:
		v.add("delivery", "must be SYNC or QUEUED, not %d", int32(d))
	}
	// Go's zero time (0001-01-01T00:00:00Z, the earliest Timestamp) is what clients
	// generated from the OpenAPI document send for a sendAt they never set: no schedule.
	at := req.GetSendAt()
	if at != nil && at.IsValid() && at.AsTime().IsZero() {
		at = nil
	}
	if at != nil {
		switch {
		case at.CheckValid() != nil:
			v.add("sendAt", "not a valid time: %v", at.CheckValid())
		case d == mailgatev1.SendMailRequest_SYNC:
			v.add("sendAt", "a scheduled message is queued: leave delivery out or make it QUEUED")
		case s.queueOpts.MaxSchedule <= 0:
			v.add("sendAt", "scheduling is off (queue.max_schedule is 0)")
		case at.AsTime().After(now.Add(s.queueOpts.MaxSchedule)):
			v.add("sendAt", "at most %s ahead (queue.max_schedule), not %s", humanDuration(s.queueOpts.MaxSchedule),
				at.AsTime().UTC().Format(time.RFC3339))
		case at.AsTime().After(now):
			notBefore = at.AsTime()
		}
	}
	if len(v) > 0 {
		return false, time.Time{}, mailerr.Violations(v)
	}
	switch {
	case d == mailgatev1.SendMailRequest_QUEUED, at != nil:
		queued = true
	case d == mailgatev1.SendMailRequest_SYNC:
	default:
		queued = route.Queued
	}
	if queued && s.queue == nil {
		return false, time.Time{}, mailerr.New(mailerr.Unavailable,
			"queued delivery is off on this server: it has no queue").WithReason(mailerr.ReasonQueueUnavailable)
	}
	return queued, notBefore, nil
}

// enqueue takes responsibility for an admitted message: it is answered QUEUED only once
// the queue holds it durably. adm holds the API key's own budget and the idempotency
// claim; the mailbox's budgets are the dispatcher's, when it sends.
func (s *Service) enqueue(ctx context.Context, key *apikey.Key, id string, now, notBefore time.Time, req *mailgatev1.SendMailRequest,
	msg *senders.Message, route policy.Route, ticket *store.Ticket) (*mailgatev1.SendMailResponse, error) {
	it := &queue.Item{
		ID:        id,
		Key:       key.Name,
		Group:     s.paceGroup(msg, route.Backend),
		Backends:  route.Backends(),
		Body:      encodeQueued(req, now),
		Accepted:  now,
		NotBefore: notBefore,
		Deadline:  later(now, notBefore).Add(s.queueOpts.MaxLifetime),
		MessageID: msg.MessageID,
		From:      msg.From.Address,
		Route:     route.Name,
		Tags:      req.GetTags(),
	}
	for _, r := range msg.Recipients {
		it.Recipients = append(it.Recipients, mailaddr.Key(r))
	}
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.sendTimeout)
	defer cancel()
	err := s.queue.Enqueue(qctx, it)
	if errors.Is(err, queue.ErrExists) {
		// Only a retried Enqueue of this id could find it, and ids are new per request.
		err = fmt.Errorf("message id %s is already queued: %w", id, err)
	}
	if err != nil {
		s.metrics.queueErrors.WithLabelValues("enqueue").Inc()
		if ticket != nil {
			s.complete(qctx, ticket, store.Completion{Refund: true})
		}
		return nil, mailerr.Wrap(mailerr.Unavailable, err, "mailgate's queue did not take the message; nothing was queued, retrying is safe").
			WithReason(mailerr.ReasonQueueUnavailable)
	}
	resp := &mailgatev1.SendMailResponse{
		Id:        id,
		MessageId: msg.MessageID,
		Route:     route.Name,
		Backend:   route.Backend,
		Status:    mailgatev1.Status_QUEUED,
	}
	if ticket != nil {
		s.complete(qctx, ticket, store.Completion{Outcome: encodeResponse(resp), Retention: s.retention})
	}
	s.metrics.queued.Inc()
	s.notify(webhook.EventQueued, it, queue.Queued, 0, now, queue.Attempt{}, time.Time{})
	if s.wake != nil {
		s.wake()
	}
	return resp, nil
}

// paceGroup is the group a message's sends are paced by on backend: its sending mailbox,
// or the backend itself when it sends as no mailbox.
func (s *Service) paceGroup(msg *senders.Message, backend string) store.GroupID {
	return s.admission(nil, msg, backend).PauseTarget
}

// A queued item's body is what a worker needs to rebuild the message as it was accepted:
// a version byte, the acceptance time (Unix ns, big-endian) and the request. The request
// rather than the RFC 5322 bytes, so that the worker normalises it the same way as a
// synchronous send, with the same id, Message-ID and Date the caller was told.
const queuedV1 = 1

func encodeQueued(req *mailgatev1.SendMailRequest, accepted time.Time) []byte {
	b := make([]byte, 9, 9+proto.Size(req))
	b[0] = queuedV1
	binary.BigEndian.PutUint64(b[1:9], uint64(accepted.UnixNano()))
	b, err := proto.MarshalOptions{}.MarshalAppend(b, req)
	if err != nil {
		// Every string in it was validated as UTF-8 before; a failure is a bug.
		panic("queued request does not marshal: " + err.Error())
	}
	return b
}

func decodeQueued(b []byte) (*mailgatev1.SendMailRequest, time.Time, error) {
	if len(b) < 9 || b[0] != queuedV1 {
		return nil, time.Time{}, fmt.Errorf("queued message body: not version %d", queuedV1)
	}
	req := new(mailgatev1.SendMailRequest)
	if err := proto.Unmarshal(b[9:], req); err != nil {
		return nil, time.Time{}, fmt.Errorf("queued message body: %w", err)
	}
	return req, time.Unix(0, int64(binary.BigEndian.Uint64(b[1:9]))), nil
}

var stateStatus = map[queue.State]mailgatev1.Status{
	queue.Queued:   mailgatev1.Status_QUEUED,
	queue.Sending:  mailgatev1.Status_SENDING,
	queue.Sent:     mailgatev1.Status_SENT,
	queue.Failed:   mailgatev1.Status_FAILED,
	queue.Canceled: mailgatev1.Status_CANCELED,
	queue.Unknown:  mailgatev1.Status_UNKNOWN,
}

// queuedRecord is what GetMessage and ListMessages say about a queued item. sent, when
// there is one, is the record the worker stored on delivery, with the recipients.
func queuedRecord(it *queue.Item, sent *mailgatev1.GetMessageResponse, withAttempts bool) *mailgatev1.GetMessageResponse {
	rec := &mailgatev1.GetMessageResponse{
		Id:         it.ID,
		MessageId:  it.MessageID,
		Route:      it.Route,
		Status:     stateStatus[it.State],
		From:       it.From,
		Tags:       it.Tags,
		AcceptTime: timestamppb.New(it.Accepted),
		LastError:  it.LastError,
		Delivery:   mailgatev1.SendMailRequest_QUEUED,
	}
	if len(it.Backends) > 0 {
		rec.Backend = it.Backends[0]
	}
	if n := len(it.Attempts); n > 0 {
		rec.Backend = it.Attempts[n-1].Backend
	}
	if it.State == queue.Queued {
		rec.NextAttemptTime = timestamppb.New(later(it.NotBefore, it.Accepted))
	}
	if !it.Finished.IsZero() {
		rec.FinishTime = timestamppb.New(it.Finished)
	}
	if it.State == queue.Sent {
		rec.LastError = ""
	}
	if withAttempts {
		for _, a := range it.Attempts {
			rec.Attempts = append(rec.Attempts, &mailgatev1.Attempt{
				Time: timestamppb.New(a.Time), Backend: a.Backend, Outcome: a.Outcome,
				Reply: mailstatus.Text(a.Reply, mailstatus.MaxDetail), Error: mailstatus.Text(a.Error, mailstatus.MaxDetail),
			})
		}
	}
	if sent != nil {
		rec.AcceptedRecipients = sent.GetAcceptedRecipients()
		rec.RejectedRecipients = sent.GetRejectedRecipients()
	}
	return rec
}

// queuedMessage returns the key's queued message id, or nil when the queue has none
// (then the message, if any, was sent synchronously).
func (s *Service) queuedMessage(ctx context.Context, key *apikey.Key, id string) (*mailgatev1.GetMessageResponse, *mailerr.Error) {
	if s.queue == nil {
		return nil, nil
	}
	it, err := s.queue.Get(ctx, id)
	switch {
	case errors.Is(err, queue.ErrNotFound):
		return nil, nil
	case err != nil:
		s.metrics.queueErrors.WithLabelValues("get").Inc()
		return nil, mailerr.Wrap(mailerr.Unavailable, err, "mailgate's queue did not answer").WithReason(mailerr.ReasonQueueUnavailable)
	case it.Key != key.Name:
		return nil, nil // another key's message does not exist for this one
	}
	var sent *mailgatev1.GetMessageResponse
	if it.State == queue.Sent {
		if b, err := s.store.GetRecord(ctx, recordKey(key.Name, id)); err == nil {
			sent = new(mailgatev1.GetMessageResponse)
			if proto.Unmarshal(b, sent) != nil {
				sent = nil
			}
		}
	}
	return queuedRecord(it, sent, true), nil
}

// CancelMessage implements mailgate.v1.MailService.
func (s *Service) CancelMessage(ctx context.Context, req *mailgatev1.CancelMessageRequest) (*mailgatev1.CancelMessageResponse, error) {
	key := keyFrom(ctx)
	if key == nil {
		return nil, mailstatus.Err(mailerr.New(mailerr.Unauthenticated, "no API key"))
	}
	if !validID(req.GetId()) {
		return nil, mailstatus.Err(mailerr.Violations([]mailerr.FieldViolation{{
			Field: "id", Description: "not a message id (26 characters, as SendMail returns)"}}))
	}
	rec, qerr := s.queuedMessage(ctx, key, req.GetId())
	if qerr != nil {
		return nil, mailstatus.Err(qerr)
	}
	if rec == nil {
		if _, err := s.GetMessage(ctx, &mailgatev1.GetMessageRequest{Id: req.GetId()}); err == nil {
			return nil, mailstatus.Err(mailerr.New(mailerr.WrongState,
				"message %s was sent at once (delivery SYNC), not queued: there is nothing to cancel", req.GetId()).WithReason(mailerr.ReasonNotCancelable))
		}
		return nil, mailstatus.Err(mailerr.New(mailerr.NotFound, "no queued message %s for this API key", req.GetId()))
	}
	err := s.queue.Cancel(ctx, req.GetId())
	if se, ok := errors.AsType[*queue.StateError](err); ok {
		return nil, mailstatus.Err(mailerr.New(mailerr.WrongState, "message %s is %s: only a QUEUED message can be canceled",
			req.GetId(), stateStatus[se.State]).WithReason(mailerr.ReasonNotCancelable))
	}
	if err != nil {
		s.metrics.queueErrors.WithLabelValues("cancel").Inc()
		return nil, mailstatus.Err(mailerr.Wrap(mailerr.Unavailable, err, "mailgate's queue did not answer; the message may or may not be canceled: ask GetMessage").
			WithReason(mailerr.ReasonQueueUnavailable))
	}
	s.metrics.delivered.WithLabelValues("CANCELED").Inc()
	s.log.Info("message canceled", "id", req.GetId(), "key", key.Name)
	if s.notifier != nil {
		if it, err := s.queue.Get(ctx, req.GetId()); err == nil {
			s.notify(webhook.EventCanceled, it, queue.Canceled, len(it.Attempts)+1, s.now(), queue.Attempt{}, time.Time{})
		}
	}
	rec, qerr = s.queuedMessage(ctx, key, req.GetId())
	if qerr != nil || rec == nil {
		// Canceled, but the record could not be read back: say what is known.
		return &mailgatev1.CancelMessageResponse{Message: &mailgatev1.GetMessageResponse{
			Id: req.GetId(), Status: mailgatev1.Status_CANCELED, Delivery: mailgatev1.SendMailRequest_QUEUED}}, nil
	}
	return &mailgatev1.CancelMessageResponse{Message: rec}, nil
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// ListMessages implements mailgate.v1.MailService.
func (s *Service) ListMessages(ctx context.Context, req *mailgatev1.ListMessagesRequest) (*mailgatev1.ListMessagesResponse, error) {
	key := keyFrom(ctx)
	if key == nil {
		return nil, mailstatus.Err(mailerr.New(mailerr.Unauthenticated, "no API key"))
	}
	var v violations
	q := queue.ListQuery{Key: key.Name, PageToken: req.GetPageToken()}
	for i, st := range req.GetStatus() {
		found := false
		for state, status := range stateStatus {
			if status == st {
				q.States, found = append(q.States, state), true
			}
		}
		if !found {
			v.add(fmt.Sprintf("status[%d]", i), "must be QUEUED, SENDING, SENT, FAILED, CANCELED or UNKNOWN")
		}
	}
	for i, t := range req.GetTag() {
		name, value, ok := strings.Cut(t, "=")
		if !ok || name == "" {
			v.add(fmt.Sprintf("tag[%d]", i), "want name=value, such as invoice=1001, not %q", t)
			continue
		}
		if q.Tags == nil {
			q.Tags = map[string]string{}
		}
		q.Tags[name] = value
	}
	for _, f := range []struct {
		name string
		ts   *timestamppb.Timestamp
		to   *time.Time
	}{{"acceptedAfter", req.GetAcceptedAfter(), &q.AcceptedFrom}, {"acceptedBefore", req.GetAcceptedBefore(), &q.AcceptedTo}} {
		if f.ts == nil {
			continue
		}
		if err := f.ts.CheckValid(); err != nil {
			v.add(f.name, "not a valid time: %v", err)
			continue
		}
		*f.to = f.ts.AsTime()
	}
	if !q.AcceptedFrom.IsZero() && !q.AcceptedTo.IsZero() && !q.AcceptedTo.After(q.AcceptedFrom) {
		v.add("acceptedBefore", "must be after acceptedAfter")
	}
	if r := req.GetRecipient(); r != "" {
		if _, err := mailaddr.Parse(r); err != nil {
			v.add("recipient", "not an address: %v", err)
		}
		q.Recipient = mailaddr.Key(r)
	}
	if n := req.GetPageSize(); n < 0 || n > queue.MaxListLimit {
		v.add("pageSize", "must be 1 to %d (0 or absent: %d)", queue.MaxListLimit, queue.DefaultListLimit)
	} else {
		q.Limit = int(n)
	}
	if len(v) > 0 {
		return nil, mailstatus.Err(mailerr.Violations(v))
	}
	if s.queue == nil {
		return &mailgatev1.ListMessagesResponse{}, nil
	}
	items, next, err := s.queue.List(ctx, q)
	if errors.Is(err, queue.ErrInvalid) {
		// All but the token was checked above.
		return nil, mailstatus.Err(mailerr.Violations([]mailerr.FieldViolation{{Field: "pageToken",
			Description: "not a nextPageToken that ListMessages returned"}}))
	}
	if err != nil {
		s.metrics.queueErrors.WithLabelValues("list").Inc()
		return nil, mailstatus.Err(mailerr.Wrap(mailerr.Unavailable, err, "mailgate's queue did not answer").WithReason(mailerr.ReasonQueueUnavailable))
	}
	resp := &mailgatev1.ListMessagesResponse{NextPageToken: next}
	for _, it := range items {
		resp.Messages = append(resp.Messages, queuedRecord(it, nil, false))
	}
	return resp, nil
}
