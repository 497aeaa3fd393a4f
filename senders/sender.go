// Package senders defines how mailgate hands a message to a delivery backend: the
// Sender interface, the Message every backend receives, and the Result it returns.
//
// One package per backend lives below this one (file, discard, and the Microsoft 365
// paths). Backends know nothing of gRPC, HTTP or Redis: they get a validated, routed
// Message and return a Result or a classified error (package mailerr).
package senders

import (
	"context"
	"log/slog"
)

// Sender delivers messages through one backend.
//
// Send returns a non-nil Result only when the backend has accepted the message: from then
// on mailgate tells the caller it was sent (Status Sent) or queued (Status Queued), so a
// backend must not return success for a message it may still lose.
//
// On failure Send returns an error that is, or wraps, a *mailerr.Error. Its Kind is the
// contract with the caller:
//   - Unavailable: nothing was delivered; the same message may be retried.
//   - OutcomeUnknown: the message may have been delivered (the connection broke after it
//     went out); it must not be retried without deduplication.
//   - Throttled: nothing was delivered; RetryAfter says when to try again.
//   - Rejected, PermissionDenied, Invalid, TooLarge: the backend refused the message
//     permanently; Metadata carries the remote code.
//
// An unclassified error is treated as Unavailable, so a backend that cannot tell whether
// its message went out must say OutcomeUnknown explicitly.
//
// Send must return promptly once ctx is done, and may be called from many goroutines at
// once. It must not modify msg.
type Sender interface {
	Send(ctx context.Context, msg *Message) (*Result, error)
}

// Status is what a backend did with an accepted message.
type Status int

const (
	// Sent means the message was handed over to Microsoft 365 (or the final destination).
	Sent Status = iota + 1
	// Queued means mailgate holds the message for later delivery.
	Queued
)

func (s Status) String() string {
	switch s {
	case Sent:
		return "SENT"
	case Queued:
		return "QUEUED"
	}
	return "UNKNOWN"
}

// Result describes an accepted message.
type Result struct {
	Status Status
	// Accepted lists the envelope recipients the backend took. When it is shorter than
	// Message.Recipients, Rejected says why the others were refused.
	Accepted []string
	Rejected []RecipientError
	// Remote is the backend's own reference (file name, queue id), for logs.
	Remote string
}

// RecipientError is one recipient the backend refused while accepting the others.
type RecipientError struct {
	Recipient string
	Reply     string
}

// Config is a backend's settings, as decoded from its section of the configuration file.
// Each backend package provides one.
type Config interface {
	// Validate checks the settings. An error names the offending field by its YAML name
	// ("dir: required"), so the caller can prefix the path of the section.
	Validate() error
	// Open builds the backend. It is called once, after Validate succeeded.
	Open(env Env) (Sender, error)
}

// RouteChecker is implemented by a backend's Config when some routes cannot work with
// it. CheckRoute is given a route's From pattern (an address, *@domain or *) and its
// mailbox ("" when it has none); each error names the route field it is about, by its
// YAML name ("mailbox: ..."), so that the configuration is refused before it is used.
type RouteChecker interface {
	CheckRoute(match, mailbox string) []error
}

// Env is what mailgate gives a backend when it opens it.
type Env struct {
	// Name is the backend's name in the configuration.
	Name   string
	Logger *slog.Logger
}

// Log is the backend's logger; one that discards when Logger is nil.
func (e Env) Log() *slog.Logger {
	if e.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return e.Logger
}

// Scope says what Microsoft 365 counts a backend's messages against.
type Scope int

const (
	// ScopeMailbox: the backend sends as a mailbox (Graph, SMTP AUTH). Exchange Online's
	// per-mailbox limits apply, and a throttle from Microsoft pauses that mailbox.
	ScopeMailbox Scope = iota
	// ScopeBackend: the backend is a server relaying into the tenant (relay, Direct
	// Send). No mailbox is involved; Microsoft throttles the sending address, so a
	// throttle pauses the whole backend.
	ScopeBackend
)

// Scoped is implemented by backends whose Scope is not ScopeMailbox, the default.
type Scoped interface {
	Scope() Scope
}
