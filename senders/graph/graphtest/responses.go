package graphtest

import "fmt"

// Messages Microsoft returns, in the texts Microsoft documents (the pages are listed in
// docs/microsoft365-graph.md#sources).
const (
	msgSendAsDenied = "The user account which was used to submit this request does not have the right to send mail on behalf of the specified sending account. Cannot submit message."
	msgAccessDenied = "Access is denied. Check credentials and try again."
	// fmt pattern, %s = the unresolved recipient.
	msgUnresolvedRecipient = `At least one recipient isn't valid., Recipient "%s" isn't resolved. All recipients must be resolved before a message can be submitted.`
	msgNoRecipients        = "At least one recipient isn't valid., A message can't be sent because it contains no recipients."
	// Not from a source: Microsoft's documents give the 500 limit but not the error text.
	msgTooManyRecipients     = "At least one recipient isn't valid., A message can't be sent because it contains %d recipients; the limit is 500."
	msgInvalidHeaderName     = "The internet message header name '%s' should start with 'x-' or 'X-'."
	msgInvalidBase64MIME     = "Invalid base64 string for MIME content."
	msgTooLarge              = "The maximum request length supported is 4MB."
	msgMailboxConcurrency    = "Application is over its MailboxConcurrency limit."
	msgServiceNotAvailable   = "The service is temporarily unavailable for maintenance or is overloaded. You may repeat the request after a delay, the length of which may be specified in a Retry-After header."
	msgGatewayTimeout        = "The server, while acting as a proxy, did not receive a timely response from the upstream server it needed to access in attempting to complete the request."
	msgItemNotFound          = "The specified object was not found in the store."
	msgMessageSizeExceeded   = "The message exceeds the maximum supported size."
	msgInvalidJSON           = "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format."
	msgTokenEmpty            = "Access token is empty."
	msgTokenInvalid          = "Access token validation failure."
	msgTokenWrongAudience    = "Access token validation failure. Invalid audience."
	msgTokenExpired          = "Lifetime validation failed, the token is expired."
	msgUploadSessionTooSmall = "Attachment size must be greater than the minimum size."
)

// Response is a canned Graph answer for Script. Build one with the functions below.
type Response struct {
	name       string
	status     int
	code       string
	message    string
	retryAfter string
	// throttleBody: write the TooManyRequests body in the exact shape of Microsoft's
	// throttling sample instead of the usual envelope.
	throttleBody bool
	// acceptFirst: process the request normally; if that succeeds, record the message
	// as sent and answer with this response instead of 202.
	acceptFirst bool
	// recipientMessage: build the message from the request's first recipient.
	recipientMessage bool
}

// String describes the response, for test logs.
func (r Response) String() string { return r.name }

// Throttle answers 429 Too Many Requests with the given Retry-After header verbatim
// (e.g. "2.128"; "" for none) and a body shaped exactly like Microsoft's sample:
//
//	{"error":{"code":"TooManyRequests","innerError":{"code":"429","date":"…","message":"Please retry after","request-id":"…","status":"429"},"message":"Please retry again later."}}
//
// Nothing is recorded.
func Throttle(retryAfter string) Response {
	return Response{name: "Throttle(" + retryAfter + ")", status: 429, code: "TooManyRequests",
		message: "Please retry again later.", retryAfter: retryAfter, throttleBody: true}
}

// Concurrency answers 429 ApplicationThrottled "Application is over its
// MailboxConcurrency limit." with Retry-After "1". Nothing is recorded.
func Concurrency() Response {
	return Response{name: "Concurrency", status: 429, code: "ApplicationThrottled",
		message: msgMailboxConcurrency, retryAfter: "1"}
}

// Unavailable answers 503 serviceNotAvailable with Retry-After "3". Nothing is recorded.
func Unavailable() Response {
	return Response{name: "Unavailable", status: 503, code: "serviceNotAvailable",
		message: msgServiceNotAvailable, retryAfter: "3"}
}

// AcceptThenGatewayTimeout processes the request normally and, if it would have
// succeeded, records the message as sent (the draft as sent, for /send) and then answers
// 504 Gateway Timeout: the "accepted but the answer was lost" case. If the request is
// invalid, the normal error is returned (and the script entry is still used up).
func AcceptThenGatewayTimeout() Response {
	return Response{name: "AcceptThenGatewayTimeout", status: 504, code: "GatewayTimeout",
		message: msgGatewayTimeout, acceptFirst: true}
}

// SendAsDenied answers 403 ErrorSendAsDenied with Microsoft's message. Nothing is recorded.
func SendAsDenied() Response {
	return Response{name: "SendAsDenied", status: 403, code: "ErrorSendAsDenied", message: msgSendAsDenied}
}

// AccessDenied answers 403 ErrorAccessDenied "Access is denied. Check credentials and try
// again." (the missing Mail.Send permission case). Nothing is recorded.
func AccessDenied() Response {
	return Response{name: "AccessDenied", status: 403, code: "ErrorAccessDenied", message: msgAccessDenied}
}

// InvalidRecipients answers 400 ErrorInvalidRecipients "At least one recipient isn't
// valid., Recipient "<first recipient of the request>" isn't resolved. All recipients
// must be resolved before a message can be submitted." Nothing is recorded.
func InvalidRecipients() Response {
	return Response{name: "InvalidRecipients", status: 400, code: "ErrorInvalidRecipients", recipientMessage: true}
}

// ErrorResponse answers status with the Graph error envelope {"error":{"code":code,
// "message":message,"innerError":{…}}} and, if retryAfter is not "", a Retry-After
// header. Nothing is recorded. For cases the named constructors do not cover, e.g.
// ErrorResponse(403, "ErrorAccessDenied", "Access to OData is disabled.", "") or
// ErrorResponse(400, "ErrorSubmissionQuotaExceeded", "…", "").
func ErrorResponse(status int, code, message, retryAfter string) Response {
	return Response{name: fmt.Sprintf("ErrorResponse(%d %s)", status, code), status: status,
		code: code, message: message, retryAfter: retryAfter}
}
