package graph

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	abstractions "github.com/microsoft/kiota-abstractions-go"
	"github.com/microsoftgraph/msgraph-sdk-go/models/odataerrors"

	"github.com/mailgate/mailgate/mailerr"
	"github.com/mailgate/mailgate/senders/entra"
)

// reasonRequestTooLarge marks Graph's refusal of a request over 4 MB: nothing was sent,
// and the draft path can carry the message.
const reasonRequestTooLarge = mailerr.ReasonGraphRequestTooLarge

// reasonAuth marks a token mailgate could not get or Graph would not take: the
// operator's to fix; retrying the same credentials at once cannot help.
const reasonAuth = mailerr.ReasonBackendAuthFailed

// graphError is what a failed Graph request said.
type graphError struct {
	status  int
	code    string // Graph's error code, e.g. ErrorSendAsDenied
	message string
	header  http.Header
}

// classify turns a failed Graph request into mailgate's classes
// (docs/microsoft365-graph.md#troubleshooting). delivered
// is whether the request reached Microsoft and was one that sends mail: then a missing or
// 5xx answer leaves the outcome unknown.
func (s *Sender) classify(op, mailbox string, err error, delivered bool) *mailerr.Error {
	var e *mailerr.Error
	if errors.As(err, &e) {
		return e
	}
	if entra.IsTokenError(err) {
		// Entra's answer (AADSTS code, description, trace id) holds no secret.
		s.log.Error("Graph backend cannot get a token; fix the app registration or the backend's credentials",
			"op", op, "fix", entra.Fix(err), "error", strings.Join(strings.Fields(err.Error()), " "))
		return mailerr.Wrap(mailerr.Unavailable, err,
			"mailgate could not authenticate to Microsoft 365 (an operator must fix the Graph backend's credentials); nothing was sent").
			WithReason(reasonAuth)
	}
	ge, ok := asGraphError(err)
	if !ok {
		switch {
		case delivered:
			return mailerr.Wrap(mailerr.OutcomeUnknown, err,
				"Graph did not answer after receiving the message (%s); it may have been sent: retry only with the same idempotency key", op)
		case errors.Is(err, context.DeadlineExceeded):
			return mailerr.Wrap(mailerr.Unavailable, err, "Graph did not answer in time (%s); nothing was sent", op)
		}
		return mailerr.Wrap(mailerr.Unavailable, err, "Graph is unreachable (%s); nothing was sent", op)
	}
	out := ge.classify(op, mailbox, delivered)
	out.Err = err
	out.Metadata = map[string]string{mailerr.MetaGraphStatus: strconv.Itoa(ge.status)}
	if ge.code != "" {
		out.Metadata[mailerr.MetaGraphCode] = ge.code
	}
	if id := ge.header.Get("request-id"); id != "" {
		out.Metadata[mailerr.MetaGraphRequestID] = id
	}
	if fix := operatorFix(ge); fix != "" {
		s.log.Error("Graph backend refused by Microsoft 365; an operator must act",
			"op", op, "mailbox", mailbox, "status", ge.status, "code", ge.code, "fix", fix)
	}
	return out
}

func (ge *graphError) classify(op, mailbox string, delivered bool) *mailerr.Error {
	switch {
	case ge.status == http.StatusTooManyRequests:
		e := mailerr.New(mailerr.Throttled, "Microsoft 365 throttled mailbox %s (%s)", mailbox, ge.code)
		e.RetryAfter = retryAfter(ge.header.Get("Retry-After"))
		return e
	case ge.status == http.StatusRequestEntityTooLarge,
		ge.status == http.StatusBadRequest && strings.Contains(ge.message, "maximum request length"):
		return mailerr.New(mailerr.TooLarge, "the request is over Graph's 4 MB limit").WithReason(reasonRequestTooLarge)
	case ge.code == "ErrorSendAsDenied":
		return mailerr.New(mailerr.PermissionDenied,
			"Microsoft 365 refused: mailbox %s may not send as this From address (it needs Send As or Send on Behalf)", mailbox).
			WithReason(mailerr.ReasonSendAsDenied)
	case ge.code == "ErrorAccessDenied", ge.code == "NoPermissionsInAccessToken", ge.code == "ErrorAccessDeniedForApp":
		return mailerr.New(mailerr.PermissionDenied,
			"Microsoft 365 refused access to mailbox %s for mailgate's app (%s); an operator must grant it", mailbox, ge.code)
	case ge.code == "ErrorInvalidRecipients":
		return mailerr.New(mailerr.Invalid, "Microsoft 365 refused the recipients: %s", ge.message)
	case strings.HasPrefix(ge.code, "InvalidInternetMessageHeader"), ge.code == "ErrorInvalidInternetMessageHeader":
		return mailerr.New(mailerr.Invalid, "Microsoft 365 refused a custom header: %s", ge.message)
	case ge.code == "ErrorMessageSizeExceeded":
		return mailerr.New(mailerr.TooLarge, "Microsoft 365 refused the message as too large for mailbox %s", mailbox)
	case ge.code == "ErrorSubmissionQuotaExceeded":
		e := mailerr.New(mailerr.Throttled, "mailbox %s reached its Microsoft 365 daily sending quota", mailbox)
		e.RetryAfter = time.Hour
		return e
	case ge.code == "ErrorQuotaExceeded", ge.code == "MailboxNotEnabledForRESTAPI", ge.code == "ErrorInvalidUser",
		ge.code == "ResourceNotFound", ge.status == http.StatusNotFound:
		// The mailbox is full, missing or not in Exchange Online: an operator fixes it,
		// so it is not a verdict on the message to replay for a day.
		return mailerr.New(mailerr.Unavailable,
			"mailbox %s cannot send through Graph (%s); an operator must fix the mailbox; nothing was sent", mailbox, ge.code).
			WithReason(mailerr.ReasonMailboxUnavailable)
	case ge.status == http.StatusUnauthorized:
		return mailerr.New(mailerr.Unavailable,
			"Microsoft 365 did not accept mailgate's token (an operator must fix the Graph backend); nothing was sent").
			WithReason(reasonAuth)
	case ge.status >= 500 && delivered:
		return mailerr.New(mailerr.OutcomeUnknown,
			"Graph answered %d after receiving the message (%s); it may have been sent: retry only with the same idempotency key", ge.status, op)
	case ge.status >= 500:
		return mailerr.New(mailerr.Unavailable, "Graph failed with %d (%s); nothing was sent", ge.status, op)
	}
	return mailerr.New(mailerr.Rejected, "Microsoft 365 refused the message: %d %s: %s", ge.status, ge.code, ge.message)
}

// operatorFix is the advice logged for failures only an operator can fix.
func operatorFix(ge *graphError) string {
	switch {
	case ge.status == http.StatusUnauthorized:
		return "the token was refused: check tenant_id, and that graph_url and scope belong to the same cloud"
	case ge.code == "NoPermissionsInAccessToken", ge.code == "ErrorAccessDenied" && strings.Contains(ge.message, "Check credentials"):
		return "grant the app the Microsoft Graph application permission Mail.Send (not delegated) and give admin consent; for the large-message path also Mail.ReadWrite"
	case ge.code == "ErrorAccessDenied" && strings.Contains(ge.message, "OData is disabled"):
		return "an application access policy or RBAC for Applications scope excludes this mailbox: add it to the scope (Test-ServicePrincipalAuthorization shows InScope)"
	case ge.code == "ErrorAccessDenied", ge.code == "ErrorAccessDeniedForApp":
		return "the app may not use this mailbox: check Mail.Send consent and the RBAC for Applications scope"
	case ge.code == "ErrorQuotaExceeded":
		return "the mailbox's storage is full (often Sent Items): free space, raise its quota, or set save_to_sent_items: false"
	case ge.code == "MailboxNotEnabledForRESTAPI", ge.code == "ErrorInvalidUser", ge.code == "ResourceNotFound", ge.status == http.StatusNotFound:
		return "the route's mailbox does not exist in Exchange Online, is unlicensed, inactive or on-premises: use a licensed cloud mailbox (or a shared mailbox)"
	case ge.code == "ErrorSendAsDenied":
		return "grant the route's mailbox Send As on the From address (Add-RecipientPermission) or route that From to its own mailbox"
	}
	return ""
}

// asGraphError reads status, code and headers from what the SDK returned.
func asGraphError(err error) (*graphError, bool) {
	var odata *odataerrors.ODataError
	if errors.As(err, &odata) {
		ge := &graphError{status: odata.ResponseStatusCode, header: headers(odata.ResponseHeaders)}
		if main := odata.GetErrorEscaped(); main != nil {
			if c := main.GetCode(); c != nil {
				ge.code = *c
			}
			if m := main.GetMessage(); m != nil {
				ge.message = *m
			}
		}
		return ge, true
	}
	var api *abstractions.ApiError
	if errors.As(err, &api) {
		return &graphError{status: api.ResponseStatusCode, message: api.Message, header: headers(api.ResponseHeaders)}, true
	}
	var ue *uploadError
	if errors.As(err, &ue) {
		return &ue.graphError, true
	}
	return nil, false
}

func headers(h *abstractions.ResponseHeaders) http.Header {
	out := http.Header{}
	if h == nil {
		return out
	}
	for _, k := range h.ListKeys() {
		for _, v := range h.Get(k) {
			out.Add(k, v)
		}
	}
	return out
}

// retryAfter reads Retry-After: seconds, possibly fractional as Graph sends them
// ("2.128"), or an HTTP date; a missing or unreadable one means 10 s.
func retryAfter(v string) time.Duration {
	if v == "" {
		return 10 * time.Second
	}
	if secs, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil && secs >= 0 && !math.IsInf(secs, 0) {
		return time.Duration(math.Ceil(secs * float64(time.Second)))
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
		return time.Second
	}
	return 10 * time.Second
}
