package server

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/mailgate/mailgate/mailerr"
)

// toStatus turns a classified error into the gRPC status callers see: the kind's code,
// the caller-facing message, and ErrorInfo, BadRequest and RetryInfo details. The cause
// (e.Err) stays in the log. This is where every mailgate error becomes a status, for
// gRPC and REST alike, so it is here that the text quoting callers' input is made fit to
// carry (errorText): without that, a byte that is not UTF-8 loses the details.
func toStatus(e *mailerr.Error) *status.Status {
	st := status.New(e.Kind.GRPCCode(), errorText(e.Msg, maxErrorMessage))
	var metadata map[string]string
	if len(e.Metadata) > 0 {
		metadata = make(map[string]string, len(e.Metadata))
		for k, v := range e.Metadata {
			metadata[errorText(k, maxErrorDetail)] = errorText(v, maxErrorDetail)
		}
	}
	details := []protoadapt.MessageV1{&errdetails.ErrorInfo{
		Reason:   errorText(e.ReasonOrDefault(), maxErrorDetail),
		Domain:   mailerr.Domain,
		Metadata: metadata,
	}}
	if len(e.Fields) > 0 {
		br := &errdetails.BadRequest{}
		for _, f := range e.Fields {
			br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{
				Field: errorText(f.Field, maxErrorDetail), Description: errorText(f.Description, maxErrorDetail),
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

// statusKind recovers the class, the ErrorInfo reason (the kind's own when mailgate set
// none) and the retry delay of a status returned by the service (or raised by the gateway
// or gRPC itself).
func statusKind(st *status.Status) (kind mailerr.Kind, reason string, retry time.Duration) {
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			if d.GetDomain() == mailerr.Domain {
				reason = d.GetReason()
			}
		case *errdetails.RetryInfo:
			retry = d.GetRetryDelay().AsDuration()
		}
	}
	kind = mailerr.KindOf(st.Code(), reason)
	if reason == "" {
		reason = kind.Reason()
	}
	return kind, reason, retry
}

// remoteCode is what Microsoft 365 (or the SMTP server) answered, from a status's
// ErrorInfo: the SMTP reply, or Graph's status and error code; "" when the failure was
// not the remote's.
func remoteCode(st *status.Status) string {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == mailerr.Domain {
			md := info.GetMetadata()
			switch {
			case md["smtpReply"] != "":
				return md["smtpReply"]
			case md["graphStatus"] != "":
				return strings.TrimSpace(md["graphStatus"] + " " + md["graphCode"])
			}
		}
	}
	return ""
}

// retryAfterSeconds renders a delay as an HTTP Retry-After value: whole seconds, rounded
// up, at least 1.
func retryAfterSeconds(d time.Duration) string {
	s := int64(math.Ceil(d.Seconds()))
	if s < 1 {
		s = 1
	}
	return strconv.FormatInt(s, 10)
}

// gatewayErrorHandler writes REST errors from the same table as gRPC: the status body
// (code, message, details) with the HTTP status of the error's class, 422 where gRPC
// has no equivalent, and Retry-After on 429.
func gatewayErrorHandler(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	if state := restStateFrom(r.Context()); state != nil {
		switch {
		case state.exceeded:
			err = toStatus(tooLargeBody(state.max)).Err()
		case state.busyErr != nil:
			writeError(w, state.busyErr)
			return
		case state.decodeErr != nil:
			err = toStatus(state.decodeErr).Err()
		}
	}
	var httpErr *runtime.HTTPStatusError
	if errors.As(err, &httpErr) {
		writeStatus(w, httpErr.HTTPStatus, status.Convert(httpErr.Err))
		return
	}
	st := status.Convert(err)
	kind, _, retry := statusKind(st)
	if st.Code() == codes.InvalidArgument && len(st.Details()) == 0 {
		// The gateway's own decoding errors: give them the reason callers can match on.
		st = toStatus(&mailerr.Error{Kind: mailerr.Invalid, Msg: "request body: " + st.Message()})
	}
	if kind == mailerr.Throttled || retry > 0 {
		w.Header().Set("Retry-After", retryAfterSeconds(retry))
	}
	writeStatus(w, kind.HTTPStatus(), st)
}

// writeStatus answers a REST request with st as the documented JSON error body.
func writeStatus(w http.ResponseWriter, httpStatus int, st *status.Status) {
	p := st.Proto()
	// The gateway's own errors, and the routing errors, did not come through toStatus.
	p.Message = errorText(p.GetMessage(), maxErrorMessage)
	buf, err := protojson.Marshal(p)
	if err != nil {
		buf = fallbackStatusJSON(st, p.GetMessage())
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(httpStatus)
	w.Write(buf)
}

// fallbackStatusJSON is the error body for a status whose details protojson cannot write
// (a detail of a type it does not know): the code, the message and an ErrorInfo, without
// the other details. encoding/json cannot fail on these, so a REST error is always the
// documented JSON, never net/http's plain text.
func fallbackStatusJSON(st *status.Status, msg string) []byte {
	_, reason, _ := statusKind(st)
	type errorInfo struct {
		Type   string `json:"@type"`
		Reason string `json:"reason"`
		Domain string `json:"domain"`
	}
	b, _ := json.Marshal(struct {
		Code    int32       `json:"code"`
		Message string      `json:"message"`
		Details []errorInfo `json:"details"`
	}{
		Code:    int32(st.Code()),
		Message: msg,
		Details: []errorInfo{{"type.googleapis.com/google.rpc.ErrorInfo", errorText(reason, maxErrorDetail), mailerr.Domain}},
	})
	return b
}
