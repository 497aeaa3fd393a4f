package mailerr

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
)

// Every kind must survive the trip through a status (code + reason) and back, or the REST
// gateway and the SMTP shim would answer with another class than the service meant.
func TestKindRoundTrip(t *testing.T) {
	t.Parallel()
	for k := Internal; k <= DeadlineExceeded; k++ {
		if got := KindOf(k.GRPCCode(), k.Reason()); got != k {
			t.Errorf("KindOf(%v, %q) = %v, want %v", k.GRPCCode(), k.Reason(), got, k)
		}
	}
}

func TestTable(t *testing.T) {
	t.Parallel()
	// docs/api.md#errors, row by row.
	tests := []struct {
		kind Kind
		grpc codes.Code
		http int
		smtp string
	}{
		{Unauthenticated, codes.Unauthenticated, 401, "535 5.7.8"},
		{PermissionDenied, codes.PermissionDenied, 403, "550 5.7.1"},
		{Invalid, codes.InvalidArgument, 400, "554 5.6.0"},
		{TooLarge, codes.InvalidArgument, 413, "552 5.3.4"},
		{Throttled, codes.ResourceExhausted, 429, "451 4.7.0"},
		{InFlight, codes.Aborted, 409, "451 4.3.0"},
		{KeyReused, codes.FailedPrecondition, 422, "554 5.6.0"},
		{Unavailable, codes.Unavailable, 503, "451 4.4.1"},
		{Rejected, codes.FailedPrecondition, 422, "554 5.0.0"},
	}
	for _, tt := range tests {
		if got := tt.kind.GRPCCode(); got != tt.grpc {
			t.Errorf("%v: gRPC %v, want %v", tt.kind, got, tt.grpc)
		}
		if got := tt.kind.HTTPStatus(); got != tt.http {
			t.Errorf("%v: HTTP %d, want %d", tt.kind, got, tt.http)
		}
		if got := tt.kind.SMTPReply().String(); got != tt.smtp {
			t.Errorf("%v: SMTP %s, want %s", tt.kind, got, tt.smtp)
		}
	}
}

func TestKindOfForeignStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code   codes.Code
		reason Reason
		want   Kind
	}{
		{codes.InvalidArgument, "", Invalid},
		{codes.PermissionDenied, "SENDER_NOT_ALLOWED", PermissionDenied},
		{codes.PermissionDenied, "NO_ROUTE", PermissionDenied},
		{codes.FailedPrecondition, "IDEMPOTENCY_KEY_REUSED", KeyReused},
		{codes.FailedPrecondition, "", Rejected},
		// A reason paired with the wrong code is not trusted.
		{codes.Unavailable, "MESSAGE_TOO_LARGE", Unavailable},
		{codes.Unknown, "", Internal},
		// gRPC's own "received message larger than max" must not read as throttling.
		{codes.ResourceExhausted, "", TooLarge},
		{codes.ResourceExhausted, "THROTTLED", Throttled},
	}
	for _, tt := range tests {
		if got := KindOf(tt.code, tt.reason); got != tt.want {
			t.Errorf("KindOf(%v, %q) = %v, want %v", tt.code, tt.reason, got, tt.want)
		}
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	classified := New(Throttled, "slow down")
	if got := Classify(fmt.Errorf("wrapped: %w", classified), Internal); got != classified {
		t.Errorf("Classify(wrapped) = %v, want the classified error", got)
	}
	if got := Classify(errors.New("boom"), Unavailable); got.Kind != Unavailable || got.Msg == "" {
		t.Errorf("Classify(unclassified) = %+v, want Unavailable with a message", got)
	}
	if got := Classify(fmt.Errorf("send: %w", context.DeadlineExceeded), Unavailable); got.Kind != DeadlineExceeded {
		t.Errorf("Classify(deadline) = %v, want DeadlineExceeded", got.Kind)
	}
	if Classify(nil, Internal) != nil {
		t.Error("Classify(nil) != nil")
	}
}

func TestViolationsMessage(t *testing.T) {
	t.Parallel()
	var fields []FieldViolation
	for i := range 7 {
		fields = append(fields, FieldViolation{Field: fmt.Sprintf("to[%d].address", i), Description: "bad"})
	}
	e := Violations(fields)
	if e.Kind != Invalid || len(e.Fields) != 7 {
		t.Fatalf("Violations = %+v", e)
	}
	if !strings.Contains(e.Msg, "to[0].address: bad") || !strings.Contains(e.Msg, "and 2 more") {
		t.Errorf("message %q should name the first fields and count the rest", e.Msg)
	}
}
