// Package mailstatus is mailgate's one error codec: it turns a *mailerr.Error into the
// google.rpc.Status that callers see, over gRPC, REST and the SMTP shim alike, and a
// status back into a *mailerr.Error.
//
// A status carries the kind's gRPC code, the caller-facing message, an ErrorInfo in
// mailgate's domain (the reason, and metadata such as mailerr.MetaSMTPReply), a
// BadRequest listing the field violations, and a RetryInfo with the retry delay. The
// cause of an error (Error.Err) is for logs and never goes into a status.
//
// It is a package of its own so that mailerr, which the backends import, needs nothing of
// gRPC but its codes; the server, the SMTP shim and the client import this one.
package mailstatus

import (
	"encoding/json"
	"errors"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/mailgate/mailgate/mailerr"
)

// ToStatus turns a classified error into the status callers see, with the kind's gRPC
// code. Every text in it is made fit to carry (see Text): without that, a byte that is
// not UTF-8 loses the details.
func ToStatus(e *mailerr.Error) *status.Status {
	return WithCode(e.Kind.GRPCCode(), e)
}

// WithCode is ToStatus with a code no kind has, such as UNIMPLEMENTED for
// mailerr.ReasonMethodNotAllowed.
func WithCode(code codes.Code, e *mailerr.Error) *status.Status {
	st := status.New(code, Text(e.Msg, MaxMessage))
	var metadata map[string]string
	if len(e.Metadata) > 0 {
		metadata = make(map[string]string, len(e.Metadata))
		for k, v := range e.Metadata {
			metadata[Text(k, MaxDetail)] = Text(v, MaxDetail)
		}
	}
	details := []protoadapt.MessageV1{&errdetails.ErrorInfo{
		Reason:   Text(string(e.ReasonOrDefault()), MaxDetail),
		Domain:   mailerr.Domain,
		Metadata: metadata,
	}}
	if len(e.Fields) > 0 {
		br := &errdetails.BadRequest{}
		for _, f := range e.Fields {
			br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{
				Field: Text(f.Field, MaxDetail), Description: Text(f.Description, MaxDetail),
			})
		}
		details = append(details, br)
	}
	if e.RetryAfter > 0 {
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(e.RetryAfter)})
	}
	withDetails, err := st.WithDetails(details...)
	if err != nil {
		return st // details are an aid; the code and message still say what happened
	}
	return withDetails
}

// Err is the error a handler returns for e. gRPC, the REST gateway and status.FromError
// see ToStatus(e) (through its GRPCStatus method); a caller in the same process, such as
// the SMTP shim, finds e itself with errors.As (FromError does), without decoding a
// status. The cause (e.Err) is not in its chain: errors.Is sees only what a status says.
func Err(e *mailerr.Error) error { return &statusError{e: e, st: ToStatus(e)} }

type statusError struct {
	e  *mailerr.Error
	st *status.Status
}

func (s *statusError) Error() string              { return s.st.Err().Error() }
func (s *statusError) GRPCStatus() *status.Status { return s.st }

// As lets errors.As find the *mailerr.Error.
func (s *statusError) As(target any) bool {
	if p, ok := target.(**mailerr.Error); ok {
		*p = s.e
		return true
	}
	return false
}

// FromStatus reads a status back into an error: the kind from the code and the reason
// (mailerr.KindOf), and the message, field violations, retry delay and metadata.
//
// Reason is empty when the status carries no ErrorInfo in mailgate's domain: then it
// did not come from mailgate's handlers but from gRPC, the gateway, or a transport in
// between. Err is nil: a status carries no cause.
func FromStatus(st *status.Status) *mailerr.Error {
	e := &mailerr.Error{Msg: st.Message()}
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			if d.GetDomain() == mailerr.Domain {
				e.Reason = mailerr.Reason(d.GetReason())
				if md := d.GetMetadata(); len(md) > 0 {
					e.Metadata = md
				}
			}
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				e.Fields = append(e.Fields, mailerr.FieldViolation{Field: v.GetField(), Description: v.GetDescription()})
			}
		case *errdetails.RetryInfo:
			e.RetryAfter = d.GetRetryDelay().AsDuration()
		}
	}
	e.Kind = mailerr.KindOf(st.Code(), e.Reason)
	return e
}

// FromError is FromStatus for any error a MailService call returns. An error that holds
// a *mailerr.Error (from a service in the same process) gives a copy of it as a status
// would carry it: its reason filled in, so that a caller tells mailgate's errors by a
// non-empty Reason either way, and its texts made fit (see Text). It returns nil for a
// nil err.
func FromError(err error) *mailerr.Error {
	if err == nil {
		return nil
	}
	var e *mailerr.Error
	if errors.As(err, &e) {
		c := *e
		c.Reason = mailerr.Reason(Text(string(e.ReasonOrDefault()), MaxDetail))
		c.Msg = Text(e.Msg, MaxMessage)
		if len(e.Fields) > 0 {
			c.Fields = make([]mailerr.FieldViolation, len(e.Fields))
			for i, f := range e.Fields {
				c.Fields[i] = mailerr.FieldViolation{Field: Text(f.Field, MaxDetail), Description: Text(f.Description, MaxDetail)}
			}
		}
		if len(e.Metadata) > 0 {
			c.Metadata = make(map[string]string, len(e.Metadata))
			for k, v := range e.Metadata {
				c.Metadata[Text(k, MaxDetail)] = Text(v, MaxDetail)
			}
		}
		return &c
	}
	return FromStatus(status.Convert(err))
}

// Detail type URLs of the REST error body.
const (
	typeErrorInfo  = "type.googleapis.com/google.rpc.ErrorInfo"
	typeBadRequest = "type.googleapis.com/google.rpc.BadRequest"
	typeRetryInfo  = "type.googleapis.com/google.rpc.RetryInfo"
)

// jsonStatus is a google.rpc.Status as the REST API writes it, read with encoding/json
// so that a detail of a type this build does not know is skipped, not an error.
type jsonStatus struct {
	Code    *int    `json:"code"`
	Message *string `json:"message"`
	Details []struct {
		Type            string            `json:"@type"`
		Reason          string            `json:"reason"`
		Domain          string            `json:"domain"`
		Metadata        map[string]string `json:"metadata"`
		FieldViolations []struct {
			Field       string `json:"field"`
			Description string `json:"description"`
		} `json:"fieldViolations"`
		RetryDelay string `json:"retryDelay"`
	} `json:"details"`
}

// ParseJSON reads a REST error body: a google.rpc.Status in JSON, with an error code (1
// to 16) and a message. Of its details it keeps the ErrorInfo, BadRequest and RetryInfo,
// the ones FromStatus reads. ok is false when body is not such a status: every error
// mailgate's REST listener writes has that shape, so the answer came from something else.
func ParseJSON(body []byte) (st *status.Status, ok bool) {
	var js jsonStatus
	if err := json.Unmarshal(body, &js); err != nil || js.Code == nil || js.Message == nil ||
		*js.Code <= int(codes.OK) || *js.Code > int(codes.Unauthenticated) {
		return nil, false
	}
	st = status.New(codes.Code(*js.Code), *js.Message)
	var details []protoadapt.MessageV1
	for _, d := range js.Details {
		switch d.Type {
		case typeErrorInfo:
			details = append(details, &errdetails.ErrorInfo{Reason: d.Reason, Domain: d.Domain, Metadata: d.Metadata})
		case typeBadRequest:
			br := &errdetails.BadRequest{}
			for _, v := range d.FieldViolations {
				br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: v.Field, Description: v.Description})
			}
			details = append(details, br)
		case typeRetryInfo:
			if delay, err := time.ParseDuration(d.RetryDelay); err == nil {
				details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(delay)})
			}
		}
	}
	if withDetails, err := st.WithDetails(details...); err == nil {
		st = withDetails
	}
	return st, true
}
