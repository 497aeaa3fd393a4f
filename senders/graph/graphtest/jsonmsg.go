package graphtest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"
)

// JSON shapes of the Graph message resource. encoding/json matches object keys to these
// tags case-insensitively, at every level, which is what Graph accepts: the Go SDK sends
// {"Message":…,"SaveToSentItems":…} while hand-written clients send lower camel case.

type jsonEmail struct {
	Address string `json:"address"`
	Name    string `json:"name"`
}

type jsonRecipient struct {
	EmailAddress *jsonEmail `json:"emailAddress"`
}

type jsonItemBody struct {
	ContentType string `json:"contentType"`
	Content     string `json:"content"`
}

type jsonHeader struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type jsonAttachment struct {
	ODataType    string  `json:"@odata.type"`
	Name         string  `json:"name"`
	ContentType  string  `json:"contentType"`
	ContentBytes *string `json:"contentBytes"`
	ContentID    string  `json:"contentId"`
	IsInline     bool    `json:"isInline"`
}

type jsonMessage struct {
	Subject                string           `json:"subject"`
	Body                   *jsonItemBody    `json:"body"`
	From                   *jsonRecipient   `json:"from"`
	ToRecipients           []jsonRecipient  `json:"toRecipients"`
	CcRecipients           []jsonRecipient  `json:"ccRecipients"`
	BccRecipients          []jsonRecipient  `json:"bccRecipients"`
	ReplyTo                []jsonRecipient  `json:"replyTo"`
	InternetMessageHeaders []jsonHeader     `json:"internetMessageHeaders"`
	Attachments            []jsonAttachment `json:"attachments"`
}

type jsonSendMail struct {
	Message         *jsonMessage    `json:"message"`
	SaveToSentItems json.RawMessage `json:"saveToSentItems"`
}

func badJSON() *graphError { return gerr(400, "BadRequest", msgInvalidJSON) }

func decodeJSON(body []byte, v any) *graphError {
	if len(bytes.TrimSpace(body)) == 0 {
		return badJSON()
	}
	if err := json.Unmarshal(body, v); err != nil {
		return badJSON()
	}
	return nil
}

func parseSendMailJSON(body []byte) (submission, *graphError) {
	var req jsonSendMail
	if e := decodeJSON(body, &req); e != nil {
		return submission{}, e
	}
	if req.Message == nil {
		return submission{}, gerr(400, "ErrorInvalidParameter", "The value of the parameter 'Message' is empty.")
	}
	m, e := req.Message.convert()
	if e != nil {
		return submission{}, e
	}
	sub := submission{via: "json", msg: m}
	if raw := bytes.TrimSpace(req.SaveToSentItems); len(raw) > 0 && string(raw) != "null" {
		var b bool
		var s string
		switch {
		case json.Unmarshal(raw, &b) == nil:
		// Microsoft's own sample sends "false" as a string; Graph accepts it.
		case json.Unmarshal(raw, &s) == nil && (strings.EqualFold(s, "true") || strings.EqualFold(s, "false")):
			b = strings.EqualFold(s, "true")
		default:
			return submission{}, gerr(400, "RequestBodyRead", "Cannot convert the literal '%s' to the expected type 'Edm.Boolean'.", string(raw))
		}
		sub.save = &b
	}
	return sub, nil
}

func parseMessageJSON(body []byte) (*Message, *graphError) {
	var jm jsonMessage
	if e := decodeJSON(body, &jm); e != nil {
		return nil, e
	}
	return jm.convert()
}

func (jm *jsonMessage) convert() (*Message, *graphError) {
	m := &Message{Subject: jm.Subject, BodyType: "text"}
	if jm.Body != nil {
		switch ct := strings.ToLower(jm.Body.ContentType); ct {
		case "", "text":
		case "html":
			m.BodyType = "html"
		default:
			return nil, gerr(400, "RequestBodyRead", "Requested value '%s' was not found.", jm.Body.ContentType)
		}
		m.Body = jm.Body.Content
	}
	if jm.From != nil && jm.From.EmailAddress != nil {
		m.From = &Address{Address: jm.From.EmailAddress.Address, Name: jm.From.EmailAddress.Name}
	}
	m.To = addresses(jm.ToRecipients)
	m.Cc = addresses(jm.CcRecipients)
	m.Bcc = addresses(jm.BccRecipients)
	m.ReplyTo = addresses(jm.ReplyTo)
	for _, h := range jm.InternetMessageHeaders {
		if len(h.Name) < 2 || !strings.EqualFold(h.Name[:2], "x-") {
			return nil, gerr(400, "InvalidInternetMessageHeader", msgInvalidHeaderName, h.Name)
		}
		if m.Headers == nil {
			m.Headers = map[string]string{}
		}
		m.Headers[h.Name] = h.Value
	}
	for _, ja := range jm.Attachments {
		a, e := ja.convert()
		if e != nil {
			return nil, e
		}
		m.Attachments = append(m.Attachments, a)
	}
	return m, nil
}

func addresses(rs []jsonRecipient) []Address {
	var out []Address
	for _, r := range rs {
		if r.EmailAddress == nil {
			out = append(out, Address{})
			continue
		}
		out = append(out, Address{Address: r.EmailAddress.Address, Name: r.EmailAddress.Name})
	}
	return out
}

func (ja *jsonAttachment) convert() (Attachment, *graphError) {
	if !strings.EqualFold(strings.TrimPrefix(ja.ODataType, "#"), "microsoft.graph.fileAttachment") {
		if ja.ODataType == "" {
			return Attachment{}, gerr(400, "BadRequest", "An attachment needs '@odata.type' (the attachment type is abstract); graphtest supports '#microsoft.graph.fileAttachment'.")
		}
		return Attachment{}, gerr(400, "BadRequest", "Attachment type '%s' is not supported by graphtest; use '#microsoft.graph.fileAttachment'.", ja.ODataType)
	}
	a := Attachment{Name: ja.Name, ContentType: ja.ContentType, ContentID: ja.ContentID, IsInline: ja.IsInline}
	if ja.ContentBytes != nil {
		b, err := base64.StdEncoding.DecodeString(*ja.ContentBytes)
		if err != nil {
			return Attachment{}, gerr(400, "BadRequest", "Invalid base64 string in contentBytes of attachment '%s'.", ja.Name)
		}
		a.Content = b
	}
	return a, nil
}

// Graph JSON renderings.

func recipientJSON(a Address) map[string]any {
	return map[string]any{"emailAddress": map[string]any{"name": a.Name, "address": a.Address}}
}

func recipientsJSON(as []Address) []any {
	out := []any{}
	for _, a := range as {
		out = append(out, recipientJSON(a))
	}
	return out
}

func attachmentJSON(id string, a Attachment) map[string]any {
	ct := any(a.ContentType)
	if a.ContentType == "" {
		ct = nil
	}
	cid := any(a.ContentID)
	if a.ContentID == "" {
		cid = nil
	}
	return map[string]any{
		"@odata.type":          "#microsoft.graph.fileAttachment",
		"id":                   id,
		"lastModifiedDateTime": graphDate() + "Z",
		"name":                 a.Name,
		"contentType":          ct,
		"size":                 len(a.Content),
		"isInline":             a.IsInline,
		"contentId":            cid,
	}
}
