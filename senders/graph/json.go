package graph

import (
	"context"
	"net/mail"

	"github.com/microsoftgraph/msgraph-sdk-go/models"
	"github.com/microsoftgraph/msgraph-sdk-go/users"

	"github.com/mailgate/mailgate/senders"
)

// sendJSON sends a structured message in one sendMail request.
func (s *Sender) sendJSON(ctx context.Context, mailbox string, msg *senders.Message) error {
	body := users.NewItemSendMailPostRequestBody()
	body.SetMessage(s.message(msg, msg.Content, true))
	// Always explicit: the SDK's constructor presets false, which is not Graph's default.
	body.SetSaveToSentItems(ptr(s.saveToSentItems(msg)))
	return s.call(ctx, "sendMail", mailbox, true, func(ctx context.Context) error {
		return s.users.ByUserId(mailbox).SendMail().Post(ctx, body, nil)
	})
}

// saveToSentItems is the message's choice, else the backend's, else Graph's default (true).
func (s *Sender) saveToSentItems(msg *senders.Message) bool {
	switch {
	case msg.SaveToSentItems != nil:
		return *msg.SaveToSentItems
	case s.saveDefault != nil:
		return *s.saveDefault
	}
	return true
}

// message is the Graph form of c. Graph takes one body: with both text and html, html
// (Outlook derives the text from it). Attachments go in only when withAttachments.
func (s *Sender) message(msg *senders.Message, c *senders.Content, withAttachments bool) models.Messageable {
	m := models.NewMessage()
	if c.Subject != "" {
		m.SetSubject(ptr(c.Subject))
	}
	body := models.NewItemBody()
	if c.HTML != "" {
		body.SetContentType(ptr(models.HTML_BODYTYPE))
		body.SetContent(ptr(c.HTML))
	} else {
		body.SetContentType(ptr(models.TEXT_BODYTYPE))
		body.SetContent(ptr(c.Text))
	}
	m.SetBody(body)
	// From is the author; the URL's mailbox sends. Different ones need Send As.
	m.SetFrom(recipient(c.From))
	m.SetToRecipients(recipients(c.To))
	m.SetCcRecipients(recipients(c.Cc))
	m.SetBccRecipients(recipients(c.Bcc))
	if len(c.ReplyTo) > 0 {
		m.SetReplyTo(recipients(c.ReplyTo))
	}
	if msg.MessageID != "" {
		m.SetInternetMessageId(ptr(msg.MessageID))
	}
	if len(c.Headers) > 0 {
		var hs []models.InternetMessageHeaderable
		for _, h := range c.Headers {
			mh := models.NewInternetMessageHeader()
			mh.SetName(ptr(h.Name))
			mh.SetValue(ptr(h.Value))
			hs = append(hs, mh)
		}
		m.SetInternetMessageHeaders(hs)
	}
	if withAttachments && len(c.Attachments) > 0 {
		var as []models.Attachmentable
		for _, a := range c.Attachments {
			as = append(as, fileAttachment(a))
		}
		m.SetAttachments(as)
	}
	return m
}

func fileAttachment(a senders.Attachment) *models.FileAttachment {
	fa := models.NewFileAttachment()
	fa.SetName(ptr(a.Filename))
	fa.SetContentType(ptr(a.ContentType))
	fa.SetContentBytes(a.Content)
	if a.ContentID != "" {
		fa.SetIsInline(ptr(true))
		fa.SetContentId(ptr(a.ContentID))
	}
	return fa
}

func recipient(a mail.Address) models.Recipientable {
	ea := models.NewEmailAddress()
	ea.SetAddress(ptr(a.Address))
	if a.Name != "" {
		ea.SetName(ptr(a.Name))
	}
	r := models.NewRecipient()
	r.SetEmailAddress(ea)
	return r
}

func recipients(list []mail.Address) []models.Recipientable {
	out := make([]models.Recipientable, 0, len(list))
	for _, a := range list {
		out = append(out, recipient(a))
	}
	return out
}

// jsonSize bounds the size of c as a sendMail JSON request: base64 attachments, bodies
// escaped at worst ×6 for control characters (rare) and quotes/backslashes ×2.
func jsonSize(c *senders.Content) int {
	n := 2048 + 2*len(c.Subject) + escapedSize(c.Text) + escapedSize(c.HTML)
	for _, list := range [][]mail.Address{{c.From}, c.To, c.Cc, c.Bcc, c.ReplyTo} {
		for _, a := range list {
			n += 64 + 2*(len(a.Address)+len(a.Name))
		}
	}
	for _, h := range c.Headers {
		n += 32 + 2*(len(h.Name)+len(h.Value))
	}
	for _, a := range c.Attachments {
		n += 256 + 2*len(a.Filename) + (len(a.Content)+2)/3*4
	}
	return n
}

func escapedSize(s string) int {
	n := len(s)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			n++
		case c < 0x20:
			n += 5
		}
	}
	return n
}

func ptr[T any](v T) *T { return &v }
