// Package mailerr classifies every failure mailgate can report, once, and maps each class
// to the gRPC code, HTTP status and SMTP reply that callers see.
//
// Backends, the service and the SMTP shim all speak in terms of Kind; the table in this
// package is the only place where a Kind becomes a wire code, and the reasons table the
// only place where a Reason gets its Kind. It imports only the gRPC codes enum, so
// backends can classify errors without knowing anything else of gRPC; the codec between
// an Error and a google.rpc.Status is the package mailstatus.
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
	// WrongState means the message's status does not allow the operation (canceling a
	// message that is being sent or has ended).
	WrongState
)

// Reply is an SMTP reply: the basic code and the RFC 3463 enhanced status code.
type Reply struct {
	Code     int
	Enhanced string
}

func (r Reply) String() string { return fmt.Sprintf("%d %s", r.Code, r.Enhanced) }

// The SMTP shim's own replies, for what it refuses before a request reaches the service.
// (A bad API key is Unauthenticated's reply, 535 5.7.8.)
var (
	// ReplyAuthRequired: MAIL without AUTH, from an address that is not a device's.
	ReplyAuthRequired = Reply{530, "5.7.0"}
	// ReplyAuthUnavailable: the API key could not be checked; the client may try again.
	ReplyAuthUnavailable = Reply{454, "4.7.0"}
	// ReplyTooManyConnections: over the shim's connection limits; the client may try
	// again later (RFC 5321 §3.8).
	ReplyTooManyConnections = Reply{421, "4.7.0"}
)

// Reason is an ErrorInfo reason: the name of a failure that callers match on in code.
// Every reason mailgate emits is a constant below and a row of the reasons table.
type Reason string

// The kinds' own reasons, each the default for errors of its kind.
const (
	ReasonInternal         Reason = "INTERNAL"
	ReasonInvalid          Reason = "INVALID_ARGUMENT"
	ReasonTooLarge         Reason = "MESSAGE_TOO_LARGE"
	ReasonUnauthenticated  Reason = "UNAUTHENTICATED"
	ReasonPermissionDenied Reason = "PERMISSION_DENIED"
	ReasonThrottled        Reason = "THROTTLED"
	ReasonInFlight         Reason = "IDEMPOTENCY_KEY_IN_FLIGHT"
	ReasonKeyReused        Reason = "IDEMPOTENCY_KEY_REUSED"
	ReasonUnavailable      Reason = "UNAVAILABLE"
	ReasonOutcomeUnknown   Reason = "OUTCOME_UNKNOWN"
	ReasonRejected         Reason = "BACKEND_REJECTED"
	ReasonNotFound         Reason = "NOT_FOUND"
	ReasonCanceled         Reason = "CANCELED"
	ReasonDeadlineExceeded Reason = "DEADLINE_EXCEEDED"
	ReasonWrongState       Reason = "WRONG_STATE"
)

// The reasons that say more than their kind's.
const (
	// ReasonSenderNotAllowed: the API key's senders do not match the From.
	ReasonSenderNotAllowed Reason = "SENDER_NOT_ALLOWED"
	// ReasonNoRoute: no route matches the From.
	ReasonNoRoute Reason = "NO_ROUTE"
	// ReasonSendAsDenied: the route's mailbox may not send as the From.
	ReasonSendAsDenied Reason = "SEND_AS_DENIED"
	// ReasonSenderDomainNotAccepted, ReasonRecipientDomainNotAccepted: a relay or Direct
	// Send backend's accepted domains exclude the From or a recipient.
	ReasonSenderDomainNotAccepted    Reason = "SENDER_DOMAIN_NOT_ACCEPTED"
	ReasonRecipientDomainNotAccepted Reason = "RECIPIENT_DOMAIN_NOT_ACCEPTED"
	// ReasonQueueUnavailable: mailgate's queue (its file, or Redis) did not take or give
	// the message.
	ReasonQueueUnavailable Reason = "QUEUE_UNAVAILABLE"
	// ReasonNotCancelable: the message is being sent or has ended.
	ReasonNotCancelable Reason = "NOT_CANCELABLE"
	// ReasonStoreUnavailable: mailgate's store (Redis) did not answer.
	ReasonStoreUnavailable Reason = "STORE_UNAVAILABLE"
	// ReasonServerBusy: the server holds as many request bytes as
	// limits.max_inflight_bytes allows.
	ReasonServerBusy Reason = "SERVER_BUSY"
	// ReasonBackendAuthFailed: a backend cannot authenticate to Microsoft 365, the
	// operator's problem, never the caller's UNAUTHENTICATED.
	ReasonBackendAuthFailed Reason = "BACKEND_AUTH_FAILED"
	// ReasonGraphRequestTooLarge: over Graph's 4 MB per request, even on the draft path.
	ReasonGraphRequestTooLarge Reason = "GRAPH_REQUEST_TOO_LARGE"
	// ReasonMailboxUnavailable: the sending mailbox is missing, unlicensed or full, the
	// operator's to fix.
	ReasonMailboxUnavailable Reason = "BACKEND_MAILBOX_UNAVAILABLE"
	// ReasonNoSuchEndpoint: the REST listener serves no such path.
	ReasonNoSuchEndpoint Reason = "NO_SUCH_ENDPOINT"
	// ReasonMethodNotAllowed: the REST listener serves the path, but not with this
	// method. It comes with UNIMPLEMENTED (HTTP 405), a code no kind has, so it has no
	// row in the reasons table: KindOf gives Internal for it.
	ReasonMethodNotAllowed Reason = "METHOD_NOT_ALLOWED"
)

// Metadata keys of ErrorInfo: what the remote server (Microsoft 365, or an SMTP server)
// answered.
const (
	// MetaSMTPReply is an SMTP backend's reply, such as "550 5.7.64 TenantAttribution;
	// Relay Access Denied".
	MetaSMTPReply = "smtpReply"
	// MetaSMTPCommand is the SMTP command the reply answered, such as "MAIL FROM".
	MetaSMTPCommand = "smtpCommand"
	// MetaGraphStatus is Graph's HTTP status.
	MetaGraphStatus = "graphStatus"
	// MetaGraphCode is Graph's error code, such as "ErrorSendAsDenied".
	MetaGraphCode = "graphCode"
	// MetaGraphRequestID is Graph's request-id, for Microsoft's support.
	MetaGraphRequestID = "graphRequestId"
)

// row is one line of the mapping table.
type row struct {
	reason Reason // default ErrorInfo reason
	grpc   codes.Code
	http   int
	smtp   Reply
}

// table is the one place where a class becomes a wire code. docs/api.md#errors shows it
// (TestAPIDocErrorTable keeps the two equal).
var table = [...]row{
	Internal:         {ReasonInternal, codes.Internal, http.StatusInternalServerError, Reply{451, "4.3.0"}},
	Invalid:          {ReasonInvalid, codes.InvalidArgument, http.StatusBadRequest, Reply{554, "5.6.0"}},
	TooLarge:         {ReasonTooLarge, codes.InvalidArgument, http.StatusRequestEntityTooLarge, Reply{552, "5.3.4"}},
	Unauthenticated:  {ReasonUnauthenticated, codes.Unauthenticated, http.StatusUnauthorized, Reply{535, "5.7.8"}},
	PermissionDenied: {ReasonPermissionDenied, codes.PermissionDenied, http.StatusForbidden, Reply{550, "5.7.1"}},
	Throttled:        {ReasonThrottled, codes.ResourceExhausted, http.StatusTooManyRequests, Reply{451, "4.7.0"}},
	InFlight:         {ReasonInFlight, codes.Aborted, http.StatusConflict, Reply{451, "4.3.0"}},
	KeyReused:        {ReasonKeyReused, codes.FailedPrecondition, http.StatusUnprocessableEntity, Reply{554, "5.6.0"}},
	Unavailable:      {ReasonUnavailable, codes.Unavailable, http.StatusServiceUnavailable, Reply{451, "4.4.1"}},
	OutcomeUnknown:   {ReasonOutcomeUnknown, codes.Unavailable, http.StatusServiceUnavailable, Reply{451, "4.4.2"}},
	Rejected:         {ReasonRejected, codes.FailedPrecondition, http.StatusUnprocessableEntity, Reply{554, "5.0.0"}},
	NotFound:         {ReasonNotFound, codes.NotFound, http.StatusNotFound, Reply{550, "5.1.0"}},
	Canceled:         {ReasonCanceled, codes.Canceled, 499, Reply{451, "4.3.0"}},
	DeadlineExceeded: {ReasonDeadlineExceeded, codes.DeadlineExceeded, http.StatusGatewayTimeout, Reply{451, "4.4.7"}},
	WrongState:       {ReasonWrongState, codes.FailedPrecondition, http.StatusConflict, Reply{554, "5.0.0"}},
}

func (k Kind) row() row {
	if int(k) < len(table) {
		return table[k]
	}
	return table[Internal]
}

// Reason is the kind's default ErrorInfo reason, e.g. "MESSAGE_TOO_LARGE".
func (k Kind) Reason() Reason { return k.row().reason }

// GRPCCode is the gRPC status code for the kind.
func (k Kind) GRPCCode() codes.Code { return k.row().grpc }

// HTTPStatus is the HTTP status for the kind.
func (k Kind) HTTPStatus() int { return k.row().http }

// SMTPReply is the reply the SMTP shim gives for the kind.
func (k Kind) SMTPReply() Reply { return k.row().smtp }

func (k Kind) String() string { return string(k.Reason()) }

// reasonTable is every reason mailgate emits beyond the kinds' own, with its kind: the
// one place a reason gets its class, so that a client of the API (the REST gateway, the
// SMTP shim in its own process) recovers the class from a status without guessing.
var reasonTable = [...]struct {
	Reason Reason
	Kind   Kind
}{
	{ReasonSenderNotAllowed, PermissionDenied},
	{ReasonNoRoute, PermissionDenied},
	{ReasonSendAsDenied, PermissionDenied},
	{ReasonSenderDomainNotAccepted, PermissionDenied},
	{ReasonRecipientDomainNotAccepted, PermissionDenied},
	{ReasonStoreUnavailable, Unavailable},
	{ReasonQueueUnavailable, Unavailable},
	{ReasonNotCancelable, WrongState},
	{ReasonServerBusy, Unavailable},
	{ReasonBackendAuthFailed, Unavailable},
	{ReasonGraphRequestTooLarge, TooLarge},
	{ReasonMailboxUnavailable, Unavailable},
	{ReasonNoSuchEndpoint, NotFound},
}

// KindOfReason is the kind of a reason mailgate emits; ok is false for any other reason
// (and for ReasonMethodNotAllowed, which has no kind).
func KindOfReason(r Reason) (kind Kind, ok bool) {
	for k := range table {
		if table[k].reason == r {
			return Kind(k), true
		}
	}
	for _, row := range reasonTable {
		if row.Reason == r {
			return row.Kind, true
		}
	}
	return Internal, false
}

// KindOf recovers the kind from a status: the ErrorInfo reason when mailgate set one, else
// the gRPC code alone (for errors raised outside mailgate's handlers, such as malformed
// JSON rejected by the gateway).
func KindOf(code codes.Code, reason Reason) Kind {
	if k, ok := KindOfReason(reason); ok && table[k].grpc == code {
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
	// Reason overrides the kind's default ErrorInfo reason (e.g. ReasonSenderNotAllowed).
	Reason Reason
	Msg    string
	// Fields lists the violations of an Invalid or TooLarge request.
	Fields []FieldViolation
	// RetryAfter is how long a Throttled caller should wait.
	RetryAfter time.Duration
	// Metadata goes into ErrorInfo; its keys are the Meta constants.
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
func (e *Error) ReasonOrDefault() Reason {
	if e.Reason != "" {
		return e.Reason
	}
	return e.Kind.Reason()
}

// Remote is what the remote server (Microsoft 365, or an SMTP server) answered, from the
// metadata: the SMTP reply, or Graph's status and error code; "" when the failure was not
// the remote's.
func (e *Error) Remote() string {
	switch {
	case e.Metadata[MetaSMTPReply] != "":
		return e.Metadata[MetaSMTPReply]
	case e.Metadata[MetaGraphStatus] != "":
		return strings.TrimSpace(e.Metadata[MetaGraphStatus] + " " + e.Metadata[MetaGraphCode])
	}
	return ""
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
func (e *Error) WithReason(reason Reason) *Error {
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

// Classify returns err's classification: the *Error in err's chain, or, for an
// unclassified error, a new *Error of kind fallback wrapping it, except for the context
// errors, which keep their own meaning. It returns nil only for a nil err.
func Classify(err error, fallback Kind) *Error {
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
	return Wrap(fallback, err, "%s", strings.ToLower(strings.ReplaceAll(string(fallback.Reason()), "_", " ")))
}
