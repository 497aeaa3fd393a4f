package smtpcheck

import (
	"strings"

	"github.com/mailgate/mailgate/senders/smtp"
)

// newReply reads a reply as the doctor's client got it. A multi-line reply repeats its
// enhanced code on each line; the report shows it once.
func newReply(code int, msg string) smtp.Reply {
	lines := strings.Split(msg, "\n")
	first := smtp.ParseReply(code, lines[0])
	if first.Enhanced != "" {
		for i := 1; i < len(lines); i++ {
			lines[i] = strings.TrimPrefix(strings.TrimSpace(lines[i]), first.Enhanced+" ")
		}
	}
	return smtp.ParseReply(code, strings.Join(lines, "\n"))
}

// replyFix is the operator's fix for a refusal, or "" when the reply says it all. auth
// is "xoauth2" or "login" when the reply answers an AUTH. The backends' own fixes come
// first (one table, in senders/smtp); the rest are hints only a diagnosis needs.
func replyFix(r smtp.Reply, auth string) string {
	if fix := smtp.OperatorFix(r, auth == "login"); fix != "" {
		return fix
	}
	switch {
	case r.Code == 421:
		return "the server closed the session (busy or shutting down): try again in a minute"
	case r.Code == 432 || r.Enhanced == "4.3.2" && r.Code/100 == 4:
		return "more than 3 sessions for the mailbox: other programs sign in as the same mailbox, or replicas × max_connections is over 3; lower max_connections"
	case r.Code/100 == 4:
		return "a temporary refusal: try again later; if it persists, the reply says why"
	case r.Enhanced == "5.1.10" || strings.Contains(r.Text, "RecipientNotFound"):
		return "the recipient does not exist in the tenant: give an existing mailbox of an accepted domain with --rcpt"
	}
	return ""
}
