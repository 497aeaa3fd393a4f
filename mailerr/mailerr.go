// Package mailerr classifies every failure mailgate can report, once, and maps each class
// to the gRPC code, HTTP status and SMTP reply that callers see.
//
// Backends, the service and the SMTP shim all speak in terms of Kind; the table in this
// package is the only place where a Kind becomes a wire code. It imports only the gRPC
// codes enum, so backends can classify errors without knowing anything else of gRPC.
package mailerr

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
)

// Domain is the ErrorInfo domain of every error mailgate returns.
const Domain = "mailgate"

// Kind is the class of a failure: what the caller may do about it.
type Kind uint8

const (
	// Internal is a bug or an unexpected failure inside mailgate.
	Internal Kind = iota
	// Invalid means the request is malformed; retrying it unchanged cannot succeed.
	Invalid
	// TooLarge means the message exceeds a size limit.
	TooLarge
	// Unauthenticated means no API key, or one mailgate does not know.
	Unauthenticated
	// PermissionDenied means the key may not send as this From, no route serves it, or
	// Microsoft 365 refused the Send As.
	PermissionDenied
	// Throttled means a rate limit (mailgate's or Microsoft's) refused the message; retry
	// after Error.RetryAfter.
	Throttled
	// InFlight means a request with the same idempotency key is still being processed.
	InFlight
	// KeyReused means the idempotency key was used before for a different request.
	KeyReused
	// Unavailable means a backend or mailgate's store failed temporarily; nothing was sent,
	// so a retry may succeed.
	Unavailable
	// OutcomeUnknown means the backend may or may not have accepted the message (the
	// connection broke after the message went out). Retry only with the same idempotency key.
	OutcomeUnknown
	// Rejected means the backend refused the message permanently.
	Rejected
	// NotFound means the requested record does not exist (or is not the caller's).
	NotFound
	// Canceled means the caller went away before the request finished.
	Canceled
	// DeadlineExceeded means the caller's deadline passed before the request finished.
	DeadlineExceeded
)

// Reply is an SMTP reply: the basic code and the RFC 3463 enhanced status code.
type Reply struct {
	Code     int
	Enhanced string
}

func (r Reply) String() string { return fmt.Sprintf("%d %s", r.Code, r.Enhanced) }

// row is one line of the mapping table.
type row struct {
	reason string // default ErrorInfo reason
	grpc   codes.Code
	http   int
	smtp   Reply
}

// table is the one place where a class becomes a wire code. docs/api.md#errors shows it
// (TestAPIDocErrorTable keeps the two equal).
var table = [...]row{
	Internal:         {"INTERNAL", codes.Internal, http.StatusInternalServerError, Reply{451, "4.3.0"}},
	Invalid:          {"INVALID_ARGUMENT", codes.InvalidArgument, http.StatusBadRequest, Reply{554, "5.6.0"}},
	TooLarge:         {"MESSAGE_TOO_LARGE", codes.InvalidArgument, http.StatusRequestEntityTooLarge, Reply{552, "5.3.4"}},
	Unauthenticated:  {"UNAUTHENTICATED", codes.Unauthenticated, http.StatusUnauthorized, Reply{535, "5.7.8"}},
	PermissionDenied: {"PERMISSION_DENIED", codes.PermissionDenied, http.StatusForbidden, Reply{550, "5.7.1"}},
	Throttled:        {"THROTTLED", codes.ResourceExhausted, http.StatusTooManyRequests, Reply{451, "4.7.0"}},
	InFlight:         {"IDEMPOTENCY_KEY_IN_FLIGHT", codes.Aborted, http.StatusConflict, Reply{451, "4.3.0"}},
	KeyReused:        {"IDEMPOTENCY_KEY_REUSED", codes.FailedPrecondition, http.StatusUnprocessableEntity, Reply{554, "5.6.0"}},
	Unavailable:      {"UNAVAILABLE", codes.Unavailable, http.StatusServiceUnavailable, Reply{451, "4.4.1"}},
	OutcomeUnknown:   {"OUTCOME_UNKNOWN", codes.Unavailable, http.StatusServiceUnavailable, Reply{451, "4.4.2"}},
	Rejected:         {"BACKEND_REJECTED", codes.FailedPrecondition, http.StatusUnprocessableEntity, Reply{554, "5.0.0"}},
	NotFound:         {"NOT_FOUND", codes.NotFound, http.StatusNotFound, Reply{550, "5.1.0"}},
	Canceled:         {"CANCELED", codes.Canceled, 499, Reply{451, "4.3.0"}},
	DeadlineExceeded: {"DEADLINE_EXCEEDED", codes.DeadlineExceeded, http.StatusGatewayTimeout, Reply{451, "4.4.7"}},
}

func (k Kind) row() row {
	if int(k) < len(table) {
		return table[k]
	}
	return table[Internal]
}

// Reason is the kind's default ErrorInfo reason, e.g. "MESSAGE_TOO_LARGE".
func (k Kind) Reason() string { return k.row().reason }

// GRPCCode is the gRPC status code for the kind.
func (k Kind) GRPCCode() codes.Code { return k.row().grpc }

// HTTPStatus is the HTTP status for the kind.
func (k Kind) HTTPStatus() int { return k.row().http }

// SMTPReply is the reply the SMTP shim gives for the kind.
func (k Kind) SMTPReply() Reply { return k.row().smtp }

func (k Kind) String() string { return k.Reason() }

// reasons maps every reason mailgate emits back to its kind, so that a client of the
// API (the REST gateway, the SMTP shim in its own process) recovers the class from a
// status without guessing.
var reasons = map[string]Kind{
	"SENDER_NOT_ALLOWED": PermissionDenied,
	"NO_ROUTE":           PermissionDenied,
	"SEND_AS_DENIED":     PermissionDenied,
	// A relay or Direct Send backend's accepted domains exclude the From or a recipient.
	"SENDER_DOMAIN_NOT_ACCEPTED":    PermissionDenied,
	"RECIPIENT_DOMAIN_NOT_ACCEPTED": PermissionDenied,
	"STORE_UNAVAILABLE":             Unavailable,
	// The server holds as many request bytes as limits.max_inflight_bytes allows.
	"SERVER_BUSY": Unavailable,
	// A backend that cannot authenticate to Microsoft 365: the operator's problem,
	// never the caller's UNAUTHENTICATED.
	"BACKEND_AUTH_FAILED":     Unavailable,
	"GRAPH_REQUEST_TOO_LARGE": TooLarge,
	// The sending mailbox is missing, unlicensed or full: the operator's to fix.
	"BACKEND_MAILBOX_UNAVAILABLE": Unavailable,
	// The REST listener serves no such path. (A wrong method, METHOD_NOT_ALLOWED, comes
	// with UNIMPLEMENTED, a code no kind has.)
	"NO_SUCH_ENDPOINT": NotFound,
}

func init() {
	for k := range table {
		reasons[table[k].reason] = Kind(k)
	}
}

// KindOf recovers the kind from a status: the ErrorInfo reason when mailgate set one, else
// the gRPC code alone (for errors raised outside mailgate's handlers, such as malformed
// JSON rejected by the gateway).
func KindOf(code codes.Code, reason string) Kind {
	if k, ok := reasons[reason]; ok && table[k].grpc == code {
		return k
	}
	switch code {
	case codes.InvalidArgument, codes.OutOfRange:
		return Invalid
	case codes.Unauthenticated:
		return Unauthenticated
	case codes.PermissionDenied:
		return PermissionDenied
	case codes.ResourceExhausted:
		// mailgate's throttling always carries its reason; without one, this is gRPC
		// refusing a message over its size limit before any handler ran.
		return TooLarge
	case codes.Aborted:
		return InFlight
	case codes.FailedPrecondition:
		return Rejected
	case codes.Unavailable:
		return Unavailable
	case codes.NotFound:
		return NotFound
	case codes.Canceled:
		return Canceled
	case codes.DeadlineExceeded:
		return DeadlineExceeded
	}
	return Internal
}

// FieldViolation names a request field and the rule it breaks. Field paths use the
// JSON (lowerCamelCase) names, e.g. "to[2].address".
type FieldViolation struct {
	Field       string
	Description string
}

// Error is a classified failure. Msg is written for the caller; Err, the cause, is for
// logs only and never reaches the caller.
type Error struct {
	Kind Kind
	// Reason overrides the kind's default ErrorInfo reason (e.g. "SENDER_NOT_ALLOWED").
	Reason string
	Msg    string
	// Fields lists the violations of an Invalid or TooLarge request.
	Fields []FieldViolation
	// RetryAfter is how long a Throttled caller should wait.
	RetryAfter time.Duration
	// Metadata goes into ErrorInfo (e.g. "smtpReply", "graphCode").
	Metadata map[string]string
	Err      error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// ReasonOrDefault is the ErrorInfo reason to report.
func (e *Error) ReasonOrDefault() string {
	if e.Reason != "" {
		return e.Reason
	}
	return e.Kind.Reason()
}

// New returns an error of the given kind with a caller-facing message.
func New(kind Kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// Wrap classifies cause. The message is for the caller; cause is kept for logs.
func Wrap(kind Kind, cause error, format string, args ...any) *Error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...), Err: cause}
}

// WithReason sets the ErrorInfo reason and returns e.
func (e *Error) WithReason(reason string) *Error {
	e.Reason = reason
	return e
}

// Violations builds an Invalid error (TooLarge when any violation is about size) from
// field violations; its message lists them.
func Violations(fields []FieldViolation) *Error {
	var b strings.Builder
	b.WriteString("invalid request: ")
	for i, f := range fields {
		if i > 0 {
			b.WriteString("; ")
		}
		if i == 5 {
			fmt.Fprintf(&b, "and %d more", len(fields)-i)
			break
		}
		b.WriteString(f.Field)
		b.WriteString(": ")
		b.WriteString(f.Description)
	}
	return &Error{Kind: Invalid, Msg: b.String(), Fields: fields}
}

// As returns err's classification. An unclassified error becomes fallback, except the
// context errors, which keep their own meaning.
func As(err error, fallback Kind) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	switch {
	case errors.Is(err, context.Canceled):
		return Wrap(Canceled, err, "request canceled")
	case errors.Is(err, context.DeadlineExceeded):
		return Wrap(DeadlineExceeded, err, "deadline exceeded")
	}
	return Wrap(fallback, err, "%s", strings.ToLower(strings.ReplaceAll(fallback.Reason(), "_", " ")))
}
