package smtp

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/textproto"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/mailgate/mailgate/mailerr"
)

// Pauses after Microsoft's throttling replies. SMTP has no Retry-After; these follow
// what Microsoft documents of each condition (docs/microsoft365-smtp.md#throttling-and-pauses).
const (
	// concurrencyPause: 432 4.3.2, more than 3 connections for the mailbox; one ends soon.
	concurrencyPause = 15 * time.Second
	// serverBusyPause: 421, the server is closing the session (overload, shutdown).
	serverBusyPause = time.Minute
	// ipThrottlePause: 451 4.7.500-699, Microsoft throttles a new or changed sending IP;
	// it eases over hours, so mailgate asks again every few minutes rather than hammering.
	ipThrottlePause = 5 * time.Minute
	// quotaPause: 554 5.2.0 SubmissionQuotaExceeded, the mailbox's 10,000 recipients a
	// day are used up. Microsoft's window is rolling (up to 24 h): mailgate asks again
	// hourly rather than holding the mailbox back for a whole day on a guess.
	quotaPause = time.Hour
)

// Reply is an SMTP reply from a server.
type Reply struct {
	Code     int
	Enhanced string // RFC 3463 class.subject.detail, "" when the server gave none
	Text     string // the rest, lines joined by spaces
}

func (r Reply) String() string {
	s := strconv.Itoa(r.Code)
	if r.Enhanced != "" {
		s += " " + r.Enhanced
	}
	if r.Text != "" {
		s += " " + r.Text
	}
	return s
}

var enhancedRE = regexp.MustCompile(`^([245])\.(\d{1,3})\.(\d{1,3})\b`)

// ParseReply reads a reply from its code and text as net/smtp reports them ("5.7.64
// TenantAttribution; ..."; the lines of a multi-line reply joined by newlines).
func ParseReply(code int, text string) Reply {
	r, _ := replyOf(&textproto.Error{Code: code, Msg: text})
	return r
}

// replyOf reads the server's reply out of what net/smtp returned.
func replyOf(err error) (Reply, bool) {
	var te *textproto.Error
	if !errors.As(err, &te) {
		return Reply{}, false
	}
	text := strings.Join(strings.Fields(te.Msg), " ")
	r := Reply{Code: te.Code, Text: text}
	if m := enhancedRE.FindString(text); m != "" {
		r.Enhanced, r.Text = m, strings.TrimSpace(text[len(m):])
	}
	return r, true
}

// detail is the numeric detail of an enhanced code with the given class and subject
// ("4.7" and 4.7.512 give 512), or -1.
func (r Reply) detail(classSubject string) int {
	rest, ok := strings.CutPrefix(r.Enhanced, classSubject+".")
	if !ok {
		return -1
	}
	n, err := strconv.Atoi(rest)
	if err != nil {
		return -1
	}
	return n
}

// replyError keeps a server's reply as the cause of a classified error, so that callers
// can tell a server's answer from a network failure.
type replyError struct {
	command string
	reply   Reply
}

func (e *replyError) Error() string { return e.command + ": " + e.reply.String() }

// classify turns a server's refusal into mailgate's classes
// (docs/microsoft365-smtp.md#troubleshooting, RFC 3463): what
// the caller sees. OperatorFix says what an operator must do about it, if anything.
func classify(server, command string, r Reply) *mailerr.Error {
	refused := fmt.Sprintf("%s refused %s: %s", server, command, r)
	var e *mailerr.Error
	switch {
	case r.Code == 421 && r.Enhanced == "4.7.66":
		e = mailerr.New(mailerr.Unavailable, "%s; nothing was sent", refused)
	case r.Code == 421:
		e = mailerr.New(mailerr.Throttled, "%s; nothing was sent", refused)
		e.RetryAfter = serverBusyPause
	case r.Code == 432 || r.Enhanced == "4.3.2" && r.Code/100 == 4:
		e = mailerr.New(mailerr.Throttled, "%s (Microsoft 365 allows 3 connections per mailbox)", refused)
		e.RetryAfter = concurrencyPause
	case r.ipThrottled():
		e = mailerr.New(mailerr.Throttled, "%s (Microsoft 365 is throttling this sending IP address)", refused)
		e.RetryAfter = ipThrottlePause
	case r.quotaExceeded():
		e = mailerr.New(mailerr.Throttled, "%s (the mailbox's daily recipient quota is used up)", refused)
		e.RetryAfter = quotaPause
	case r.Code/100 == 4:
		e = mailerr.New(mailerr.Unavailable, "%s; nothing was sent, a retry may succeed", refused)
	case r.authRefused():
		e = mailerr.New(mailerr.Unavailable,
			"%s refused mailgate's authentication (an operator must fix the backend's credentials or the mailbox's SMTP AUTH setting); nothing was sent", server).
			WithReason(mailerr.ReasonBackendAuthFailed)
	case r.sendAsDenied():
		e = mailerr.New(mailerr.PermissionDenied, "%s (the sending identity has no Send As right for this From address)", refused).
			WithReason(mailerr.ReasonSendAsDenied)
	case r.Enhanced == "5.2.2":
		// Checked before 552: a 552 5.2.2 is a full mailbox, not a large message.
		e = mailerr.New(mailerr.Unavailable, "%s; an operator must free space in the sending mailbox; nothing was sent", refused).
			WithReason(mailerr.ReasonMailboxUnavailable)
	case r.Code == 552 || r.Enhanced == "5.3.4" || r.Enhanced == "5.2.3":
		e = mailerr.New(mailerr.TooLarge, "%s (the message is over the server's size limit)", refused)
	default:
		e = mailerr.New(mailerr.Rejected, "%s", refused)
	}
	e.Metadata = map[string]string{mailerr.MetaSMTPReply: r.String(), mailerr.MetaSMTPCommand: command}
	e.Err = &replyError{command: command, reply: r}
	return e
}

func (r Reply) ipThrottled() bool {
	return r.Code/100 == 4 && r.detail("4.7") >= 500 && r.detail("4.7") <= 699
}

func (r Reply) quotaExceeded() bool {
	return strings.Contains(r.Text, "SubmissionQuotaExceeded") || strings.Contains(strings.ToLower(r.Text), "submission quota exceeded")
}

func (r Reply) authRefused() bool {
	return r.Code == 535 || r.Enhanced == "5.7.57" || r.Enhanced == "5.7.30" || r.Enhanced == "5.7.139"
}

func (r Reply) sendAsDenied() bool {
	return r.Enhanced == "5.7.60" || strings.Contains(r.Text, "SendAsDenied") || r.Enhanced == "5.2.252"
}

// OperatorFix is what an operator must do about a server's reply, or "" when the reply
// needs no operator: a passing throttle, a refused recipient. login says the backend uses
// auth: login. Both the backends' log and `mailgate doctor` give these fixes.
func OperatorFix(r Reply, login bool) string {
	switch {
	case r.Code == 421 && r.Enhanced == "4.7.66":
		return "the server wants TLS 1.2 or later; mailgate always uses it, so something between mailgate and Microsoft 365 (a TLS-inspecting proxy) is downgrading the connection"
	case r.ipThrottled():
		return "Microsoft throttles mail from an IP address it has not seen send this volume before; it eases over hours or days, and an inbound connector for this IP or certificate helps"
	case r.Enhanced == "5.7.139":
		return "SMTP AUTH is disabled for the tenant or the mailbox, or security defaults or Conditional Access block it: Set-CASMailbox -Identity <mailbox> -SmtpClientAuthenticationDisabled $false"
	case r.Enhanced == "5.7.30":
		return "Microsoft no longer accepts basic authentication for this tenant: set auth: xoauth2 with an app registration"
	case r.Enhanced == "5.7.57":
		return "the server wants authentication before MAIL FROM: a relay or direct_send backend must point at the tenant's MX endpoint on port 25 (not smtp.office365.com); for smtp_auth check auth and the credentials"
	case r.Code == 535 && login:
		return "the password was refused: check username and password (or password_file); better, set auth: xoauth2 with an app registration, as Microsoft is retiring basic authentication"
	case r.Code == 535:
		return "the token was refused: give the app the Office 365 Exchange Online application permission SMTP.SendAsApp with admin consent, register its service principal in Exchange with New-ServicePrincipal (-ObjectId is the enterprise application's Object ID, not the app registration's) and give it FullAccess on the mailbox (Add-MailboxPermission); scope must be unset or https://outlook.office365.com/.default"
	case r.sendAsDenied():
		return "grant Send As on the From address to the identity mailgate signs in as (the app's service principal for xoauth2, the mailbox for login): Add-RecipientPermission <from> -AccessRights SendAs -Trustee <identity>; then list the address in the backend's send_as"
	case r.Enhanced == "5.2.2" && !r.quotaExceeded():
		return "the sending mailbox is full (SMTP AUTH saves a copy in Sent Items): free space or raise its quota"
	case r.Enhanced == "5.7.64":
		return "Microsoft 365 does not attribute this connection to the tenant: the inbound connector must match the client certificate's subject (New-InboundConnector -TlsSenderCertificateName) or, for an IP-based connector, this host's public IP address; the certificate's name must be an accepted domain"
	case r.Enhanced == "5.7.68":
		return "the tenant rejects Direct Send (Set-OrganizationConfig -RejectDirectSend $true): send through a relay backend with an inbound connector, or through smtp_auth or graph"
	case r.Enhanced == "5.7.54":
		return "the server relays only to the tenant's accepted domains: check accepted_domains, or use a relay backend with a connector for external recipients"
	case r.Enhanced == "5.7.1" && strings.Contains(strings.ToLower(r.Text), "relay"):
		return "Microsoft 365 does not accept the connection as an allowed relay: check the inbound connector (docs/microsoft365-smtp.md, Relay through an inbound connector)"
	case r.Code/100 == 5 && r.detail("5.7") >= 606 && r.detail("5.7") <= 649:
		return "Microsoft 365 has banned this sending IP address: request delisting through Microsoft's delist portal (https://sender.office.com), and check that nothing on this address sends spam"
	}
	return ""
}

// sessionError classifies a failure while talking to the server outside a reply: the
// connection broke, timed out, or TLS failed. Nothing was sent by then.
func sessionError(c *conn, command string, err error) error {
	if r, ok := replyOf(err); ok {
		return classify(c.host, command, r)
	}
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	if errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &hn) {
		return mailerr.Wrap(mailerr.Unavailable, err,
			"the certificate of %s did not verify (%v); nothing was sent (set ca_file for a private CA)", c.host, err)
	}
	return mailerr.Wrap(mailerr.Unavailable, err, "the connection to %s failed at %s; nothing was sent", c.host, command)
}

func unreachable(hostport string, err error) error {
	return mailerr.Wrap(mailerr.Unavailable, err, "cannot connect to %s; nothing was sent", hostport)
}

func noTLS(hostport string) error {
	return mailerr.New(mailerr.Unavailable,
		"%s does not offer STARTTLS and this backend requires TLS; nothing was sent", hostport)
}

// tryNextHost reports whether a failure at one MX host is worth trying the next for:
// the host was unreachable or answered with a temporary failure.
func tryNextHost(err error) bool {
	var r *replyError
	if errors.As(err, &r) {
		return r.reply.Code/100 == 4
	}
	return true
}
