// Package discard is a backend that accepts every message and drops it: for load tests
// and dry runs of a configuration.
package discard

import (
	"context"
	"time"

	"github.com/mailgate/mailgate/senders"
)

// Type is the `type: discard` backend.
var Type = senders.Type{Name: "discard", NewConfig: func() senders.Config { return new(Config) }}

var (
	_ senders.Config = (*Config)(nil)
	_ senders.Sender = (*Sender)(nil)
)

// Config is the `type: discard` backend section.
type Config struct {
	senders.ConfigDefaults `yaml:"-"`
	// Delay makes every send take this long, to stand in for a real backend's latency
	// in load tests.
	Delay time.Duration `yaml:"delay"`
}

// Validate implements senders.Config.
func (c *Config) Validate() error {
	if c.Delay < 0 {
		return senders.Fieldf("delay", "must not be negative")
	}
	return nil
}

// Open implements senders.Config.
func (c *Config) Open(senders.Env) (senders.Sender, error) { return &Sender{delay: c.Delay}, nil }

// Sender accepts and drops messages.
type Sender struct {
	senders.SenderDefaults
	delay time.Duration
}

// New returns a Sender that takes delay per message.
func New(delay time.Duration) *Sender { return &Sender{delay: delay} }

// Send implements senders.Sender.
func (s *Sender) Send(ctx context.Context, msg *senders.Message) (*senders.Result, error) {
	if s.delay > 0 {
		t := time.NewTimer(s.delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return &senders.Result{Status: senders.Sent, Accepted: msg.Recipients}, nil
}
