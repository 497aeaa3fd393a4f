package server

import (
	"context"
	"time"

	"github.com/mailgate/mailgate/server/queue"
	"github.com/mailgate/mailgate/webhook"
)

// Notifier is told what happens to queued messages, for webhooks. Notify returns once
// the event is stored, to be delivered at least once; an error means it may be lost.
// The service logs that and goes on: an event never holds back a message.
type Notifier interface {
	Notify(ctx context.Context, ev webhook.MessageEvent) error
}

// notify tells the notifier, if any, that typ happened to item it (in state st after
// it), with attempt a (zero for queued and canceled) and, for a deferred message, when
// it is tried next. seq numbers the message's events (webhook.MessageEvent.Sequence).
// Events of an attempt's outcome are told before the outcome is recorded, so that a
// crash between the two repeats the event rather than losing it.
func (s *Service) notify(typ string, it *queue.Item, st queue.State, seq int, at time.Time, a queue.Attempt, next time.Time) {
	if s.notifier == nil {
		return
	}
	ev := webhook.MessageEvent{
		Type: typ, Sequence: seq, Time: at.UTC(),
		ID: it.ID, MessageID: it.MessageID, Key: it.Key, Route: it.Route, From: it.From, Tags: it.Tags,
		Accepted: it.Accepted.UTC(), Status: stateStatus[st].String(),
		Backend: a.Backend, Outcome: a.Outcome, Reply: a.Reply, Error: a.Error,
	}
	if !next.IsZero() {
		n := next.UTC()
		ev.NextAttempt = &n
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.notifier.Notify(ctx, ev); err != nil {
		s.metrics.queueErrors.WithLabelValues("notify").Inc()
		s.log.Error("webhooks: an event was not stored; the endpoints may miss it", "id", it.ID, "event", typ, "error", err)
	}
}
