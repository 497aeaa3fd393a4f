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
	"errors"
	"fmt"
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

	// MessageID is the RFC 5322 Message-ID the caller was told.
	MessageID string
	// From is the From address.
	From string
	// Route is the route's name.
	Route string
	// Tags are the request's tags.
	Tags map[string]string

	// Set by the queue; Enqueue refuses an item with any of them set.

	// Finished is when the item entered a terminal state; zero otherwise.
	Finished time.Time

	// State is the item's state.
	State State
	// Attempts are the worker's attempts, oldest first.
	Attempts []Attempt
	// LastError is the last attempt's error text, or why a lease was taken over.
	LastError string
	// Lease is the current lease while the item is Sending; zero otherwise.
	Lease Lease
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
// Enqueue stores a new item in state Queued. When it returns nil the item is durable:
// it survives the process being killed (and, for the spool, a power cut once the disk
// has acknowledged the write; for Redis, what its persistence settings keep). On error
// the item may or may not have been stored; the caller must not answer QUEUED, and may
// retry with the same ID (ErrExists then means the first call stored it). Enqueue
// refuses with ErrInvalid an item without ID, Key, Group or Body, with a Deadline not
// after NotBefore, or with State, Attempts, LastError or Lease set. ErrExists: the ID
// is taken.
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
// Get returns a copy of the item, Body included, in any state: terminal items are kept
// (their removal after a retention is the next slice's). ErrNotFound when there is none.
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
	Close() error
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
)

// StateError is an operation refused because of the item's state. It wraps the
// sentinel (ErrNotCancelable, ErrStaleLease) so errors.Is matches it.
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
	if it.Key == "" {
		p = append(p, "Key is empty")
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
	if it.State != 0 || len(it.Attempts) != 0 || it.LastError != "" || !it.Lease.IsZero() {
		p = append(p, "State, Attempts, LastError and Lease are the queue's to set")
	}
	if len(p) > 0 {
		return fmt.Errorf("%w: item %q: %s", ErrInvalid, it.ID, strings.Join(p, "; "))
	}
	return nil
}
