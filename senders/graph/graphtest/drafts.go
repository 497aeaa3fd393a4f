package graphtest

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

type draft struct {
	id          string
	mailbox     string // as given when created
	mailboxKey  string
	msg         Message
	mime        []byte
	gzip        bool
	created     time.Time
	attachments []string // attachment ids, parallel to msg.Attachments
}

type uploadSession struct {
	id         string
	authToken  string
	draftID    string
	mailbox    string
	attachment Attachment
	size       int64
	next       int64
	data       []byte
	expires    time.Time
}

// newItemID makes an opaque Exchange-looking id ("AAMkAD…AAA="): base64 with '-' and
// '_' and a trailing '=', so clients must escape it properly in URLs.
func newItemID() string {
	return "AAMkAD" + randomString(30) + "AAA="
}

func (f *Fake) lookupDraft(mailbox, id string) *draft {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.drafts[id]
	if d == nil || d.mailboxKey != key(mailbox) {
		return nil
	}
	return d
}

func notFoundItem() *graphError { return gerr(404, "ErrorItemNotFound", msgItemNotFound) }

// handleCreateDraft: POST /users/{mb}/messages (JSON message, or base64 MIME). Exchange
// accepts drafts without recipients and with any from; those are checked at /send.
func (f *Fake) handleCreateDraft(ex *exchange, w http.ResponseWriter, r *http.Request, rt route, body []byte, gz bool) {
	sub, e := parseSubmission(r, body, "createDraft")
	if e != nil {
		ex.writeError(w, r, e)
		return
	}
	d := &draft{id: newItemID(), mailbox: rt.mailbox, mailboxKey: key(rt.mailbox), msg: *sub.msg, mime: sub.mime, gzip: gz, created: time.Now().UTC()}
	for range d.msg.Attachments {
		d.attachments = append(d.attachments, newItemID())
	}
	f.mu.Lock()
	f.drafts[d.id] = d
	js := f.draftJSON(d)
	f.mu.Unlock()
	w.Header().Set("Location", fmt.Sprintf("%s/users('%s')/messages('%s')", f.GraphURL(), rt.mailbox, d.id))
	writeJSON(w, http.StatusCreated, js)
}

// draftJSON renders a draft like Graph's message resource (a useful subset). f.mu held.
func (f *Fake) draftJSON(d *draft) map[string]any {
	ts := d.created.Format("2006-01-02T15:04:05Z")
	js := map[string]any{
		"@odata.context":       fmt.Sprintf("%s/$metadata#users('%s')/messages/$entity", f.GraphURL(), d.mailbox),
		"@odata.etag":          `W/"CQAAABYAAAD` + d.id[6:14] + `"`,
		"id":                   d.id,
		"createdDateTime":      ts,
		"lastModifiedDateTime": ts,
		"changeKey":            "CQAAABYAAAD" + d.id[6:14],
		"isDraft":              true,
		"isRead":               true,
		"subject":              d.msg.Subject,
		"importance":           "normal",
		"hasAttachments":       len(d.msg.Attachments) > 0,
		"body":                 map[string]any{"contentType": d.msg.BodyType, "content": d.msg.Body},
		"toRecipients":         recipientsJSON(d.msg.To),
		"ccRecipients":         recipientsJSON(d.msg.Cc),
		"bccRecipients":        recipientsJSON(d.msg.Bcc),
		"replyTo":              recipientsJSON(d.msg.ReplyTo),
		"sender":               nil,
		"from":                 nil,
	}
	if d.msg.From != nil {
		js["from"] = recipientJSON(*d.msg.From)
		js["sender"] = recipientJSON(*d.msg.From)
	}
	return js
}

// handleDraft: GET (the draft) or DELETE (204) /users/{mb}/messages/{id}.
func (f *Fake) handleDraft(ex *exchange, w http.ResponseWriter, r *http.Request, rt route) {
	f.mu.Lock()
	d := f.drafts[rt.msgID]
	if d == nil || d.mailboxKey != key(rt.mailbox) {
		f.mu.Unlock()
		ex.writeError(w, r, notFoundItem())
		return
	}
	if r.Method == http.MethodGet {
		js := f.draftJSON(d)
		f.mu.Unlock()
		writeJSON(w, http.StatusOK, js)
		return
	}
	f.deleteDraftLocked(d.id)
	f.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (f *Fake) deleteDraftLocked(id string) {
	delete(f.drafts, id)
	for sid, s := range f.sessions {
		if s.draftID == id {
			delete(f.sessions, sid)
		}
	}
}

// handleSendDraft: POST /users/{mb}/messages/{id}/send → 202; the draft becomes a Sent.
func (f *Fake) handleSendDraft(ex *exchange, w http.ResponseWriter, r *http.Request, rt route) {
	resp, scripted := f.popScript(rt.mailbox)
	if scripted && !resp.acceptFirst {
		ex.writeResponse(w, r, resp, func() string {
			if d := f.lookupDraft(rt.mailbox, rt.msgID); d != nil {
				f.mu.Lock()
				defer f.mu.Unlock()
				return firstRecipient(&d.msg)
			}
			return ""
		})
		return
	}
	d := f.lookupDraft(rt.mailbox, rt.msgID)
	if d == nil {
		ex.writeError(w, r, notFoundItem())
		return
	}
	f.mu.Lock()
	msg := d.msg
	msg.Attachments = append([]Attachment(nil), d.msg.Attachments...)
	f.mu.Unlock()
	if e := f.checkSend(rt.mailbox, &msg, d.mime); e != nil {
		ex.writeError(w, r, e)
		return
	}
	f.mu.Lock()
	if f.drafts[d.id] != d { // sent or deleted concurrently
		f.mu.Unlock()
		ex.writeError(w, r, notFoundItem())
		return
	}
	f.deleteDraftLocked(d.id)
	f.sent = append(f.sent, Sent{Mailbox: rt.mailbox, Via: "draft", Message: msg, MIME: d.mime, Gzip: d.gzip})
	f.mu.Unlock()
	if scripted {
		ex.writeResponse(w, r, resp, nil)
		return
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
}

// handleAddAttachment: POST /users/{mb}/messages/{id}/attachments with a fileAttachment.
func (f *Fake) handleAddAttachment(ex *exchange, w http.ResponseWriter, r *http.Request, rt route, body []byte) {
	if f.lookupDraft(rt.mailbox, rt.msgID) == nil {
		ex.writeError(w, r, notFoundItem())
		return
	}
	if mediaType(r) != "application/json" {
		ex.writeError(w, r, gerr(415, "UnsupportedMediaType", "A supported MIME type could not be found that matches the content type of the request. The supported type(s) 'application/json' do not match the content type '%s'.", r.Header.Get("Content-Type")))
		return
	}
	var ja jsonAttachment
	if e := decodeJSON(body, &ja); e != nil {
		ex.writeError(w, r, e)
		return
	}
	a, e := ja.convert()
	if e != nil {
		ex.writeError(w, r, e)
		return
	}
	if len(a.Content) >= MaxAttachmentPostBytes {
		// Not from a source: Microsoft says to use an upload session from 3 MB on; the
		// 4 MB request limit normally triggers first.
		ex.writeError(w, r, gerr(413, "RequestEntityTooLarge", "The attachment is %d bytes; attachments of 3 MB or more need an upload session (createUploadSession).", len(a.Content)))
		return
	}
	id := newItemID()
	f.mu.Lock()
	d := f.drafts[rt.msgID]
	if d == nil {
		f.mu.Unlock()
		ex.writeError(w, r, notFoundItem())
		return
	}
	d.msg.Attachments = append(d.msg.Attachments, a)
	d.attachments = append(d.attachments, id)
	f.mu.Unlock()
	js := attachmentJSON(id, a)
	js["@odata.context"] = fmt.Sprintf("%s/$metadata#users('%s')/messages('%s')/attachments/$entity", f.GraphURL(), rt.mailbox, rt.msgID)
	writeJSON(w, http.StatusCreated, js)
}

type jsonAttachmentItem struct {
	AttachmentType string `json:"attachmentType"`
	Name           string `json:"name"`
	Size           *int64 `json:"size"`
	ContentType    string `json:"contentType"`
	IsInline       bool   `json:"isInline"`
	ContentID      string `json:"contentId"`
}

// handleCreateUploadSession: POST /users/{mb}/messages/{id}/attachments/createUploadSession
// with {"AttachmentItem":{"attachmentType":"file","name":…,"size":N,…}}.
func (f *Fake) handleCreateUploadSession(ex *exchange, w http.ResponseWriter, r *http.Request, rt route, body []byte) {
	if f.lookupDraft(rt.mailbox, rt.msgID) == nil {
		ex.writeError(w, r, notFoundItem())
		return
	}
	var req struct {
		AttachmentItem *jsonAttachmentItem `json:"attachmentItem"`
	}
	if e := decodeJSON(body, &req); e != nil {
		ex.writeError(w, r, e)
		return
	}
	it := req.AttachmentItem
	switch {
	case it == nil:
		ex.writeError(w, r, gerr(400, "ErrorInvalidParameter", "The value of the parameter 'AttachmentItem' is empty."))
		return
	case !strings.EqualFold(it.AttachmentType, "file"):
		ex.writeError(w, r, gerr(400, "ErrorInvalidParameter", "The value of the parameter 'AttachmentType' must be 'file' (got '%s').", it.AttachmentType))
		return
	case it.Name == "":
		ex.writeError(w, r, gerr(400, "ErrorInvalidParameter", "The value of the parameter 'Name' is empty."))
		return
	case it.Size == nil:
		ex.writeError(w, r, gerr(400, "ErrorInvalidParameter", "The value of the parameter 'Size' is empty."))
		return
	case *it.Size < MinUploadSessionBytes:
		ex.writeError(w, r, gerr(400, "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize", msgUploadSessionTooSmall))
		return
	case *it.Size > MaxUploadSessionBytes:
		ex.writeError(w, r, gerr(400, "ErrorAttachmentSizeLimitExceeded", "The attachment size %d exceeds the upload session maximum of 150 MB.", *it.Size))
		return
	}
	s := &uploadSession{
		id:        randomString(24),
		authToken: randomString(48),
		draftID:   rt.msgID,
		mailbox:   rt.mailbox,
		attachment: Attachment{Name: it.Name, ContentType: it.ContentType, ContentID: it.ContentID,
			IsInline: it.IsInline, ViaUploadSession: true},
		size:    *it.Size,
		expires: time.Now().Add(24 * time.Hour).UTC(),
	}
	f.mu.Lock()
	f.sessions[s.id] = s
	f.mu.Unlock()
	writeJSON(w, http.StatusCreated, map[string]any{
		"@odata.context":     f.GraphURL() + "/$metadata#microsoft.graph.uploadSession",
		"uploadUrl":          f.graph.URL + "/upload/" + s.id + "?authtoken=" + s.authToken,
		"expirationDateTime": s.expires.Format(time.RFC3339Nano),
		"nextExpectedRanges": []string{"0-"},
	})
}

var contentRangeRE = regexp.MustCompile(`^bytes (\d+)-(\d+)/(\d+)$`)

// serveUpload serves the pre-authenticated uploadUrl: PUT a slice, GET the session state,
// DELETE to cancel.
//
// Microsoft documents the uploadUrl as pre-authenticated (an authtoken in the query) and
// says not to send an Authorization header with the PUTs; the fake rejects any request
// to the upload URL that carries one with 400 (and records it, see Requests). The Graph
// SDK attaches its bearer token to every request whose host is in its allowed-host list,
// so a client must not route upload requests through an authenticating adapter whose
// allowed hosts include the upload host.
func (f *Fake) serveUpload(ex *exchange, w http.ResponseWriter, r *http.Request) {
	sid := strings.TrimPrefix(r.URL.Path, "/upload/")
	f.mu.Lock()
	s := f.sessions[sid]
	f.mu.Unlock()
	if s == nil {
		ex.writeError(w, r, gerr(404, "ErrorItemNotFound", "The upload session was not found (completed, cancelled, or its draft was deleted or sent)."))
		return
	}
	leave, ok := f.admit(ex, w, r, s.mailbox)
	defer leave()
	if !ok {
		return
	}
	if r.Header.Get("Authorization") != "" {
		ex.writeError(w, r, gerr(400, "BadRequest", "The upload URL is pre-authenticated: do not send an Authorization header with upload requests."))
		return
	}
	if r.URL.Query().Get("authtoken") != s.authToken {
		ex.writeError(w, r, gerr(401, "InvalidAuthenticationToken", "The authtoken of the upload URL is missing or invalid."))
		return
	}
	switch r.Method {
	case http.MethodGet:
		f.mu.Lock()
		next := s.next
		f.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]any{
			"expirationDateTime": s.expires.Format(time.RFC3339Nano),
			"nextExpectedRanges": []string{strconv.FormatInt(next, 10) + "-"},
		})
	case http.MethodDelete:
		f.mu.Lock()
		delete(f.sessions, s.id)
		f.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	case http.MethodPut:
		f.uploadSlice(ex, w, r, s)
	default:
		w.Header().Set("Allow", "PUT, GET, DELETE")
		ex.writeError(w, r, gerr(405, "MethodNotAllowed", "The HTTP method '%s' is not allowed for an upload URL.", r.Method))
	}
}

func (f *Fake) uploadSlice(ex *exchange, w http.ResponseWriter, r *http.Request, s *uploadSession) {
	if ce := r.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		ex.writeError(w, r, gerr(400, "BadRequest", "Content-Encoding '%s' is not supported for upload slices; send the raw bytes.", ce))
		return
	}
	cr := r.Header.Get("Content-Range")
	mm := contentRangeRE.FindStringSubmatch(strings.TrimSpace(cr))
	if mm == nil {
		ex.writeError(w, r, gerr(400, "InvalidContentRange", "The Content-Range header '%s' is missing or malformed; expected 'bytes {start}-{end}/{total}'.", cr))
		return
	}
	start, _ := strconv.ParseInt(mm[1], 10, 64)
	end, _ := strconv.ParseInt(mm[2], 10, 64)
	total, _ := strconv.ParseInt(mm[3], 10, 64)
	length := end - start + 1
	f.mu.Lock()
	next := s.next
	f.mu.Unlock()
	switch {
	case total != s.size:
		ex.writeError(w, r, gerr(400, "InvalidContentRange", "The total length %d in Content-Range does not match the upload session size %d.", total, s.size))
		return
	case end < start || end >= total:
		ex.writeError(w, r, gerr(400, "InvalidContentRange", "The Content-Range '%s' is not a valid range of a %d-byte file.", cr, s.size))
		return
	case start != next:
		ex.writeError(w, r, gerr(416, "RequestedRangeNotSatisfiable", "The range starting at byte %d was not expected; nextExpectedRanges is ['%d-'].", start, next))
		return
	case length > MaxUploadSliceBytes:
		ex.writeError(w, r, gerr(400, "InvalidContentRange", "An upload slice may be at most 4 MB (%d bytes); this one is %d bytes.", MaxUploadSliceBytes, length))
		return
	case r.ContentLength != length:
		ex.writeError(w, r, gerr(400, "InvalidContentLength", "Content-Length %d does not match the Content-Range length %d.", r.ContentLength, length))
		return
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, length+1))
	if err != nil || int64(len(data)) != length {
		ex.writeError(w, r, gerr(400, "InvalidContentLength", "Received %d bytes, expected %d.", len(data), length))
		return
	}

	f.mu.Lock()
	if f.sessions[s.id] != s || s.next != start {
		next := s.next
		f.mu.Unlock()
		ex.writeError(w, r, gerr(416, "RequestedRangeNotSatisfiable", "The range starting at byte %d was not expected; nextExpectedRanges is ['%d-'].", start, next))
		return
	}
	s.data = append(s.data, data...)
	s.next = end + 1
	if s.next < s.size {
		next := s.next
		f.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]any{
			"expirationDateTime": s.expires.Format(time.RFC3339Nano),
			"nextExpectedRanges": []string{strconv.FormatInt(next, 10) + "-"},
		})
		return
	}
	delete(f.sessions, s.id)
	d := f.drafts[s.draftID]
	if d == nil {
		f.mu.Unlock()
		ex.writeError(w, r, notFoundItem())
		return
	}
	a := s.attachment
	a.Content = s.data
	id := newItemID()
	d.msg.Attachments = append(d.msg.Attachments, a)
	d.attachments = append(d.attachments, id)
	f.mu.Unlock()
	w.Header().Set("Location", fmt.Sprintf("%s/api/v2.0/Users('%s')/Messages('%s')/Attachments('%s')", f.graph.URL, s.mailbox, s.draftID, id))
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}
