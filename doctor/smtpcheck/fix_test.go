package smtpcheck

import (
	"strings"
	"testing"
)

func TestReplyFix(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code       int
		msg, auth  string
		enh, fixed string
	}{
		{535, "5.7.3 Authentication unsuccessful [X]", "xoauth2", "5.7.3", "SMTP.SendAsApp"},
		{535, "5.7.3 Authentication unsuccessful", "login", "5.7.3", "password"},
		{535, "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.", "xoauth2", "5.7.139", "Set-CASMailbox"},
		{550, "5.7.30 Basic authentication is not supported for Client Submission.", "login", "5.7.30", "auth: xoauth2"},
		{530, "5.7.57 Client not authenticated to send anonymous mail during MAIL FROM", "", "5.7.57", "MX endpoint"},
		{421, "4.7.66 TLS 1.0 and 1.1 are not supported.\n4.7.66 Please upgrade", "", "4.7.66", "downgrading"},
		{451, "4.7.500 Access denied, please try again later", "", "4.7.500", "throttles"},
		{432, "4.3.2 Concurrent connections limit exceeded.", "xoauth2", "4.3.2", "max_connections"},
		{550, "5.7.1 Unable to relay", "", "5.7.1", "inbound connector"},
		{550, "5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found", "", "5.1.10", "--rcpt"},
	}
	for _, tt := range tests {
		r := newReply(tt.code, tt.msg)
		if r.Enhanced != tt.enh || strings.Contains(r.Text, "4.7.66 ") {
			t.Errorf("newReply(%d, %q) = %+v", tt.code, tt.msg, r)
		}
		if fix := replyFix(r, tt.auth); !strings.Contains(fix, tt.fixed) {
			t.Errorf("replyFix(%s) = %q, want it to mention %q", r, fix, tt.fixed)
		}
	}
}
