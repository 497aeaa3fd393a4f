package mailstatus

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/mailgate/mailgate/mailerr"
)

// TestRoundTrip: what ToStatus writes, FromStatus reads back, from a status and from its
// REST JSON alike: kind, reason, message, field violations, retry delay, metadata. The
// cause stays behind.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	cause := errors.New("dial tcp 10.0.0.1:25: connection refused")
	tests := []*mailerr.Error{
		mailerr.Violations([]mailerr.FieldViolation{{Field: "to[0].address", Description: "not an address"}, {Field: "subject", Description: "too long"}}),
		{Kind: mailerr.Throttled, Msg: "slow down", RetryAfter: 1500 * time.Millisecond},
		mailerr.Wrap(mailerr.Unavailable, cause, "the store is unavailable").WithReason(mailerr.ReasonStoreUnavailable),
		{Kind: mailerr.Rejected, Msg: "refused", Metadata: map[string]string{mailerr.MetaSMTPReply: "550 5.7.64 TenantAttribution", mailerr.MetaSMTPCommand: "RCPT TO"}},
	}
	for k := mailerr.Internal; k <= mailerr.DeadlineExceeded; k++ {
		tests = append(tests, mailerr.New(k, "an error of kind %v", k))
	}
	for _, want := range tests {
		t.Run(fmt.Sprintf("%v %s", want.Kind, want.Msg), func(t *testing.T) {
			t.Parallel()
			st := ToStatus(want)
			if st.Code() != want.Kind.GRPCCode() {
				t.Errorf("code %v, want %v", st.Code(), want.Kind.GRPCCode())
			}
			b, err := protojson.Marshal(st.Proto())
			if err != nil {
				t.Fatal(err)
			}
			fromJSON, ok := ParseJSON(b)
			if !ok {
				t.Fatalf("ParseJSON(%s) refused its own body", b)
			}
			for name, st := range map[string]*status.Status{"status": st, "JSON": fromJSON} {
				got := FromStatus(st)
				w := *want
				w.Reason, w.Err = want.ReasonOrDefault(), nil
				if !reflect.DeepEqual(got, &w) {
					t.Errorf("from the %s: %#v, want %#v", name, got, &w)
				}
			}
		})
	}
}

// TestFromErrorForeign: a status that mailgate's handlers did not write has no reason,
// and its class comes from its code alone; an error in the same process passes as it is.
func TestFromErrorForeign(t *testing.T) {
	t.Parallel()
	if e := FromError(status.Error(codes.Unavailable, "connection refused")); e.Reason != "" || e.Kind != mailerr.Unavailable {
		t.Errorf("transport error: %+v, want Unavailable without a reason", e)
	}
	other, _ := status.New(codes.PermissionDenied, "no").WithDetails(&errdetails.ErrorInfo{Reason: "SENDER_NOT_ALLOWED", Domain: "example.com"})
	if e := FromError(other.Err()); e.Reason != "" || e.Kind != mailerr.PermissionDenied {
		t.Errorf("another domain's ErrorInfo: %+v, want no reason", e)
	}
	local := mailerr.New(mailerr.KeyReused, "used before")
	if e := FromError(fmt.Errorf("send: %w", local)); e.Kind != mailerr.KeyReused || e.Reason != mailerr.ReasonKeyReused || e.Msg != local.Msg {
		t.Errorf("in-process error: %+v, want it with its kind's reason", e)
	}
	if FromError(nil) != nil {
		t.Error("FromError(nil) != nil")
	}
}

func TestParseJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, body string
		ok         bool
		reason     mailerr.Reason
	}{
		{"unknown detail skipped", `{"code":8,"message":"slow","details":[{"@type":"type.googleapis.com/example.Unknown","x":1},{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"THROTTLED","domain":"mailgate"}]}`, true, mailerr.ReasonThrottled},
		{"no details", `{"code":3,"message":"bad"}`, true, ""},
		{"code 0", `{"code":0,"message":"ok"}`, false, ""},
		{"code 17", `{"code":17,"message":"?"}`, false, ""},
		{"no message", `{"code":3}`, false, ""},
		{"another API's error", `{"error":{"code":"NotFound","message":"x"}}`, false, ""},
		{"not JSON", `<html>`, false, ""},
	}
	for _, tt := range tests {
		st, ok := ParseJSON([]byte(tt.body))
		if ok != tt.ok {
			t.Errorf("%s: ok %v, want %v", tt.name, ok, tt.ok)
			continue
		}
		if ok {
			if e := FromStatus(st); e.Reason != tt.reason {
				t.Errorf("%s: reason %q, want %q", tt.name, e.Reason, tt.reason)
			}
		}
	}
}

// TestToStatusEscapes: text quoting the caller's input is fit for a status, so the
// details survive.
func TestToStatusEscapes(t *testing.T) {
	t.Parallel()
	e := mailerr.Violations([]mailerr.FieldViolation{{Field: "headers[X-\xff]", Description: "M\xfcller"}})
	e.Metadata = map[string]string{mailerr.MetaSMTPReply: "550 caf\xe9"}
	st := ToStatus(e)
	if _, err := protojson.Marshal(st.Proto()); err != nil {
		t.Fatalf("the status does not marshal: %v", err)
	}
	got := FromStatus(st)
	if got.Fields[0].Field != `headers[X-\xff]` || got.Fields[0].Description != `M\xfcller` || got.Metadata[mailerr.MetaSMTPReply] != `550 caf\xe9` {
		t.Errorf("escaped details %+v %v", got.Fields, got.Metadata)
	}
}

// TestErr: the error a handler returns is the status for gRPC, and the *mailerr.Error
// itself for a caller in the same process, with its cause (a decoded status has none),
// and its texts made fit as a status would carry them.
func TestErr(t *testing.T) {
	t.Parallel()
	e := mailerr.Wrap(mailerr.Canceled, context.Canceled, "caller for M\xfcller went away")
	err := Err(e)
	st, ok := status.FromError(err)
	if !ok || !proto.Equal(st.Proto(), ToStatus(e).Proto()) || err.Error() != ToStatus(e).Err().Error() {
		t.Errorf("status.FromError(Err(e)) = %v, %v; want ToStatus(e)", st, ok)
	}
	got := FromError(fmt.Errorf("wrapped: %w", err))
	if got.Err != e.Err || got.Kind != e.Kind || got.Reason != mailerr.ReasonCanceled || got.Msg != `caller for M\xfcller went away` {
		t.Errorf("FromError(Err(e)) = %#v, want e with its cause, reason and escaped message", got)
	}
	if errors.Is(err, context.Canceled) {
		t.Error("the cause is in Err(e)'s chain")
	}
}
