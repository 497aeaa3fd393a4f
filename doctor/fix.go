package doctor

import (
	"regexp"
	"strconv"
	"strings"

	"github.com/mailgate/mailgate/senders/smtp"
)

// reply is an SMTP reply.
type reply struct {
	Code     int
	Enhanced string // RFC 3463 class.subject.detail, "" when the server gave none
	Text     string // the rest, lines joined by spaces
}

var enhancedRE = regexp.MustCompile(`^([245])\.(\d{1,3})\.(\d{1,3})\b`)

func newReply(code int, msg string) reply {
	// Multi-line replies: the enhanced code is repeated on each line; keep the first.
	lines := strings.Split(msg, "\n")
	for i, l := range lines {
		if i > 0 {
			lines[i] = strings.TrimSpace(enhancedRE.ReplaceAllString(strings.TrimSpace(l), ""))
		}
	}
	text := strings.Join(strings.Fields(strings.Join(lines, " ")), " ")
	r := reply{Code: code, Text: text}
	if m := enhancedRE.FindString(text); m != "" {
		r.Enhanced, r.Text = m, strings.TrimSpace(text[len(m):])
	}
	return r
}

func (r reply) String() string {
	s := strconv.Itoa(r.Code)
	if r.Enhanced != "" {
		s += " " + r.Enhanced
	}
	if r.Text != "" {
		s += " " + r.Text
	}
	return s
}

// replyFix is the operator's fix for a refusal, or "" when the reply says it all. auth
// is "xoauth2" or "login" when the reply answers an AUTH. The backends' own fixes come
// first (one table, in senders/smtp); the rest are hints only a diagnosis needs.
func replyFix(r reply, auth string) string {
	if fix := smtp.OperatorFix(r.Code, strings.TrimSpace(r.Enhanced+" "+r.Text), auth == "login"); fix != "" {
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
