package smtp

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/mailgate/mailgate/mailerr"
	"github.com/mailgate/mailgate/senders"
)

// deliver runs the mail transactions for msg on c. Recipients the server refuses for
// good are reported in the Result while the others get the message; when the server
// takes only some recipients per transaction (452 4.5.3, "too many recipients"), the
// rest follow in another transaction, as RFC 5321 §4.5.3.1.10 asks. healthy says
// whether c can carry another message.
func (s *Sender) deliver(ctx context.Context, c *conn, msg *senders.Message, body []byte) (res *senders.Result, healthy bool, err error) {
	stop := c.watch(ctx)
	defer stop()
	res = &senders.Result{Status: senders.Sent, Remote: c.host}
	var refused []refusal
	defer func() {
		if res != nil {
			for _, r := range refused {
				res.Rejected = append(res.Rejected, senders.RecipientError{Recipient: r.rcpt, Reply: r.reply.String()})
			}
		}
	}()
	pending := msg.Recipients
	for len(pending) > 0 {
		var accepted []string
		accepted, pending, healthy, err = s.transaction(c, msg, pending, body, &refused)
		if err != nil {
			if len(res.Accepted) == 0 {
				return nil, healthy, err
			}
			// An earlier transaction delivered the message to some recipients: that
			// cannot be undone, so the rest are reported as refused.
			reason := mailerr.Classify(err, mailerr.Unavailable).Msg
			for _, r := range append(accepted, pending...) {
				res.Rejected = append(res.Rejected, senders.RecipientError{Recipient: r, Reply: reason})
			}
			return res, healthy, nil
		}
		res.Accepted = append(res.Accepted, accepted...)
	}
	if len(res.Accepted) == 0 {
		return nil, true, allRefused(c.host, refused)
	}
	return res, true, nil
}

// transaction sends body to as many of rcpts as the server takes in one transaction.
// It returns those accepted and those deferred to the next transaction; permanent
// refusals are added to refused.
func (s *Sender) transaction(c *conn, msg *senders.Message, rcpts []string, body []byte, refused *[]refusal) (accepted, deferred []string, healthy bool, err error) {
	if err := c.step(func() error { return c.client.Mail(msg.EnvelopeFrom) }); err != nil {
		return nil, nil, s.abort(c, err), sessionError(c, "MAIL FROM", err)
	}
	for i, rcpt := range rcpts {
		err := c.step(func() error { return c.client.Rcpt(rcpt) })
		if err == nil {
			accepted = append(accepted, rcpt)
			continue
		}
		r, ok := replyOf(err)
		switch {
		case !ok:
			return nil, nil, false, sessionError(c, "RCPT TO", err)
		case (r.Code == 452 || r.Enhanced == "4.5.3") && len(accepted) > 0:
			deferred = rcpts[i:]
		case r.Code/100 == 5:
			*refused = append(*refused, refusal{rcpt, r})
			continue
		default:
			// A temporary refusal of one recipient (throttling, a busy server) holds
			// back the whole message, so that a retry sends it to everyone at once.
			return nil, nil, s.abort(c, err), sessionError(c, "RCPT TO", err)
		}
		break
	}
	if len(accepted) == 0 {
		return nil, nil, s.abort(c, nil), nil
	}
	if err := s.data(c, body); err != nil {
		return accepted, deferred, healthyAfter(err), err
	}
	return accepted, deferred, true, nil
}

// data sends the message. Once the final dot has gone out, a broken connection leaves
// the outcome unknown: the server may have accepted the message.
func (s *Sender) data(c *conn, body []byte) error {
	var w interface {
		Write([]byte) (int, error)
		Close() error
	}
	if err := c.step(func() (err error) { w, err = c.client.Data(); return err }); err != nil {
		return sessionError(c, "DATA", err)
	}
	if err := c.step(func() error { _, err := w.Write(body); return err }); err != nil {
		return sessionError(c, "DATA", err)
	}
	err := c.step(w.Close)
	if err == nil {
		return nil
	}
	if r, ok := replyOf(err); ok {
		return classify(c.host, "end of DATA", r)
	}
	return mailerr.Wrap(mailerr.OutcomeUnknown, err,
		"the connection to %s broke after the message was sent, before the server confirmed it; it may have been delivered: retry only with the same idempotency key", c.host)
}

// abort ends a failed transaction with RSET; it reports whether c is still usable.
func (s *Sender) abort(c *conn, cause error) bool {
	if cause != nil {
		if r, ok := replyOf(cause); !ok || r.Code == 421 {
			return false // the connection broke, or the server is closing it
		}
	}
	return c.reset() == nil
}

func healthyAfter(err error) bool {
	var r *replyError
	return errors.As(err, &r) && r.reply.Code != 421
}

// refusal is a recipient the server refused for good.
type refusal struct {
	rcpt  string
	reply Reply
}

// allRefused is the error for a message whose every recipient was refused for good:
// classified by the first refusal, listing them all.
func allRefused(host string, refused []refusal) error {
	var b strings.Builder
	for i, r := range refused {
		if i == 5 {
			fmt.Fprintf(&b, "; and %d more", len(refused)-i)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(r.rcpt + ": " + r.reply.String())
	}
	e := classify(host, "RCPT TO", refused[0].reply)
	e.Msg = fmt.Sprintf("%s refused every recipient (%s)", host, b.String())
	return e
}
