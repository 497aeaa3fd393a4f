package smtp

import (
	"errors"
	"net/textproto"
	"strconv"
	"testing"
	"time"

	"github.com/mailgate/mailgate/mailerr"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code   int
		msg    string
		kind   mailerr.Kind
		reason mailerr.Reason
		retry  time.Duration
		fix    bool
	}{
		{432, "4.3.2 Concurrent connections limit exceeded. Visit https://aka.ms/concurrent_sending for more information.", mailerr.Throttled, "", concurrencyPause, false},
		{421, "4.3.2 Service not available, closing transmission channel", mailerr.Throttled, "", serverBusyPause, false},
		{451, "4.7.500 Server busy. Please try again later from [192.0.2.1]. (S77719) [AS1]", mailerr.Throttled, "", ipThrottlePause, true},
		{451, "4.7.650 The mail server [192.0.2.1] has been temporarily rate limited due to IP reputation.", mailerr.Throttled, "", ipThrottlePause, true},
		{451, "4.7.850 Access denied, please try again later", mailerr.Unavailable, "", 0, false},
		{451, "4.4.4 Temporary server error", mailerr.Unavailable, "", 0, false},
		{554, "5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to process message", mailerr.Throttled, "", quotaPause, false},
		{535, "5.7.3 Authentication unsuccessful [SN2PR00CA0018.namprd00.prod.outlook.com]", mailerr.Unavailable, "BACKEND_AUTH_FAILED", 0, true},
		{535, "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.", mailerr.Unavailable, "BACKEND_AUTH_FAILED", 0, true},
		{550, "5.7.30 Basic authentication is not supported for Client Submission.", mailerr.Unavailable, "BACKEND_AUTH_FAILED", 0, true},
		{530, "5.7.57 Client not authenticated to send anonymous mail during MAIL FROM", mailerr.Unavailable, "BACKEND_AUTH_FAILED", 0, true},
		{550, "5.7.60 SMTP; Client does not have permissions to send as this sender", mailerr.PermissionDenied, "SEND_AS_DENIED", 0, true},
		{554, "5.2.252 SendAsDenied; a@contoso.com not allowed to send as b@contoso.com", mailerr.PermissionDenied, "SEND_AS_DENIED", 0, true},
		{554, "5.2.0 STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied", mailerr.PermissionDenied, "SEND_AS_DENIED", 0, true},
		{552, "5.3.4 Message size exceeds fixed maximum message size", mailerr.TooLarge, "", 0, false},
		{552, "5.2.2 mailbox full", mailerr.Unavailable, "BACKEND_MAILBOX_UNAVAILABLE", 0, true},
		{550, "5.2.2 Submission quota exceeded", mailerr.Throttled, "", quotaPause, false},
		{421, "4.7.66 TLS 1.0 and 1.1 are not supported. Please upgrade/update your client to support TLS 1.2.", mailerr.Unavailable, "", 0, true},
		{554, "5.2.2 mailbox full; STOREDRV.Submission.Exception:QuotaExceededException.MapiExceptionShutoffQuotaExceeded", mailerr.Unavailable, "BACKEND_MAILBOX_UNAVAILABLE", 0, true},
		{550, "5.7.64 TenantAttribution; Relay Access Denied", mailerr.Rejected, "", 0, true},
		{550, "5.7.68 TenantInboundAttribution; Direct Send not allowed for this organization from unauthorized sources", mailerr.Rejected, "", 0, true},
		{550, "5.7.54 SMTP; Unable to relay recipient in non-accepted domain", mailerr.Rejected, "", 0, true},
		{550, "5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup", mailerr.Rejected, "", 0, false},
		{554, "Transaction failed", mailerr.Rejected, "", 0, false}, // no enhanced code
	}
	for _, tt := range tests {
		r, ok := replyOf(&textproto.Error{Code: tt.code, Msg: tt.msg})
		if !ok {
			t.Fatalf("replyOf(%d %s) failed", tt.code, tt.msg)
		}
		e, fix := classify("mx.test", "MAIL FROM", r), OperatorFix(r, false)
		if e.Kind != tt.kind || e.Reason != tt.reason || e.RetryAfter != tt.retry || (fix != "") != tt.fix {
			t.Errorf("%d %s: got %v/%q retry %v fix %q; want %v/%q retry %v fix %v",
				tt.code, tt.msg, e.Kind, e.Reason, e.RetryAfter, fix, tt.kind, tt.reason, tt.retry, tt.fix)
		}
		if got, want := e.Metadata["smtpReply"], r.String(); got != want || want[:3] != strconv.Itoa(tt.code) {
			t.Errorf("%d %s: smtpReply = %q", tt.code, tt.msg, got)
		}
	}
}

func TestReplyOfMultiline(t *testing.T) {
	t.Parallel()
	r, ok := replyOf(&textproto.Error{Code: 550, Msg: "5.7.1 Unable to relay\n5.7.1 more text"})
	if !ok || r.Enhanced != "5.7.1" || r.Text != "Unable to relay 5.7.1 more text" {
		t.Errorf("replyOf = %+v, %v", r, ok)
	}
	if _, ok := replyOf(errors.New("connection reset")); ok {
		t.Error("replyOf accepted a non-SMTP error")
	}
}
