// Package queue is mailgate's durable queue of accepted messages: what the service hands
// over when it answers QUEUED, and what delivery workers take, send and settle.
//
// The Queue interface is the contract; two implementations satisfy it and pass one
// suite (package queuetest): a local spool on disk for one node (package spool) and,
// for replicas, Redis sorted sets and hashes (package redisq). docs/queue.md is the
// design of the queue's storage: how each operation maps to bbolt and to Redis.
//
// The queue knows nothing of backends or Microsoft's limits. It keeps items, hands a
// ready one to one worker at a time under a lease, and records what the worker says
// happened. Pacing is the caller's: Lease asks a predicate which groups have budget.
package queue

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mailgate/mailgate/server/store"
)

// State is where an item is in its life.
type State int

const (
	// Queued: waiting for its NotBefore, or ready and not leased.
	Queued State = iota + 1
	// Sending: a worker holds a lease on it.
	Sending
	// Sent: a backend accepted it. Terminal.
	Sent
	// Failed: refused permanently, or out of time (Deadline). Terminal.
	Failed
	// Canceled: canceled before any worker took it. Terminal.
	Canceled
	// Unknown: an attempt may have delivered it (the connection broke after the
	// message went out); it is never sent again. Terminal.
	Unknown
)

var stateNames = [...]string{Queued: "QUEUED", Sending: "SENDING", Sent: "SENT", Failed: "FAILED", Canceled: "CANCELED", Unknown: "UNKNOWN"}

func (s State) String() string {
	if s >= Queued && s <= Unknown {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Terminal reports whether nothing more happens to an item in state s.
func (s State) Terminal() bool { return s >= Sent && s <= Unknown }

// Item is one accepted message and what has happened to it.
type Item struct {
	// ID is mailgate's id for the message (the id the caller was given).
	ID string
	// Key is the name of the API key that sent it: GetMessage and CancelMessage are
	// allowed to that key only.
	Key string
	// Group is the mailbox or backend the message is paced by: a worker leases the
	// item only when the caller's predicate says this group has budget.
	Group store.GroupID
	// Backends are the backends that may carry the message, in the order to try.
	Backends []string
	// Body is what a worker needs to send the message later, opaque to the queue.
	// The service keeps the serialized SendMailRequest (with the acceptance time), not
	// the RFC 5322 bytes: a worker rebuilds the senders.Message with the same
	// normalisation, so Graph still gets structured JSON, the Message-ID and Date are
	// the ones the caller was told, and the idempotency record is written as today.
	Body []byte
	// Accepted is when the queue took the item.
	Accepted time.Time
	// NotBefore is the earliest time a worker may take it (send_at, or a retry's
	// backoff). The zero time means at once.
	NotBefore time.Time
	// Deadline is when retrying stops (Accepted + queue.max_lifetime). The queue does
	// not fail an item by itself: a worker that finds the deadline passed calls Fail.
	Deadline time.Time
	// MessageID is the RFC 5322 Message-ID the caller was told. It, From, Route and
	// Tags are kept beside the body so that List can show an item without reading it.
	MessageID string
	// From is the message's From address.
	From string
	// Route is the name of the route the message was accepted on.
	Route string
	// Tags are the request's tags; List filters on them.
	Tags map[string]string
	// Recipients are the message's recipient addresses (To, Cc and Bcc), as
	// mailaddr.Key gives them (lower case); List filters on them.
	Recipients []string

	// Set by the queue; Enqueue refuses an item with any of them set.

	// State is the item's state.
	State State
	// Attempts are the worker's attempts, oldest first.
	Attempts []Attempt
	// LastError is the last attempt's error text, or why a lease was taken over.
	LastError string
	// Lease is the current lease while the item is Sending; zero otherwise.
	Lease Lease
	// TakenOver is set on an item Lease returns when that lease took over one that
	// lapsed: its worker stopped, perhaps in the middle of sending it. A worker that
	// cannot ask the backend whether the message arrived must not send it again.
	TakenOver bool
	// Finished is when the item entered a terminal state (Sent, Failed, Canceled,
	// Unknown); zero otherwise. Expire goes by it.
	Finished time.Time
}

// Attempt is one try at delivery, as a worker reports it.
type Attempt struct {
	Time    time.Time
	Backend string
	// Outcome is the attempt's mailerr reason, or "SENT".
	Outcome string
	// Reply is the remote server's reply (SMTP response, Graph error), when it gave one.
	Reply string
	// Error is mailgate's description of the failure, for people; empty on success.
	Error string
}

// Lease is a worker's hold on one item. Token fences it: each lease of an item gets a
// larger token than the item's leases before, so a worker whose lease was taken over
// cannot settle the item the new holder is working on.
type Lease struct {
	ID    string
	Token uint64
	Until time.Time
}

// IsZero reports whether l is no lease.
func (l Lease) IsZero() bool { return l == Lease{} }

// Queue is a durable queue of items, shared by every worker that opens it.
//
// Enqueue stores a new item in state Queued, with Accepted set to now if it is zero.
// When it returns nil the item is durable:
// it survives the process being killed (and, for the spool, a power cut once the disk
// has acknowledged the write; for Redis, what its persistence settings keep). On error
// the item may or may not have been stored; the caller must not answer QUEUED, and may
// retry with the same ID (ErrExists then means the first call stored it). Enqueue
// refuses with ErrInvalid an item without ID, Key, Group or Body, with a NUL byte in
// its ID, Key or Group name (they are parts of storage keys), with a Deadline not after
// NotBefore, or with State, Attempts, LastError, Lease or Finished set. ErrExists: the
// ID is taken.
//
// Lease takes one ready item for d: an item in state Queued whose NotBefore has come,
// or an item Sending whose lease lapsed (its worker stopped; the item is taken over,
// and the previous lease's token is refused from then on). Of the ready items, Lease
// considers only those whose Group ready reports true; within a group it takes the
// earliest NotBefore first, and a group that ready refuses does not hold back the
// others. ready is given only the group; it may be called several times per Lease,
// possibly while the queue holds its own locks, so it must be quick and must not call
// the queue. The item comes back Sending with its Lease set. ErrEmpty: nothing is ready
// that ready accepts. No two calls, in any process, get the same item under a live
// lease. A nil ready or a d that is not positive is ErrInvalid.
//
// Extend, Release, Retry, Complete, Fail and MarkUnknown act on a leased item, and only
// with its current lease: a lease that was taken over, or an item settled meanwhile,
// gives ErrStaleLease and changes nothing (ErrNotFound when it names no item at all).
// A lease that lapsed but was not yet taken over is still current. A worker extends its
// lease well before Until for as long as it sends.
//   - Extend moves the lease's end to now + d and returns the new Lease (same Token).
//   - Release puts the item back to Queued, ready at notBefore, recording no attempt:
//     the worker did not try (its group ran out of budget, a pause began).
//   - Retry records the attempt and puts the item back to Queued, ready at at.
//   - Complete records the attempt and ends the item Sent.
//   - Fail records the attempt and ends the item Failed.
//   - MarkUnknown records the attempt and ends the item Unknown.
//
// Cancel ends a Queued item Canceled. ErrNotCancelable (in a *StateError naming the
// state) when it is leased or already ended; ErrNotFound when there is no such item.
//
// Every move into a terminal state (Complete, Fail, MarkUnknown, Cancel) sets Finished
// to now; Requeue clears it.
//
// Get returns a copy of the item, Body included, in any state: terminal items are kept
// until Expire or Delete removes them. ErrNotFound when there is none.
//
// List returns the items of one API key that match q, newest first (by Accepted, then
// by ID, both descending), at most q.Limit of them, each WITHOUT its Body (nil): a body
// can be tens of megabytes and a listing shows metadata. next is the PageToken of the
// following page, "" when there is none. Its cost is bounded by the key's items (in the
// Accepted range), not by the whole queue. A query CheckListQuery refuses is ErrInvalid.
// A page token is opaque; it stays valid while items come and go (an item enqueued
// after the first page, being newer, is not on the later pages).
//
// Requeue puts an item that ended Failed, Unknown or Canceled back to Queued, ready at
// at, with Deadline deadline (which must be after at, else ErrInvalid), keeping its
// Attempts and clearing Finished: an operator's "send it again". An item Sent, Queued
// or Sending is refused with ErrNotRequeueable in a *StateError naming the state;
// ErrNotFound when there is no such item.
//
// Delete removes an item and every trace of it (an operator's purge), in any state but
// Sending: a leased item is refused with ErrLeased in a *StateError. ErrNotFound when
// there is no such item. Its ID may be enqueued again afterwards.
//
// Expire deletes up to max (which must be positive) items in a terminal state whose
// Finished is before finishedBefore, oldest Finished first where the implementation
// can, and returns how many it deleted: the retention sweep, called repeatedly until
// it returns fewer than max. It does not look at items that are not terminal.
//
// Stats counts the items that are not ended, for gauges polled every few seconds; it
// reads no bodies and no items, only the queue's indexes.
//
// Every method may be called from many goroutines. Other errors mean the queue's
// storage failed; the operation may or may not have happened, except for Enqueue as
// above. Close releases the storage; the Queue is not used afterwards.
type Queue interface {
	Enqueue(ctx context.Context, it *Item) error
	Lease(ctx context.Context, ready func(store.GroupID) bool, d time.Duration) (*Item, error)
	Extend(ctx context.Context, l Lease, d time.Duration) (Lease, error)
	Release(ctx context.Context, l Lease, notBefore time.Time) error
	Retry(ctx context.Context, l Lease, at time.Time, a Attempt) error
	Complete(ctx context.Context, l Lease, a Attempt) error
	Fail(ctx context.Context, l Lease, a Attempt) error
	MarkUnknown(ctx context.Context, l Lease, a Attempt) error
	Cancel(ctx context.Context, id string) error
	Get(ctx context.Context, id string) (*Item, error)
	List(ctx context.Context, q ListQuery) (items []*Item, next string, err error)
	Requeue(ctx context.Context, id string, at, deadline time.Time) error
	Delete(ctx context.Context, id string) error
	Expire(ctx context.Context, finishedBefore time.Time, max int) (n int, err error)
	Stats(ctx context.Context) (Stats, error)
	Close() error
}

// ListQuery selects the items List returns.
type ListQuery struct {
	// Key is required: only this API key's items are listed.
	Key string
	// States, when not empty, keeps the items in one of them.
	States []State
	// Tags keeps the items that have every one of these tags with exactly this value.
	Tags map[string]string
	// Recipient, when not empty, keeps the items with this recipient (an address as
	// mailaddr.Key gives it: Recipients holds it so).
	Recipient string
	// AcceptedFrom and AcceptedTo bound Accepted to [AcceptedFrom, AcceptedTo); the
	// zero time leaves that side unbounded.
	AcceptedFrom, AcceptedTo time.Time
	// Limit is the most items returned, 1 to MaxListLimit; 0 means DefaultListLimit.
	Limit int
	// PageToken is "" for the first page, else the next of the call before (with the
	// same query).
	PageToken string
}

const (
	// DefaultListLimit is a ListQuery's Limit when it is 0.
	DefaultListLimit = 100
	// MaxListLimit is the largest Limit List accepts.
	MaxListLimit = 1000
)

// Match reports whether it passes q's States, Tags and Recipient (not its Key or Accepted range,
// which an implementation applies with its index).
func (q *ListQuery) Match(it *Item) bool {
	if len(q.States) > 0 {
		ok := false
		for _, s := range q.States {
			ok = ok || s == it.State
		}
		if !ok {
			return false
		}
	}
	for k, v := range q.Tags {
		if got, ok := it.Tags[k]; !ok || got != v {
			return false
		}
	}
	return q.Recipient == "" || slices.Contains(it.Recipients, q.Recipient)
}

// ListCursor is a position in List's order: the item with this Accepted and ID. A
// page token is the cursor of its page's last item; the next page holds the items
// after it, that is older (or as old with a smaller ID).
type ListCursor struct {
	Accepted time.Time
	ID       string
}

// IsZero reports whether c is no position (the first page).
func (c ListCursor) IsZero() bool { return c.ID == "" }

// Token is c as a page token.
func (c ListCursor) Token() string {
	b := binary.BigEndian.AppendUint64(nil, uint64(c.Accepted.UnixNano()))
	return base64.RawURLEncoding.EncodeToString(append(b, c.ID...))
}

// CheckListQuery returns why List must refuse q (wrapping ErrInvalid, naming the
// field), or the cursor q.PageToken holds (zero for the first page). It sets a zero
// Limit to DefaultListLimit. Implementations call it first.
func CheckListQuery(q *ListQuery) (ListCursor, error) {
	var p []string
	if q.Key == "" {
		p = append(p, "Key is empty")
	}
	for _, s := range q.States {
		if s < Queued || s > Unknown {
			p = append(p, fmt.Sprintf("States holds %v, not a state", s))
		}
	}
	if !q.AcceptedFrom.IsZero() && !q.AcceptedTo.IsZero() && !q.AcceptedTo.After(q.AcceptedFrom) {
		p = append(p, "AcceptedTo is not after AcceptedFrom")
	}
	switch {
	case q.Limit == 0:
		q.Limit = DefaultListLimit
	case q.Limit < 1 || q.Limit > MaxListLimit:
		p = append(p, fmt.Sprintf("Limit %d is not between 1 and %d", q.Limit, MaxListLimit))
	}
	var c ListCursor
	if q.PageToken != "" {
		b, err := base64.RawURLEncoding.DecodeString(q.PageToken)
		if err != nil || len(b) < 9 || strings.ContainsRune(string(b[8:]), 0) {
			p = append(p, "PageToken is malformed")
		} else {
			c = ListCursor{Accepted: time.Unix(0, int64(binary.BigEndian.Uint64(b))).UTC(), ID: string(b[8:])}
		}
	}
	if len(p) > 0 {
		return ListCursor{}, fmt.Errorf("%w: list: %s", ErrInvalid, strings.Join(p, "; "))
	}
	return c, nil
}

// Stats is what the queue holds that is not ended.
type Stats struct {
	// Queued counts the Queued items, delayed ones (NotBefore to come) included.
	Queued int
	// Due counts the Queued items whose NotBefore has come.
	Due int
	// Sending counts the items under a lease (lapsed or not).
	Sending int
	// OldestQueued is the Accepted of the oldest Queued or Sending item; zero if none.
	OldestQueued time.Time
}

// CheckRequeue returns why Requeue must refuse at and deadline (wrapping ErrInvalid),
// or nil.
func CheckRequeue(id string, at, deadline time.Time) error {
	if !deadline.After(at) {
		return fmt.Errorf("%w: requeue %s: deadline %s is not after at %s", ErrInvalid, id,
			deadline.Format(time.RFC3339Nano), at.Format(time.RFC3339Nano))
	}
	return nil
}

// CheckExpire returns why Expire must refuse max (wrapping ErrInvalid), or nil.
func CheckExpire(max int) error {
	if max < 1 {
		return fmt.Errorf("%w: expire: max %d is not positive", ErrInvalid, max)
	}
	return nil
}

var (
	// ErrInvalid: the call's arguments break the contract (the error says which).
	ErrInvalid = errors.New("invalid queue request")
	// ErrExists: Enqueue was given an ID the queue already holds.
	ErrExists = errors.New("queue item exists")
	// ErrNotFound: no item has this ID.
	ErrNotFound = errors.New("queue item not found")
	// ErrEmpty: Lease found nothing ready that the predicate accepts.
	ErrEmpty = errors.New("no queue item ready")
	// ErrStaleLease: the lease is no longer the item's current lease.
	ErrStaleLease = errors.New("queue lease is stale")
	// ErrNotCancelable: the item is leased or already ended.
	ErrNotCancelable = errors.New("queue item cannot be canceled")
	// ErrNotRequeueable: Requeue was given an item that is Sent, Queued or Sending.
	ErrNotRequeueable = errors.New("queue item cannot be requeued")
	// ErrLeased: Delete was given an item a worker holds (Sending).
	ErrLeased = errors.New("queue item is leased")
)

// StateError is an operation refused because of the item's state. It wraps the
// sentinel (ErrNotCancelable, ErrStaleLease, ErrNotRequeueable, ErrLeased) so
// errors.Is matches it.
type StateError struct {
	ID    string
	State State
	Err   error
}

func (e *StateError) Error() string {
	return fmt.Sprintf("%v: message %s is %s", e.Err, e.ID, e.State)
}

func (e *StateError) Unwrap() error { return e.Err }

// CheckNew returns why Enqueue must refuse it (wrapping ErrInvalid), or nil.
// Implementations call it first.
func CheckNew(it *Item) error {
	var p []string
	switch {
	case it == nil:
		return fmt.Errorf("%w: nil item", ErrInvalid)
	case it.ID == "":
		p = append(p, "ID is empty")
	case strings.ContainsRune(it.ID, 0):
		p = append(p, "ID holds a NUL byte")
	}
	switch {
	case it.Key == "":
		p = append(p, "Key is empty")
	case strings.ContainsRune(it.Key, 0):
		p = append(p, "Key holds a NUL byte")
	}
	switch {
	case it.Group.IsZero() || it.Group.Name == "":
		p = append(p, "Group is not set")
	case strings.HasPrefix(it.Group.Kind.String(), "GroupKind("):
		p = append(p, fmt.Sprintf("Group kind %d is not Mailbox, Backend or APIKey", int(it.Group.Kind)))
	case strings.ContainsRune(it.Group.Name, 0):
		p = append(p, "Group name holds a NUL byte")
	}
	if len(it.Body) == 0 {
		p = append(p, "Body is empty")
	}
	if !it.Deadline.After(it.NotBefore) {
		p = append(p, fmt.Sprintf("Deadline %s is not after NotBefore %s", it.Deadline.Format(time.RFC3339), it.NotBefore.Format(time.RFC3339)))
	}
	if it.State != 0 || len(it.Attempts) != 0 || it.LastError != "" || !it.Lease.IsZero() || !it.Finished.IsZero() || it.TakenOver {
		p = append(p, "State, Attempts, LastError, Lease, Finished and TakenOver are the queue's to set")
	}
	if len(p) > 0 {
		return fmt.Errorf("%w: item %q: %s", ErrInvalid, it.ID, strings.Join(p, "; "))
	}
	return nil
}
