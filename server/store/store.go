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
	"fmt"
	"slices"
	"strconv"
	"time"
)

// ErrNotFound is returned for a record that does not exist or has expired.
var ErrNotFound = errors.New("store: not found")

// ErrInvalid is returned for an Admission or a Pause that no store could carry out: a
// group of no known kind, without a name or there twice, a limit of no known id, without
// a period, with a negative cost or there twice in its group, a Concurrent limit whose
// cost is not 1, or a pause target that is not one of the groups. It is a bug in the
// caller, never a state of the store; nothing was taken or changed.
var ErrInvalid = errors.New("store: invalid request")

// Store is what the service needs from its shared state.
//
// Any other error a method returns means the store could not be reached or did not
// answer in time; the caller must then assume nothing about the state (in particular, a
// failed Admit reserved and claimed nothing that the caller may rely on, and nothing may
// be sent).
//
// What callers may assume of every implementation (package storetest checks it, and
// the in-process and the Redis stores both pass it):
//   - Admit takes every group's limits or none: a request that is not Proceed holds
//     nothing once Admit returns, in no group and no claim (Redis gives back what one
//     group took when another refuses, so another request may see it taken meanwhile).
//   - Of a claim and the budgets, the claim decides first: a Replay, InFlight or
//     Mismatch is reported even when a limit would also refuse, and takes nothing.
//   - A Throttled ticket always says what refused it (Ticket.Refused): of several
//     refusals, the one that lasts longest, so that retrying after RetryAfter is not
//     refused again by another.
//   - Budgets are shared by every caller of the same store: a window or a set of
//     Concurrent slots is identified by its group's GroupID and its LimitID, a pause by
//     the GroupID, and each caller says the limits (count, period, cost) it applies.
//   - A Concurrent slot is held from Admit until Complete, whatever the Completion
//     says, or until its Period has passed, whichever comes first: a holder that never
//     completes (its process died) does not keep its slot for ever.
type Store interface {
	// GetRecord returns a value stored with a Completion's Record, or ErrNotFound once it
	// has expired.
	GetRecord(ctx context.Context, key string) ([]byte, error)
	// Admit decides whether a request may go ahead, atomically as far as the backend
	// allows: it claims the idempotency key (when there is one) and takes each group's
	// budget. Budgets and the claim are held only when the decision is Proceed; the
	// holder must then call Complete exactly once. It fails with ErrInvalid for an
	// admission it cannot carry out.
	Admit(ctx context.Context, a *Admission) (*Ticket, error)
	// Complete finishes a Proceed ticket: it stores the outcome for replay (or releases
	// the claim when Outcome is nil), frees its Concurrent slots, gives the windows'
	// budgets back when Refund is set, and stores the GetMessage record when there is
	// one. A claim taken over by another request after its lock expired is left alone
	// (the ticket's fence token no longer matches), and so is a slot that lapsed.
	Complete(ctx context.Context, t *Ticket, c Completion) error
	// Pause refuses the group (for every replica) until d has passed: every Admit that
	// includes it is Throttled, with a Refusal that says Paused, whatever its limits. A
	// pause is only ever extended, never shortened. It fails with ErrInvalid for a
	// group of no known kind or without a name.
	Pause(ctx context.Context, g GroupID, d time.Duration) error
	// Ping reports whether the store answers.
	Ping(ctx context.Context) error
}

// Admission is what a request asks of the store before it is sent.
type Admission struct {
	// Claim is the idempotency claim; nil when the request has no idempotency key.
	Claim *Claim
	// Groups are the rate-limit budgets the request draws on, each taken all or nothing.
	Groups []Group
	// PauseTarget is the group that a throttle of this request by the remote side
	// pauses (with Store.Pause): the mailbox the message is sent as, or the backend
	// when it sends as no mailbox. It must be one of Groups, so that the pause refuses
	// the next request like this one; the zero GroupID when nothing is to be paused.
	PauseTarget GroupID
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

// GroupKind is what a group's budgets belong to. Its String is the kind's tag in stored
// keys ("mb", "be", "key"), which Redis keeps across releases: never change it.
type GroupKind int

const (
	// Mailbox is a sending mailbox: its limits are Exchange Online's, shared by every
	// API key that sends as it. Name is the address as mailaddr.Key folds it.
	Mailbox GroupKind = iota + 1
	// Backend is a backend that sends as no mailbox (a relay, Direct Send): it has no
	// limits of its own, only a pause. Name is the backend's name.
	Backend
	// APIKey is an API key's own budget. Name is the key's name.
	APIKey
)

var groupKindTags = [...]string{Mailbox: "mb", Backend: "be", APIKey: "key"}

func (k GroupKind) String() string {
	if k.valid() {
		return groupKindTags[k]
	}
	return "GroupKind(" + strconv.Itoa(int(k)) + ")"
}

func (k GroupKind) valid() bool { return k >= Mailbox && k <= APIKey }

// GroupID names a group: the limits taken together and paused together.
type GroupID struct {
	Kind GroupKind
	Name string
}

// String is the group's name in stored keys and in logs: "<kind>:<name>", e.g.
// "mb:billing@contoso.com" or "key:billing-app".
func (g GroupID) String() string { return g.Kind.String() + ":" + g.Name }

// IsZero reports whether g names no group.
func (g GroupID) IsZero() bool { return g == GroupID{} }

// problem says what makes g no group a store can keep, or "".
func (g GroupID) problem() string {
	switch {
	case !g.Kind.valid():
		return fmt.Sprintf("group %q: kind %d is not Mailbox, Backend or APIKey", g.Name, int(g.Kind))
	case g.Name == "":
		return fmt.Sprintf("%s group without a name", g.Kind)
	}
	return ""
}

// Group is a set of limits taken together, with one pause switch: a mailbox's
// messages per minute and recipients per day, or an API key's messages per minute.
type Group struct {
	Kind   GroupKind
	Name   string
	Limits []Limit
}

// ID is the group's name, as Pause and a Refusal take it.
func (g Group) ID() GroupID { return GroupID{Kind: g.Kind, Name: g.Name} }

// LimitID names a limit within its group. Its String is the id in stored keys ("msgs",
// "rcpts", "conc"), which Redis keeps across releases: never change it.
type LimitID int

const (
	// MessagesPerMinute costs 1 per message (its period is the Limit's).
	MessagesPerMinute LimitID = iota + 1
	// RecipientsPerDay costs 1 per recipient (its period is the Limit's).
	RecipientsPerDay
	// Concurrent counts requests admitted and not yet completed: at most Count at once
	// (Microsoft 365 allows a mailbox 3 SMTP AUTH sessions and 4 Graph requests at a
	// time). Cost is 1 per request. Period bounds how long one holds its slot: a holder
	// that never completes (its process died) frees it after Period, so Period must be
	// longer than the slowest request.
	//
	// It is not a window: Complete frees the slot whether or not it refunds, since a
	// completed request no longer runs. A request refused by it is told to retry after
	// the time until the oldest slot's Period lapses, but at most ConcurrentRetry:
	// slots are normally freed by Complete, which no store can foresee, and a request
	// holds one for about a send's round trip, so waiting for the lapse (minutes) would
	// leave the mailbox idle long after its sends ended.
	Concurrent
)

// ConcurrentRetry is the longest RetryAfter of a refusal by a Concurrent limit.
const ConcurrentRetry = time.Second

var limitIDTags = [...]string{MessagesPerMinute: "msgs", RecipientsPerDay: "rcpts", Concurrent: "conc"}

func (l LimitID) String() string {
	if l.valid() {
		return limitIDTags[l]
	}
	return "LimitID(" + strconv.Itoa(int(l)) + ")"
}

func (l LimitID) valid() bool { return l >= MessagesPerMinute && l <= Concurrent }

// Limit is a sliding window: at most Count units in any span of Period, bursts allowed.
// It is exact, as Exchange Online's rolling limits are: a mailbox that sent 30 messages
// in one second sends the 31st a minute after the first, not two seconds later (a token
// bucket would allow nearly twice the count in the first period). A Concurrent limit is
// instead at most Count requests at once (see Concurrent). A Count of 0 or less is no
// limit: the store skips it.
type Limit struct {
	ID     LimitID
	Count  int
	Period time.Duration
	// Cost is what this request takes: 1 per message, or 1 per recipient; always 1 for
	// Concurrent. A cost above Count is refused for a whole Period.
	Cost int
}

// invalid returns an ErrInvalid that says what makes the admission one no store can
// carry out, or nil. It is checked before anything is taken: a store would otherwise
// build windows that no other request shares, or a pause that nothing reads.
func (a *Admission) invalid() error {
	target := a.PauseTarget.IsZero()
	for i, g := range a.Groups {
		if p := g.ID().problem(); p != "" {
			return fmt.Errorf("%w: groups[%d]: %s", ErrInvalid, i, p)
		}
		for _, before := range a.Groups[:i] {
			if before.ID() == g.ID() {
				return fmt.Errorf("%w: groups[%d]: %s is there twice: its budget would be taken twice", ErrInvalid, i, g.ID())
			}
		}
		target = target || g.ID() == a.PauseTarget
		for j, l := range g.Limits {
			if l.Count <= 0 {
				continue
			}
			switch {
			case slices.ContainsFunc(g.Limits[:j], func(o Limit) bool { return o.ID == l.ID && o.Count > 0 }):
				return fmt.Errorf("%w: groups[%d] (%s): limit %s is there twice: both would share one window", ErrInvalid, i, g.ID(), l.ID)
			case !l.ID.valid():
				return fmt.Errorf("%w: groups[%d] (%s): limits[%d]: id %d is not MessagesPerMinute, RecipientsPerDay or Concurrent", ErrInvalid, i, g.ID(), j, int(l.ID))
			case l.Period <= 0:
				return fmt.Errorf("%w: groups[%d] (%s): limit %s: period %v is not positive", ErrInvalid, i, g.ID(), l.ID, l.Period)
			case l.Cost < 0:
				return fmt.Errorf("%w: groups[%d] (%s): limit %s: cost %d is negative", ErrInvalid, i, g.ID(), l.ID, l.Cost)
			case l.ID == Concurrent && l.Cost != 1:
				// A slot is one request; another cost would make Count mean something else.
				return fmt.Errorf("%w: groups[%d] (%s): limit %s: cost %d is not 1: a request holds one slot", ErrInvalid, i, g.ID(), l.ID, l.Cost)
			}
		}
	}
	if !target {
		return fmt.Errorf("%w: pause target %s is not one of the admission's groups", ErrInvalid, a.PauseTarget)
	}
	return nil
}

// invalidPause returns an ErrInvalid for a group Pause cannot pause, or nil.
func invalidPause(g GroupID) error {
	if p := g.problem(); p != "" {
		return fmt.Errorf("%w: pause: %s", ErrInvalid, p)
	}
	return nil
}

// Refusal says what refused a Throttled request.
type Refusal struct {
	Group GroupID
	// Paused: the group is paused (Store.Pause); Limit is then zero.
	Paused bool
	// Limit is the limit that refused the request, when the group is not paused.
	Limit LimitID
}

// String is "<group>/<limit id>" or "<group>/pause", e.g. "mb:billing@contoso.com/msgs":
// for logs.
func (r Refusal) String() string {
	if r.Paused {
		return r.Group.String() + "/pause"
	}
	return r.Group.String() + "/" + r.Limit.String()
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
	// RetryAfter is when to try again, for Throttled and InFlight; zero otherwise.
	RetryAfter time.Duration
	// Refused is what throttled the request: set for Throttled, nil otherwise.
	Refused *Refusal

	claim  *Claim
	token  string // fences the claim and marks this request's window entries and slots
	groups []Group
	at     []time.Time // when each group's entries were made, for a refund or a slot's release
}

// Completion is how a Proceed request ended.
type Completion struct {
	// Outcome is stored for replays of the idempotency key until Retention has passed.
	// Nil releases the claim, so that a retry may go ahead.
	Outcome   []byte
	Retention time.Duration
	// Refund gives the windows' budgets back: the message was not accepted. Concurrent
	// slots are freed either way.
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
