package graph

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"mime"
	"net/mail"
	"strings"

	gomessage "github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // decode legacy charsets of old devices
	gomail "github.com/emersion/go-message/mail"
	abstractions "github.com/microsoft/kiota-abstractions-go"
	"github.com/microsoftgraph/msgraph-sdk-go/models/odataerrors"

	"github.com/mailgate/mailgate/mailaddr"
	"github.com/mailgate/mailgate/mailerr"
	"github.com/mailgate/mailgate/senders"
)

// rawFits reports whether a raw message, base64-encoded, fits in one Graph request.
func rawFits(msg *senders.Message) bool {
	return (msg.RawSize()+4096)/3*4 <= requestLimit // + room for the Bcc field
}

// blindRecipients are the envelope recipients the header does not name: Graph's MIME
// form has no envelope, so they travel in a Bcc field.
func blindRecipients(msg *senders.Message) []string {
	named := map[string]bool{}
	for _, a := range msg.HeaderRecipients() {
		named[mailaddr.Key(a)] = true
	}
	var out []string
	for _, r := range msg.Recipients {
		if !named[mailaddr.Key(r)] {
			out = append(out, r)
		}
	}
	return out
}

// sendMIME sends a raw message with the MIME form of sendMail: the message base64-encoded
// as a text/plain body. The SDK has no typed call for it, so this builds the request
// itself and sends it through the same adapter (same token, same error mapping).
func (s *Sender) sendMIME(ctx context.Context, mailbox string, msg *senders.Message) error {
	var raw bytes.Buffer
	if _, err := msg.WriteRawWithBcc(&raw, blindRecipients(msg)); err != nil {
		return mailerr.Wrap(mailerr.Internal, err, "could not write the message")
	}
	body := make([]byte, base64.StdEncoding.EncodedLen(raw.Len()))
	base64.StdEncoding.Encode(body, raw.Bytes())
	return s.call(ctx, "sendMail (MIME)", mailbox, true, func(ctx context.Context) error {
		req := abstractions.NewRequestInformationWithMethodAndUrlTemplateAndPathParameters(
			abstractions.POST, "{+baseurl}/users/{user%2Did}/sendMail",
			map[string]string{"baseurl": s.users.BaseRequestBuilder.PathParameters["baseurl"], "user%2Did": mailbox})
		req.Headers.TryAdd("Accept", "application/json")
		req.SetStreamContentAndContentType(body, "text/plain")
		return s.users.BaseRequestBuilder.RequestAdapter.SendNoContent(ctx, req, abstractions.ErrorMappings{
			"XXX": odataerrors.CreateODataErrorFromDiscriminatorValue,
		})
	})
}

// contentFromMIME reads a raw message into structured content, for the draft path of a
// raw message over 4 MB. Graph's JSON keeps what mail clients show: From, To, Cc,
// Reply-To, Subject, one text or HTML body, attachments and inline parts, X- headers.
// Other header fields do not survive this path; envelope recipients become To/Cc/Bcc.
func contentFromMIME(msg *senders.Message) (*senders.Content, error) {
	var raw bytes.Buffer
	if _, err := msg.WriteTo(&raw); err != nil {
		return nil, mailerr.Wrap(mailerr.Internal, err, "could not write the message")
	}
	r, err := gomail.CreateReader(&raw)
	if err != nil && !gomessage.IsUnknownCharset(err) {
		return nil, mailerr.Wrap(mailerr.Invalid, err, "rawMime: the message does not parse as MIME")
	}
	defer r.Close()
	c := &senders.Content{From: msg.From}
	h := r.Header
	c.Subject, _ = h.Subject()
	lists := map[string]*[]mail.Address{"To": &c.To, "Cc": &c.Cc, "Reply-To": &c.ReplyTo}
	named := map[string]bool{}
	for field, dst := range lists {
		addrs, err := h.AddressList(field)
		if err != nil {
			// A display name in Latin-1, say: read it as the shim and the API do.
			addrs, _ = senders.ParseAddressList(h.Get(field))
		}
		for _, a := range addrs {
			*dst = append(*dst, mail.Address{Name: a.Name, Address: a.Address})
			if field != "Reply-To" {
				named[mailaddr.Key(a.Address)] = true
			}
		}
	}
	// The envelope decides who receives it: header names outside it are dropped, blind
	// recipients added as Bcc.
	inEnvelope := map[string]bool{}
	for _, rcpt := range msg.Recipients {
		inEnvelope[mailaddr.Key(rcpt)] = true
		if !named[mailaddr.Key(rcpt)] {
			c.Bcc = append(c.Bcc, mail.Address{Address: rcpt})
		}
	}
	c.To = keep(c.To, inEnvelope)
	c.Cc = keep(c.Cc, inEnvelope)
	fields := h.Fields()
	for fields.Next() {
		if k := fields.Key(); strings.HasPrefix(strings.ToLower(k), "x-") {
			v, _ := fields.Text()
			c.Headers = append(c.Headers, senders.Header{Name: k, Value: v})
		}
	}
	for {
		p, err := r.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil && !gomessage.IsUnknownCharset(err) {
			return nil, mailerr.Wrap(mailerr.Invalid, err, "rawMime: a MIME part does not parse")
		}
		b, err := io.ReadAll(p.Body)
		if err != nil {
			return nil, mailerr.Wrap(mailerr.Invalid, err, "rawMime: a MIME part does not decode")
		}
		switch ph := p.Header.(type) {
		case *gomail.InlineHeader:
			ct, _, _ := ph.ContentType()
			cid := strings.Trim(ph.Get("Content-Id"), "<> ")
			switch {
			case ct == "text/html" && c.HTML == "" && cid == "":
				c.HTML = string(b)
			case (ct == "text/plain" || ct == "") && c.Text == "" && cid == "":
				c.Text = string(b)
			default:
				c.Attachments = append(c.Attachments, senders.Attachment{
					Filename: partName(ph.Get("Content-Type"), "inline"), ContentType: orOctet(ct), ContentID: cid, Content: b})
			}
		case *gomail.AttachmentHeader:
			name, _ := ph.Filename()
			ct, _, _ := ph.ContentType()
			c.Attachments = append(c.Attachments, senders.Attachment{
				Filename: orDefault(name, "attachment"), ContentType: orOctet(ct), Content: b})
		}
	}
	if len(c.To)+len(c.Cc)+len(c.Bcc) == 0 {
		return nil, mailerr.New(mailerr.Invalid, "rawMime: no recipients")
	}
	return c, nil
}

func keep(list []mail.Address, set map[string]bool) []mail.Address {
	out := list[:0]
	for _, a := range list {
		if set[mailaddr.Key(a.Address)] {
			out = append(out, a)
		}
	}
	return out
}

func partName(contentType, fallback string) string {
	if _, params, err := mime.ParseMediaType(contentType); err == nil && params["name"] != "" {
		return params["name"]
	}
	return fallback
}

func orOctet(ct string) string { return orDefault(ct, "application/octet-stream") }

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
