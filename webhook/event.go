package webhook

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// Event is one notification's body, in the shape the Standard Webhooks specification
// recommends: what happened (Type, such as "message.sent"), when, and its data.
type Event struct {
	Type      string    `json:"type"`
	Timestamp time.Time `json:"timestamp"`
	Data      any       `json:"data"`
}

// TestEventType is the type of the event `mailgate webhooks test` sends.
const TestEventType = "webhook.test"

// Body is the event as JSON.
func (e Event) Body() ([]byte, error) { return json.Marshal(e) }

// NewID returns a new event id, "evt_" and 26 random characters: the webhook-id a
// receiver deduplicates retries with.
func NewID() string {
	b := make([]byte, 16)
	rand.Read(b) // never fails (crypto/rand)
	return "evt_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
}

// The event types of a message, as a webhook's events list names them; the body's type
// is "message." and the name.
const (
	EventQueued    = "queued"
	EventDeferred  = "deferred"
	EventSent      = "sent"
	EventFailed    = "failed"
	EventCanceled  = "canceled"
	EventUnknown   = "unknown"
	EventDelivered = "delivered" // from Microsoft's message trace: not sent yet
	EventBounced   = "bounced"   // from Microsoft's message trace: not sent yet
)

// EventTypes are the event types, in the order a message may go through them.
var EventTypes = []string{EventQueued, EventDeferred, EventSent, EventFailed, EventCanceled, EventUnknown, EventDelivered, EventBounced}

// MessageEvent is what happened to a queued message, as the service reports it: the
// data of a "message.<Type>" event. It holds no message body and no secret.
type MessageEvent struct {
	// Type is one of EventTypes.
	Type string `json:"-"`
	// Sequence numbers the message's events: 0 when it was queued, then its attempt's
	// number (a canceled message's is its attempts so far + 1). Receivers that must
	// put a message's events in order use it: delivery after a retry may reorder them.
	Sequence int `json:"sequence"`
	// Time is when it happened.
	Time time.Time `json:"time"`

	ID        string            `json:"id"`
	MessageID string            `json:"messageId"`
	Key       string            `json:"key"`
	Route     string            `json:"route"`
	From      string            `json:"from"`
	Tags      map[string]string `json:"tags,omitempty"`
	Accepted  time.Time         `json:"acceptTime"`
	// Status is the message's status after the event: QUEUED, SENT, FAILED, CANCELED
	// or UNKNOWN.
	Status string `json:"status"`
	// The attempt the event is about (deferred, sent, failed, unknown): its backend,
	// outcome (SENT or the error's reason), the remote server's reply and mailgate's
	// error text.
	Backend string `json:"backend,omitempty"`
	Outcome string `json:"outcome,omitempty"`
	Reply   string `json:"reply,omitempty"`
	Error   string `json:"error,omitempty"`
	// NextAttempt is when a deferred message is tried again.
	NextAttempt *time.Time `json:"nextAttemptTime,omitempty"`
}

// EventID is the webhook-id of a message's event: the same for every endpoint and
// every retry, so a receiver can discard what it already has.
func (e MessageEvent) EventID() string {
	return "evt_" + e.ID + "_" + strconv.Itoa(e.Sequence)
}
