package graphtest

import (
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"
)

// graphError is a Graph error answer.
type graphError struct {
	status int
	code   string
	msg    string
}

func gerr(status int, code, format string, args ...any) *graphError {
	msg := format
	if len(args) > 0 {
		msg = fmt.Sprintf(format, args...)
	}
	return &graphError{status: status, code: code, msg: msg}
}

// route is a parsed Graph URL.
type route struct {
	kind    string // sendMail, createDraft, draft, send, attachments, createUploadSession, me
	mailbox string
	msgID   string
	err     *graphError
}

// action strips the optional "microsoft.graph." namespace from an action segment.
func action(seg, name string) bool {
	if len(seg) > len("microsoft.graph.") && strings.EqualFold(seg[:len("microsoft.graph.")], "microsoft.graph.") {
		seg = seg[len("microsoft.graph."):]
	}
	return strings.EqualFold(seg, name)
}

func parseRoute(path string) route {
	rest, ok := strings.CutPrefix(path, "/v1.0/")
	if !ok {
		first, _, _ := strings.Cut(strings.TrimPrefix(path, "/"), "/")
		return route{err: gerr(400, "BadRequest", "Invalid version: %s", first)}
	}
	segs := strings.Split(strings.TrimSuffix(rest, "/"), "/")
	notFound := func(seg string) route {
		return route{err: gerr(400, "BadRequest", "Resource not found for the segment '%s'.", seg)}
	}
	if strings.EqualFold(segs[0], "me") {
		return route{kind: "me"}
	}
	if !strings.EqualFold(segs[0], "users") {
		return notFound(segs[0])
	}
	if len(segs) < 3 || segs[1] == "" {
		rt := route{err: gerr(400, "BadRequest", "Unsupported request (graphtest serves only the mail endpoints).")}
		if len(segs) >= 2 {
			rt.mailbox = segs[1]
		}
		return rt
	}
	rt := route{mailbox: segs[1]}
	s := segs[2:]
	switch {
	case len(s) == 1 && action(s[0], "sendMail"):
		rt.kind = "sendMail"
	case len(s) == 1 && strings.EqualFold(s[0], "messages"):
		rt.kind = "createDraft"
	case len(s) == 3 && strings.EqualFold(s[0], "mailFolders") && strings.EqualFold(s[2], "messages"):
		rt.kind = "createDraft"
	case len(s) >= 2 && strings.EqualFold(s[0], "messages"):
		rt.msgID = s[1]
		switch {
		case len(s) == 2:
			rt.kind = "draft"
		case len(s) == 3 && action(s[2], "send"):
			rt.kind = "send"
		case len(s) == 3 && strings.EqualFold(s[2], "attachments"):
			rt.kind = "attachments"
		case len(s) == 4 && strings.EqualFold(s[2], "attachments") && action(s[3], "createUploadSession"):
			rt.kind = "createUploadSession"
		default:
			rt.err = notFound(s[len(s)-1]).err
		}
	default:
		rt.err = notFound(s[0]).err
	}
	return rt
}

var routeMethods = map[string]string{
	"sendMail": http.MethodPost, "createDraft": http.MethodPost, "send": http.MethodPost,
	"attachments": http.MethodPost, "createUploadSession": http.MethodPost,
}

func (f *Fake) serveGraph(w http.ResponseWriter, r *http.Request) {
	ex, w, r := f.begin("graph", w, r)
	defer ex.end()
	w.Header().Set("request-id", ex.reqID)
	if cid := r.Header.Get("client-request-id"); cid != "" {
		w.Header().Set("client-request-id", cid)
	} else {
		w.Header().Set("client-request-id", ex.reqID)
	}

	if strings.HasPrefix(r.URL.Path, "/upload/") {
		f.serveUpload(ex, w, r)
		return
	}

	rt := parseRoute(r.URL.Path)
	if rt.mailbox != "" {
		leave, ok := f.admit(ex, w, r, rt.mailbox)
		defer leave()
		if !ok {
			return
		}
	} else if !f.wait(r) {
		return
	}

	if msg := f.checkToken(r); msg != "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"`)
		ex.writeError(w, r, &graphError{401, "InvalidAuthenticationToken", msg})
		return
	}
	if rt.kind == "me" {
		ex.writeError(w, r, gerr(400, "BadRequest", "/me request is only valid with delegated authentication flow."))
		return
	}
	if rt.err != nil {
		ex.writeError(w, r, rt.err)
		return
	}
	allowed := routeMethods[rt.kind]
	ok := r.Method == allowed
	if rt.kind == "draft" {
		allowed = "GET, DELETE"
		ok = r.Method == http.MethodGet || r.Method == http.MethodDelete
	}
	if !ok {
		w.Header().Set("Allow", allowed)
		ex.writeError(w, r, gerr(405, "MethodNotAllowed", "The HTTP method '%s' is not allowed for this resource.", r.Method))
		return
	}

	body, gz, e := readBody(r)
	if e != nil {
		ex.writeError(w, r, e)
		return
	}

	switch rt.kind {
	case "sendMail":
		f.handleSendMail(ex, w, r, rt, body, gz)
	case "createDraft":
		f.handleCreateDraft(ex, w, r, rt, body, gz)
	case "draft":
		f.handleDraft(ex, w, r, rt)
	case "send":
		f.handleSendDraft(ex, w, r, rt)
	case "attachments":
		f.handleAddAttachment(ex, w, r, rt, body)
	case "createUploadSession":
		f.handleCreateUploadSession(ex, w, r, rt, body)
	}
}

// enter counts a request in flight for mailbox and returns the count including it.
// admit counts a request to mailbox as in flight (until leave), applies the latency, and
// answers 429 ApplicationThrottled over the concurrency limit. ok is false when the
// request has been answered already.
func (f *Fake) admit(ex *exchange, w http.ResponseWriter, r *http.Request, mailbox string) (leave func(), ok bool) {
	ex.setMailbox(mailbox)
	n, leave := f.enter(mailbox)
	if !f.wait(r) {
		return leave, false
	}
	f.mu.Lock()
	limit := f.concurrencyLimit
	f.mu.Unlock()
	if limit > 0 && n > limit {
		ex.writeResponse(w, r, Concurrency(), nil)
		return leave, false
	}
	return leave, true
}

func (f *Fake) enter(mailbox string) (int, func()) {
	k := key(mailbox)
	f.mu.Lock()
	f.inFlight[k]++
	n := f.inFlight[k]
	if n > f.maxInFlight[k] {
		f.maxInFlight[k] = n
	}
	f.mu.Unlock()
	return n, func() {
		f.mu.Lock()
		f.inFlight[k]--
		f.mu.Unlock()
	}
}

// wait applies the configured latency; false if the client went away meanwhile.
func (f *Fake) wait(r *http.Request) bool {
	f.mu.Lock()
	d := f.latency
	f.mu.Unlock()
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}

// checkToken returns "" for a valid Graph bearer token, else the 401 message.
func (f *Fake) checkToken(r *http.Request) string {
	scheme, tok, _ := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	tok = strings.TrimSpace(tok)
	if !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return msgTokenEmpty
	}
	f.mu.Lock()
	t := f.tokens[tok]
	var scope string
	var expired bool
	if t != nil {
		scope, expired = t.scope, t.expired
	}
	f.mu.Unlock()
	switch {
	case t == nil:
		return msgTokenInvalid
	case !strings.EqualFold(scope, GraphScope) && !strings.EqualFold(scope, "00000003-0000-0000-c000-000000000000/.default"):
		return msgTokenWrongAudience
	case expired:
		return msgTokenExpired
	}
	return ""
}

// readBody reads the request body, gunzipping it if needed, up to MaxRequestBytes.
func readBody(r *http.Request) ([]byte, bool, *graphError) {
	var rd io.Reader = r.Body
	gz := false
	switch ce := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); ce {
	case "", "identity":
	case "gzip":
		gz = true
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			if err == io.EOF { // empty body
				return nil, true, nil
			}
			return nil, true, gerr(400, "BadRequest", "The request body could not be decompressed: %v", err)
		}
		defer zr.Close()
		rd = zr
	default:
		return nil, false, gerr(415, "UnsupportedMediaType", "Content-Encoding '%s' is not supported.", ce)
	}
	b, err := io.ReadAll(io.LimitReader(rd, MaxRequestBytes+1))
	if err != nil {
		return nil, gz, gerr(400, "BadRequest", "The request body could not be read: %v", err)
	}
	if len(b) > MaxRequestBytes {
		return nil, gz, gerr(413, "RequestEntityTooLarge", msgTooLarge)
	}
	return b, gz, nil
}

func mediaType(r *http.Request) string {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return ""
	}
	return mt
}

// popScript takes the next scripted answer for mailbox, if any.
func (f *Fake) popScript(mailbox string) (Response, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := key(mailbox)
	q := f.scripts[k]
	if len(q) == 0 {
		return Response{}, false
	}
	f.scripts[k] = q[1:]
	return q[0], true
}

// writeError writes the Graph error envelope.
func (ex *exchange) writeError(w http.ResponseWriter, r *http.Request, e *graphError) {
	type inner struct {
		Date            string `json:"date"`
		RequestID       string `json:"request-id"`
		ClientRequestID string `json:"client-request-id"`
	}
	type body struct {
		Code       string `json:"code"`
		Message    string `json:"message"`
		InnerError inner  `json:"innerError"`
	}
	b, _ := json.Marshal(struct {
		Error body `json:"error"`
	}{body{e.code, e.msg, inner{graphDate(), ex.reqID, w.Header().Get("client-request-id")}}})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", fmt.Sprint(len(b)))
	w.WriteHeader(e.status)
	_, _ = w.Write(b)
}

func graphDate() string { return time.Now().UTC().Format("2006-01-02T15:04:05") }

// writeResponse writes a scripted answer. firstRecipient (may be nil) names the
// request's first recipient for InvalidRecipients.
func (ex *exchange) writeResponse(w http.ResponseWriter, r *http.Request, resp Response, firstRecipient func() string) {
	if resp.retryAfter != "" {
		w.Header().Set("Retry-After", resp.retryAfter)
	}
	if resp.throttleBody {
		// Field order and content exactly as Microsoft's throttling sample.
		b := fmt.Appendf(nil, `{"error":{"code":"TooManyRequests","innerError":{"code":"429","date":%q,"message":"Please retry after","request-id":%q,"status":"429"},"message":"Please retry again later."}}`, graphDate(), ex.reqID)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", fmt.Sprint(len(b)))
		w.WriteHeader(resp.status)
		_, _ = w.Write(b)
		return
	}
	msg := resp.message
	if resp.recipientMessage {
		rcpt := "bad"
		if firstRecipient != nil {
			if s := firstRecipient(); s != "" {
				rcpt = s
			}
		}
		msg = fmt.Sprintf(msgUnresolvedRecipient, rcpt)
	}
	ex.writeError(w, r, &graphError{status: resp.status, code: resp.code, msg: msg})
}

func firstRecipient(m *Message) string {
	if m == nil {
		return ""
	}
	for _, l := range [][]Address{m.To, m.Cc, m.Bcc} {
		if len(l) > 0 {
			return l[0].Address
		}
	}
	return ""
}

// parseSubmission parses a sendMail or draft-creation body: JSON (application/json) or
// base64 MIME (text/plain).
func parseSubmission(r *http.Request, body []byte, action string) (sub submission, e *graphError) {
	switch mediaType(r) {
	case "application/json":
		if action == "sendMail" {
			return parseSendMailJSON(body)
		}
		m, e := parseMessageJSON(body)
		if e != nil {
			return sub, e
		}
		return submission{via: "json", msg: m}, nil
	case "text/plain":
		raw, m, e := parseMIMEBody(body)
		if e != nil {
			return sub, e
		}
		return submission{via: "mime", msg: m, mime: raw}, nil
	default:
		return sub, gerr(415, "UnsupportedMediaType", "A supported MIME type could not be found that matches the content type of the request. The supported type(s) 'application/json, text/plain' do not match the content type '%s'.", r.Header.Get("Content-Type"))
	}
}

type submission struct {
	via  string
	msg  *Message
	mime []byte
	save *bool
}

// checkSend applies what Exchange checks at submission: 1..500 resolvable recipients,
// Send-As rights for a from that is not the mailbox, and MaxSendSize.
func (f *Fake) checkSend(mailbox string, m *Message, mimeRaw []byte) *graphError {
	n := len(m.To) + len(m.Cc) + len(m.Bcc)
	if n == 0 {
		return gerr(400, "ErrorInvalidRecipients", msgNoRecipients)
	}
	if n > MaxRecipients {
		return gerr(400, "ErrorInvalidRecipients", msgTooManyRecipients, n)
	}
	for _, l := range [][]Address{m.To, m.Cc, m.Bcc} {
		for _, a := range l {
			if !validAddress(a.Address) {
				return gerr(400, "ErrorInvalidRecipients", msgUnresolvedRecipient, a.Address)
			}
		}
	}
	f.mu.Lock()
	granted := m.From == nil || strings.EqualFold(m.From.Address, mailbox) || f.sendAs[key(mailbox)][key(m.From.Address)]
	limit := f.maxSendSize
	f.mu.Unlock()
	if !granted {
		return gerr(403, "ErrorSendAsDenied", msgSendAsDenied)
	}
	if limit > 0 {
		size := int64(len(mimeRaw))
		if mimeRaw == nil {
			size = int64(len(m.Body))
		}
		for _, a := range m.Attachments {
			if mimeRaw == nil || a.ViaUploadSession {
				size += int64(len(a.Content))
			}
		}
		if size > limit {
			return gerr(400, "ErrorMessageSizeExceeded", msgMessageSizeExceeded)
		}
	}
	return nil
}

func validAddress(s string) bool {
	local, domain, ok := strings.Cut(s, "@")
	return ok && local != "" && domain != "" && !strings.ContainsAny(s, " \t\r\n<>,;\"") && !strings.Contains(domain, "@")
}

func (f *Fake) handleSendMail(ex *exchange, w http.ResponseWriter, r *http.Request, rt route, body []byte, gz bool) {
	resp, scripted := f.popScript(rt.mailbox)
	if scripted && !resp.acceptFirst {
		ex.writeResponse(w, r, resp, func() string {
			sub, e := parseSubmission(r, body, "sendMail")
			if e != nil {
				return ""
			}
			return firstRecipient(sub.msg)
		})
		return
	}
	sub, e := parseSubmission(r, body, "sendMail")
	if e == nil {
		e = f.checkSend(rt.mailbox, sub.msg, sub.mime)
	}
	if e != nil {
		ex.writeError(w, r, e)
		return
	}
	f.mu.Lock()
	f.sent = append(f.sent, Sent{Mailbox: rt.mailbox, Via: sub.via, Message: *sub.msg, MIME: sub.mime, SaveToSentItems: sub.save, Gzip: gz})
	f.mu.Unlock()
	if scripted {
		ex.writeResponse(w, r, resp, nil)
		return
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
}
