// Package senders defines how mailgate hands a message to a delivery backend: the
// Sender interface, the Message every backend receives, and the Result it returns.
//
// One package per backend lives below this one (file, discard, and the Microsoft 365
// paths). Backends know nothing of gRPC, HTTP or Redis: they get a validated, routed
// Message and return a Result or a classified error (package mailerr). Each exports
// its Type: the settings its configuration section decodes into, which open the
// Sender. The program lists the types it knows (package app); there is no global list.
package senders

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
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
//
// Scope says what Microsoft 365 counts the backend's messages against; it does not
// change while the Sender is open.
//
// Concurrency is how many sends Microsoft 365 allows at once for one mailbox of a
// ScopeMailbox backend (3 SMTP AUTH sessions, 4 Graph requests); 0 is no limit. The
// queue's workers hold each mailbox to it across replicas.
//
// Close releases what the backend holds (pooled connections, timers). It is called
// once, after the last Send has returned.
//
// A backend embeds SenderDefaults for the usual Scope (ScopeMailbox), no concurrency
// limit and a Close with nothing to release.
type Sender interface {
	Send(ctx context.Context, msg *Message) (*Result, error)
	Scope() Scope
	Concurrency() int
	Close() error
}

// SenderDefaults gives a Sender embedding it ScopeMailbox, no concurrency limit and a
// Close that does nothing.
type SenderDefaults struct{}

// Scope implements Sender: ScopeMailbox.
func (SenderDefaults) Scope() Scope { return ScopeMailbox }

// Concurrency implements Sender: no limit.
func (SenderDefaults) Concurrency() int { return 0 }

// Close implements Sender: nothing to release.
func (SenderDefaults) Close() error { return nil }

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
// Each backend package provides one, and a Type that makes it.
//
// Validate checks the settings. Each error is, or wraps, a *FieldError naming the
// offending field by its YAML name ("dir"), so the caller can prefix the path of the
// section; errors.Join joins several.
//
// CheckRoute is given a route's From pattern (an address, *@domain or *) and its mailbox
// ("" when it has none), and returns the reasons the route cannot work with this backend:
// each a *FieldError naming the route field it is about ("mailbox"), so that the
// configuration is refused before it is used.
//
// Scope is the Scope of the backend Open builds, known before it is opened.
//
// Open builds the backend. It is called once, after Validate succeeded.
//
// A Config embeds ConfigDefaults for a CheckRoute that takes every route and
// ScopeMailbox.
type Config interface {
	Validate() error
	CheckRoute(match, mailbox string) []error
	Scope() Scope
	Open(env Env) (Sender, error)
}

// ConfigDefaults gives a Config embedding it a CheckRoute that takes every route, and
// ScopeMailbox.
type ConfigDefaults struct{}

// CheckRoute implements Config: every route works.
func (ConfigDefaults) CheckRoute(match, mailbox string) []error { return nil }

// Scope implements Config: ScopeMailbox.
func (ConfigDefaults) Scope() Scope { return ScopeMailbox }

// FieldError is a problem with one field of a backend's settings, or of a route to it.
type FieldError struct {
	// Field is the YAML name, relative to the section: "dir", "send_as[2]".
	Field string
	Err   error
}

// Fieldf returns a *FieldError for field, its message formatted as by fmt.Errorf (so
// %w wraps).
func Fieldf(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Err: fmt.Errorf(format, args...)}
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }

func (e *FieldError) Unwrap() error { return e.Err }

// Type is a kind of backend: what a configuration's `type:` names.
type Type struct {
	Name string
	// NewConfig returns empty settings for a section of this type to be decoded into.
	NewConfig func() Config
}

// Types are the backend types a program knows, by name. The program builds its own
// (there is no global list): adding a backend is its package and one entry.
type Types map[string]Type

// NewTypes returns the Types of ts.
func NewTypes(ts ...Type) Types {
	m := make(Types, len(ts))
	for _, t := range ts {
		m[t.Name] = t
	}
	return m
}

// Names are the type names, sorted.
func (t Types) Names() []string {
	names := make([]string, 0, len(t))
	for n := range t {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
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
