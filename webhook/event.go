package webhook

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
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
