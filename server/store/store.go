// Package store keeps mailgate's shared state: idempotency claims, rate-limit budgets,
// mailbox pauses and the record of every accepted message. Redis holds it for any number
// of replicas; Memory holds it in-process for one replica (the embedded default).
//
// The operations are shaped by the request path rather than by data type, so that an
// accepted message costs Redis two round trips: Admit before the backend is touched,
// Complete after.
package store

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is returned for a record that does not exist or has expired.
var ErrNotFound = errors.New("store: not found")

// Store is what the service needs from its shared state.
//
// Every method may fail with an error that means the store could not be reached; the
// caller must then assume nothing about the state (in particular, a failed Admit
// reserved and claimed nothing that the caller may rely on, and nothing may be sent).
type Store interface {
	// GetRecord returns a value stored with a Completion's Record, or ErrNotFound once it
	// has expired.
	GetRecord(ctx context.Context, key string) ([]byte, error)
	// Admit decides whether a request may go ahead, atomically as far as the backend
	// allows: it claims the idempotency key (when there is one) and takes each group's
	// budget. Budgets and the claim are held only when the decision is Proceed; the
	// holder must then call Complete exactly once.
	Admit(ctx context.Context, a *Admission) (*Ticket, error)
	// Complete finishes a Proceed ticket: it stores the outcome for replay (or releases
	// the claim when Outcome is nil), gives the budgets back when Refund is set, and
	// stores the GetMessage record when there is one. A claim taken over by another
	// request after its lock expired is left alone (the ticket's fence token no longer
	// matches).
	Complete(ctx context.Context, t *Ticket, c Completion) error
	// Pause refuses the group (for every replica) until d has passed. A pause is only
	// ever extended, never shortened.
	Pause(ctx context.Context, group string, d time.Duration) error
	// Ping reports whether the store answers.
	Ping(ctx context.Context) error
}

// Admission is what a request asks of the store before it is sent.
type Admission struct {
	// Claim is the idempotency claim; nil when the request has no idempotency key.
	Claim *Claim
	// Groups are the rate-limit budgets the request draws on, each taken all or nothing.
	Groups []Group
}

// Claim identifies an idempotent request.
type Claim struct {
	// Scope separates callers: the API key's name.
	Scope string
	// Key is the caller's idempotency key.
	Key string
	// Fingerprint identifies the request's content; the same key with another
	// fingerprint is a reuse, not a retry.
	Fingerprint string
	// LockTTL is how long the claim may stay pending before another request may take it
	// over: longer than the slowest send, so it runs out only after a crash.
	LockTTL time.Duration
}

// Group is a set of limits taken together, with one pause switch: a mailbox's
// messages per minute and recipients per day, or an API key's messages per minute.
type Group struct {
	// Key names the group, e.g. "mb:billing@contoso.com" or "key:billing-app".
	Key    string
	Limits []Limit
}

// Limit is a sliding window: at most Count units in any span of Period, bursts allowed.
// It is exact, as Exchange Online's rolling limits are: a mailbox that sent 30 messages
// in one second sends the 31st a minute after the first, not two seconds later (a token
// bucket would allow nearly twice the count in the first period).
type Limit struct {
	// ID names the limit within its group ("msgs", "rcpts") and in errors.
	ID     string
	Count  int
	Period time.Duration
	// Cost is what this request takes: 1 per message, or 1 per recipient.
	Cost int
}

// Decision is what Admit decided.
type Decision int

const (
	// Proceed: send the message, then call Complete.
	Proceed Decision = iota + 1
	// Replay: the request was completed before; Outcome holds what it returned.
	Replay
	// InFlight: the same request is being processed; RetryAfter is how long its lock
	// has left at most.
	InFlight
	// Mismatch: the idempotency key was used for a different request.
	Mismatch
	// Throttled: a limit or a pause refused the request; nothing was taken.
	Throttled
)

func (d Decision) String() string {
	return [...]string{"", "proceed", "replay", "in flight", "mismatch", "throttled"}[d]
}

// Ticket is the result of Admit.
type Ticket struct {
	Decision Decision
	// Outcome is the stored outcome, for Replay.
	Outcome []byte
	// RetryAfter is when to try again, for Throttled and InFlight.
	RetryAfter time.Duration
	// Refused names what throttled the request: "<group>/<limit id>" or "<group>/pause".
	Refused string

	claim  *Claim
	token  string // fences the claim and marks this request's window entries
	groups []Group
	at     []time.Time // when each group's entries were made, for a refund
}

// Completion is how a Proceed request ended.
type Completion struct {
	// Outcome is stored for replays of the idempotency key until Retention has passed.
	// Nil releases the claim, so that a retry may go ahead.
	Outcome   []byte
	Retention time.Duration
	// Refund gives the budgets back: the message was not accepted.
	Refund bool
	// Record, when set, is stored for GetMessage.
	Record *Record
}

// Record is a value to keep for a time.
type Record struct {
	Key   string
	Value []byte
	TTL   time.Duration
}
