package shim

import (
	"strconv"
	"strings"

	"github.com/emersion/go-smtp"

	"github.com/mailgate/mailgate/mailerr"
)

// smtpReply is the SMTP reply for a SendMail error (decoded by mailstatus.FromError),
// from mailerr's one table; a backend's permanent refusal is passed on with the remote
// server's own 5xx code.
func smtpReply(e *mailerr.Error) *smtp.SMTPError {
	r := e.Kind.SMTPReply()
	if remote := e.Metadata[mailerr.MetaSMTPReply]; e.Kind == mailerr.Rejected && remote != "" {
		code, rest, _ := strings.Cut(remote, " ")
		enhanced, _, _ := strings.Cut(rest, " ")
		if n, err := strconv.Atoi(code); err == nil && n >= 500 && n < 600 && strings.HasPrefix(enhanced, "5.") {
			r = mailerr.Reply{Code: n, Enhanced: enhanced}
		}
	}
	text := e.Msg
	// mailgate's service always gives a reason; without one, the transport to a remote
	// mailgate wrote the error.
	if e.Reason == "" && e.Kind != mailerr.TooLarge && e.Kind != mailerr.Invalid {
		// A transport failure between the shim and a remote mailgate: its text names
		// hosts and ports, which are not the device's business.
		text = "mailgate is not reachable; try again later"
	}
	return replyError(r.Code, r.Enhanced, text)
}

// The shim's own replies where go-smtp would give a temporary code for the client's
// mistake, or the text of a read error (which names the socket's addresses).
var (
	// replyAuthSyntax: an AUTH response that does not parse for its mechanism, such as an
	// empty one. A permanent error (RFC 4954 §4), so the client does not send it again.
	replyAuthSyntax = replyError(501, "5.5.2", `Malformed AUTH response: PLAIN wants base64 of "\0user\0password", LOGIN the user name and then the password, each base64`)
	// replyIncomplete: the message could not be read to its end. The same text as the
	// reply go-smtp (patched, see third_party/go-smtp) gives for a BDAT chunk.
	replyIncomplete = replyError(451, "4.4.2", "The message was not received completely (the connection broke or timed out); send it again")
)

// replyError builds a reply; text is flattened to one line of bounded length, as SMTP
// replies are lines.
func replyError(code int, enhanced, text string) *smtp.SMTPError {
	return reply(mailerr.Reply{Code: code, Enhanced: enhanced}, text)
}

// reply is replyError for a reply of mailerr's table.
func reply(r mailerr.Reply, text string) *smtp.SMTPError {
	code, enhanced := r.Code, r.Enhanced
	text = strings.Join(strings.Fields(text), " ")
	if len(text) > 400 {
		text = text[:400] + "..."
	}
	e := &smtp.SMTPError{Code: code, Message: text}
	parts := strings.Split(enhanced, ".")
	if len(parts) == 3 {
		for i, p := range parts {
			e.EnhancedCode[i], _ = strconv.Atoi(p)
		}
	} else {
		e.EnhancedCode = smtp.EnhancedCodeNotSet
	}
	return e
}
