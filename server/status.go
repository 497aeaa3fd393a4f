package server

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/mailgate/mailgate/mailerr"
	"github.com/mailgate/mailgate/mailerr/mailstatus"
)

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
			err = mailstatus.Err(tooLargeBody(state.max))
		case state.busyErr != nil:
			writeError(w, state.busyErr)
			return
		case state.decodeErr != nil:
			err = mailstatus.Err(state.decodeErr)
		}
	}
	var httpErr *runtime.HTTPStatusError
	if errors.As(err, &httpErr) {
		writeStatus(w, httpErr.HTTPStatus, status.Convert(httpErr.Err))
		return
	}
	st := status.Convert(err)
	e := mailstatus.FromStatus(st)
	if st.Code() == codes.InvalidArgument && len(st.Details()) == 0 {
		// The gateway's own decoding errors: give them the reason callers can match on.
		st = mailstatus.ToStatus(&mailerr.Error{Kind: mailerr.Invalid, Msg: "request body: " + st.Message()})
	}
	if e.Kind == mailerr.Throttled || e.RetryAfter > 0 {
		w.Header().Set("Retry-After", retryAfterSeconds(e.RetryAfter))
	}
	writeStatus(w, e.Kind.HTTPStatus(), st)
}

// writeStatus answers a REST request with st as the documented JSON error body.
func writeStatus(w http.ResponseWriter, httpStatus int, st *status.Status) {
	p := st.Proto()
	// The gateway's own errors did not come through mailstatus.ToStatus.
	p.Message = mailstatus.Text(p.GetMessage(), mailstatus.MaxMessage)
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
	reason := mailstatus.FromStatus(st).ReasonOrDefault()
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
		Details: []errorInfo{{"type.googleapis.com/google.rpc.ErrorInfo", mailstatus.Text(string(reason), mailstatus.MaxDetail), mailerr.Domain}},
	})
	return b
}
