package shim

import (
	"strconv"
	"strings"

	"github.com/emersion/go-smtp"
	"google.golang.org/grpc/status"

	"github.com/mailgate/mailgate/mailerr"
)

// smtpReply is the SMTP reply for a SendMail error, from mailerr's one table; a backend's
// permanent refusal is passed on with the remote server's own 5xx code.
func smtpReply(err error) *smtp.SMTPError {
	kind, remote := kindOf(err)
	r := kind.SMTPReply()
	if kind == mailerr.Rejected && remote != "" {
		code, rest, _ := strings.Cut(remote, " ")
		enhanced, _, _ := strings.Cut(rest, " ")
		if n, err := strconv.Atoi(code); err == nil && n >= 500 && n < 600 && strings.HasPrefix(enhanced, "5.") {
			r = mailerr.Reply{Code: n, Enhanced: enhanced}
		}
	}
	text := status.Convert(err).Message()
	if !fromMailgate(err) && kind != mailerr.TooLarge && kind != mailerr.Invalid {
		// A transport failure between the shim and a remote mailgate: its text names
		// hosts and ports, which are not the device's business.
		text = "mailgate is not reachable; try again later"
	}
	return replyError(r.Code, r.Enhanced, text)
}

// fromMailgate reports whether a status was written by mailgate's service, which always
// attaches an ErrorInfo in its domain.
func fromMailgate(err error) bool {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(interface{ GetDomain() string }); ok && info.GetDomain() == mailerr.Domain {
			return true
		}
	}
	return false
}

// replyError builds a reply; text is flattened to one line of bounded length, as SMTP
// replies are lines.
func replyError(code int, enhanced, text string) *smtp.SMTPError {
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
