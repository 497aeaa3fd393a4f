package graph

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/microsoftgraph/msgraph-sdk-go/models"
	"github.com/microsoftgraph/msgraph-sdk-go/users"

	"github.com/mailgate/mailgate/mailerr"
	"github.com/mailgate/mailgate/senders"
)

// sendDraft sends a message too large for one request: it creates a draft without the
// attachments, adds each attachment (under 3 MB with one request, larger through an
// upload session in slices under 4 MB, straight from the message's memory), then sends
// the draft. Until that last request nothing is delivered, so any earlier failure deletes
// the draft and says nothing was sent. Graph saves such a message in Sent Items whatever
// saveToSentItems says; the app needs Mail.ReadWrite besides Mail.Send.
func (s *Sender) sendDraft(ctx context.Context, mailbox string, msg *senders.Message, c *senders.Content) error {
	user := s.users.ByUserId(mailbox)
	var draft models.Messageable
	err := s.call(ctx, "create draft", mailbox, false, func(ctx context.Context) error {
		var err error
		draft, err = user.Messages().Post(ctx, s.message(msg, c, false), nil)
		return err
	})
	if err != nil {
		return err
	}
	if draft.GetId() == nil {
		return mailerr.New(mailerr.Unavailable, "Graph created a draft without an id; nothing was sent")
	}
	id := *draft.GetId()
	item := user.Messages().ByMessageId(id)
	sent := false
	defer func() {
		if sent {
			return
		}
		// Best effort: a leftover draft is untidy, not harmful.
		if err := item.Delete(context.WithoutCancel(ctx), nil); err != nil {
			s.log.Warn("could not delete an unsent draft", "mailbox", mailbox, "error", err)
		}
	}()
	for i, a := range c.Attachments {
		op := fmt.Sprintf("attachment %d of %d", i+1, len(c.Attachments))
		if len(a.Content) < directAttachmentLimit {
			err = s.call(ctx, op, mailbox, false, func(ctx context.Context) error {
				_, err := item.Attachments().Post(ctx, fileAttachment(a), nil)
				return err
			})
		} else {
			err = s.uploadAttachment(ctx, mailbox, item, a, op)
		}
		if err != nil {
			return err
		}
	}
	err = s.call(ctx, "send draft", mailbox, true, func(ctx context.Context) error {
		return item.Send().Post(ctx, nil)
	})
	if e := (*mailerr.Error)(nil); err == nil || errors.As(err, &e) && e.Kind == mailerr.OutcomeUnknown {
		sent = true // delivered, or maybe: the draft is no longer ours to delete
	}
	return err
}

// uploadAttachment creates an upload session for a and PUTs it in order, slice by slice.
// Upload URLs are pre-authenticated: they get no token.
func (s *Sender) uploadAttachment(ctx context.Context, mailbox string, item *users.ItemMessagesMessageItemRequestBuilder, a senders.Attachment, op string) error {
	body := users.NewItemMessagesItemAttachmentsCreateUploadSessionPostRequestBody()
	ai := models.NewAttachmentItem()
	ai.SetAttachmentType(ptr(models.FILE_ATTACHMENTTYPE))
	ai.SetName(ptr(a.Filename))
	ai.SetContentType(ptr(a.ContentType))
	ai.SetSize(ptr(int64(len(a.Content))))
	if a.ContentID != "" {
		ai.SetIsInline(ptr(true))
		ai.SetContentId(ptr(a.ContentID))
	}
	body.SetAttachmentItem(ai)
	var session models.UploadSessionable
	err := s.call(ctx, op+": upload session", mailbox, false, func(ctx context.Context) error {
		var err error
		session, err = item.Attachments().CreateUploadSession().Post(ctx, body, nil)
		return err
	})
	if err != nil {
		return err
	}
	if session.GetUploadUrl() == nil {
		return mailerr.New(mailerr.Unavailable, "Graph opened an upload session without a URL; nothing was sent")
	}
	url, total := *session.GetUploadUrl(), len(a.Content)
	for start := 0; start < total; start += uploadSlice {
		end := min(start+uploadSlice, total)
		err := s.call(ctx, op+": upload", mailbox, false, func(ctx context.Context) error {
			return s.putSlice(ctx, url, a.Content[start:end], start, total)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func (s *Sender) putSlice(ctx context.Context, url string, slice []byte, start, total int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, bytes.NewReader(slice))
	if err != nil {
		return err
	}
	req.ContentLength = int64(len(slice))
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, start+len(slice)-1, total))
	resp, err := s.upload.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusCreated {
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	ue := &uploadError{graphError{status: resp.StatusCode, header: resp.Header}}
	var env struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10)); json.Unmarshal(b, &env) == nil {
		ue.code, ue.message = env.Error.Code, env.Error.Message
	}
	return ue
}

// uploadError is a failed upload-session PUT.
type uploadError struct{ graphError }

func (e *uploadError) Error() string {
	return "upload session: " + strconv.Itoa(e.status) + " " + e.code + " " + e.message
}
