package server

import (
	"net/mail"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mailgate/mailgate/senders"
	"github.com/mailgate/mailgate/server/apikey"
	"github.com/mailgate/mailgate/server/store"
)

// What a throttled caller reads and what an operator's dashboards count, for each thing
// that can refuse a request: both are read by people and scripts, so they stay as they
// are worded.
func TestRefusalWording(t *testing.T) {
	t.Parallel()
	key := &apikey.Key{Name: "billing-app", MessagesPerMinute: 7}
	mb := MailboxLimits{MessagesPerMinute: 30, RecipientsPerDay: 10000}
	mailbox := store.GroupID{Kind: store.Mailbox, Name: "a@example.com"}
	backend := store.GroupID{Kind: store.Backend, Name: "relay"}
	for _, tc := range []struct {
		refusal      store.Refusal
		message      string
		scope, limit string
	}{
		{store.Refusal{Group: mailbox, Limit: store.MessagesPerMinute},
			"mailbox a@example.com may send 30 messages per minute", "mailbox", "messages_per_minute"},
		{store.Refusal{Group: mailbox, Limit: store.RecipientsPerDay},
			"mailbox a@example.com may send to 10000 recipients per day", "mailbox", "recipients_per_day"},
		{store.Refusal{Group: mailbox, Paused: true},
			"Microsoft 365 throttled mailbox a@example.com; mailgate holds its messages back for every replica", "mailbox", "pause"},
		{store.Refusal{Group: backend, Paused: true},
			"Microsoft 365 throttled backend relay; mailgate holds its messages back for every replica", "backend", "pause"},
		{store.Refusal{Group: store.GroupID{Kind: store.APIKey, Name: "billing-app"}, Limit: store.MessagesPerMinute},
			`API key "billing-app" may send 7 messages per minute`, "key", "messages_per_minute"},
		// Nothing refuses so today; the wording still names what refused.
		{store.Refusal{Group: backend, Limit: store.MessagesPerMinute},
			"rate limit be:relay/msgs reached", "backend", "messages_per_minute"},
	} {
		t.Run(tc.refusal.String(), func(t *testing.T) {
			t.Parallel()
			if got := describeRefusal(tc.refusal, mb, key); got != tc.message {
				t.Errorf("message %q, want %q", got, tc.message)
			}
			m := newMetrics()
			m.refused(tc.refusal)
			if n := testutil.ToFloat64(m.throttled.WithLabelValues(tc.scope, tc.limit)); n != 1 {
				t.Errorf("mailgate_throttled_total{scope=%q,limit=%q} = %v, want 1", tc.scope, tc.limit, n)
			}
			if n := testutil.CollectAndCount(m.throttled); n != 1 {
				t.Errorf("%d series, want the one", n)
			}
		})
	}
}

// The group a throttle by Microsoft pauses is the one the message is sent as: the
// mailbox, or the backend that sends as none; never the API key's.
func TestAdmissionPauseTarget(t *testing.T) {
	t.Parallel()
	s := &Service{
		scopes:  map[string]senders.Scope{"relay": senders.ScopeBackend},
		mailbox: MailboxLimits{MessagesPerMinute: 30, RecipientsPerDay: 10000},
	}
	msg := &senders.Message{From: mail.Address{Address: "App@Example.com"}, Recipients: []string{"a@example.org", "b@example.org"}}
	for _, tc := range []struct {
		name, backend string
		keyLimit      int
		target        store.GroupID
		groups        []store.GroupID
	}{
		{"mailbox", "graph", 0, store.GroupID{Kind: store.Mailbox, Name: "app@example.com"},
			[]store.GroupID{{Kind: store.Mailbox, Name: "app@example.com"}}},
		{"mailbox and key", "graph", 5, store.GroupID{Kind: store.Mailbox, Name: "app@example.com"},
			[]store.GroupID{{Kind: store.Mailbox, Name: "app@example.com"}, {Kind: store.APIKey, Name: "app"}}},
		{"relay and key", "relay", 5, store.GroupID{Kind: store.Backend, Name: "relay"},
			[]store.GroupID{{Kind: store.Backend, Name: "relay"}, {Kind: store.APIKey, Name: "app"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			adm := s.admission(&apikey.Key{Name: "app", MessagesPerMinute: tc.keyLimit}, msg, tc.backend)
			if adm.PauseTarget != tc.target {
				t.Errorf("pause target %v, want %v", adm.PauseTarget, tc.target)
			}
			var groups []store.GroupID
			for _, g := range adm.Groups {
				groups = append(groups, g.ID())
			}
			if !slices.Equal(groups, tc.groups) {
				t.Errorf("groups %v, want %v", groups, tc.groups)
			}
			// The store accepts it: the target is one of the groups.
			if _, err := store.NewMemory().Admit(t.Context(), adm); err != nil {
				t.Error(err)
			}
		})
	}
	mbLimits := s.admission(&apikey.Key{Name: "app"}, msg, "graph").Groups[0].Limits
	want := []store.Limit{
		{ID: store.MessagesPerMinute, Count: 30, Period: time.Minute, Cost: 1},
		{ID: store.RecipientsPerDay, Count: 10000, Period: 24 * time.Hour, Cost: 2},
	}
	if !slices.Equal(mbLimits, want) {
		t.Errorf("mailbox limits %+v, want %+v", mbLimits, want)
	}
}
