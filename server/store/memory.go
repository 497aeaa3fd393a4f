package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"
)

var _ Store = (*Memory)(nil)

// Memory is an in-process Store: correct for one replica, shared by nobody. It keeps
// at most DefaultMaxRecords message records and as many idempotency claims; past that
// the oldest go first, so a long-running test instance cannot grow without bound.
type Memory struct {
	mu  sync.Mutex
	now func() time.Time
	max int

	records map[string]memRecord
	order   []string // record keys in insertion order, for expiry and eviction

	claims map[string]*memClaim  // by scope + "\x00" + key
	expiry []claimExpiry         // claims' expiry times, in the order they were set
	logs   map[windowID]*window  // sliding windows, and Concurrent slots
	pauses map[GroupID]time.Time // pause ends
	ops    int                   // operations since the last sweep of windows and pauses
}

// windowID names one limit's window: limits of the same id in one group share it.
type windowID struct {
	group GroupID
	limit LimitID
}

type memRecord struct {
	value   []byte
	expires time.Time
}

// claimExpiry is one expiry time given to a claim. Claims get one lock TTL and then one
// retention each, so the times come in nearly sorted order: popping expired entries off
// the front keeps the sweep O(1) per operation.
type claimExpiry struct {
	key     string
	expires time.Time
}

type memClaim struct {
	fingerprint string
	token       string
	done        bool
	outcome     []byte
	expires     time.Time
}

// DefaultMaxRecords bounds Memory's records and, separately, its claims.
const DefaultMaxRecords = 100_000

// NewMemory returns an empty in-process store.
func NewMemory() *Memory {
	return &Memory{
		now:     time.Now,
		max:     DefaultMaxRecords,
		records: make(map[string]memRecord),
		claims:  make(map[string]*memClaim),
		logs:    make(map[windowID]*window),
		pauses:  make(map[GroupID]time.Time),
	}
}

// Admit implements Store.
func (m *Memory) Admit(_ context.Context, a *Admission) (*Ticket, error) {
	if err := a.invalid(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	m.sweepState(now)
	t := &Ticket{claim: a.Claim}
	var claimKey string
	if c := a.Claim; c != nil {
		claimKey = c.Scope + "\x00" + c.Key
		if cl, ok := m.claims[claimKey]; ok && now.Before(cl.expires) {
			switch {
			case cl.fingerprint != c.Fingerprint:
				t.Decision = Mismatch
			case cl.done:
				t.Decision, t.Outcome = Replay, cl.outcome
			default:
				t.Decision, t.RetryAfter = InFlight, cl.expires.Sub(now)
			}
			return t, nil
		}
	}
	token := newToken()
	if refused, wait := m.take(now, a.Groups, token); refused != nil {
		t.Decision, t.Refused, t.RetryAfter = Throttled, refused, wait
		return t, nil
	}
	t.token = token
	if c := a.Claim; c != nil {
		m.claims[claimKey] = &memClaim{fingerprint: c.Fingerprint, token: t.token, expires: now.Add(c.LockTTL)}
		m.expiry = append(m.expiry, claimExpiry{claimKey, now.Add(c.LockTTL)})
		m.evictClaims()
	}
	t.Decision, t.groups = Proceed, a.Groups
	return t, nil
}

// window is one limit's sliding-window log: what was taken when, oldest first. A
// Concurrent limit's is its slots: one entry of cost 1 per holder, which Complete removes
// and which lapses after the period like any entry.
type window struct {
	entries []windowEntry
	sum     int
	period  time.Duration // the limit's, as last used: for the sweep
}

type windowEntry struct {
	at    time.Time
	cost  int
	token string
}

// prune forgets the entries older than period.
func (w *window) prune(now time.Time, period time.Duration) {
	i := 0
	for ; i < len(w.entries) && !now.Before(w.entries[i].at.Add(period)); i++ {
		w.sum -= w.entries[i].cost
	}
	w.entries = w.entries[i:]
}

// wait is how long until cost more fits in count.
func (w *window) wait(now time.Time, l Limit) time.Duration {
	need := w.sum + l.Cost - l.Count
	for _, e := range w.entries {
		need -= e.cost
		if need <= 0 {
			return e.at.Add(l.Period).Sub(now)
		}
	}
	return l.Period // more than the whole budget: config validation prevents it
}

// take reserves every group's budget, all or nothing, or names the refusal that lasts
// longest (retrying before it ends would only be refused again).
func (m *Memory) take(now time.Time, groups []Group, token string) (refused *Refusal, wait time.Duration) {
	var fits []*window
	var costs []int
	for _, g := range groups {
		if end, ok := m.pauses[g.ID()]; ok && now.Before(end) {
			if d := end.Sub(now); d > wait {
				refused, wait = &Refusal{Group: g.ID(), Paused: true}, d
			}
			continue
		}
		for _, l := range g.Limits {
			if l.Count <= 0 {
				continue
			}
			k := windowID{g.ID(), l.ID}
			w := m.logs[k]
			if w == nil {
				w = &window{}
				m.logs[k] = w
			}
			w.period = l.Period
			w.prune(now, l.Period)
			if w.sum+l.Cost > l.Count {
				d := w.wait(now, l)
				if l.ID == Concurrent {
					d = min(d, ConcurrentRetry)
				}
				if d > wait {
					refused, wait = &Refusal{Group: g.ID(), Limit: l.ID}, d
				}
				continue
			}
			fits, costs = append(fits, w), append(costs, l.Cost)
		}
	}
	if refused != nil {
		return refused, wait
	}
	for i, w := range fits {
		w.entries = append(w.entries, windowEntry{at: now, cost: costs[i], token: token})
		w.sum += costs[i]
	}
	return nil, 0
}

// remove takes back the entry a request made.
func (w *window) remove(token string) {
	for i, e := range w.entries {
		if e.token == token {
			w.sum -= e.cost
			w.entries = append(w.entries[:i], w.entries[i+1:]...)
			return
		}
	}
}

// evictClaims keeps the claims under the cap, oldest first: bounded memory matters more
// than idempotency for a day-old key in a one-replica setup. An expiry entry counts only
// while it is its claim's current one.
func (m *Memory) evictClaims() {
	for len(m.claims) > m.max && len(m.expiry) > 0 {
		e := m.expiry[0]
		m.expiry = m.expiry[1:]
		if c, ok := m.claims[e.key]; ok && c.expires.Equal(e.expires) {
			delete(m.claims, e.key)
		}
	}
}

// Complete implements Store.
func (m *Memory) Complete(_ context.Context, t *Ticket, c Completion) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if cl := t.claim; cl != nil {
		key := cl.Scope + "\x00" + cl.Key
		if held, ok := m.claims[key]; ok && held.token == t.token {
			if c.Outcome == nil {
				delete(m.claims, key)
			} else {
				held.done, held.outcome, held.expires = true, c.Outcome, now.Add(c.Retention)
				m.expiry = append(m.expiry, claimExpiry{key, held.expires})
			}
		}
	}
	for _, g := range t.groups {
		for _, l := range g.Limits {
			if !c.Refund && l.ID != Concurrent {
				continue
			}
			if w := m.logs[windowID{g.ID(), l.ID}]; w != nil {
				w.remove(t.token)
			}
		}
	}
	if r := c.Record; r != nil {
		m.putRecord(now, r.Key, r.Value, r.TTL)
	}
	return nil
}

// Pause implements Store.
func (m *Memory) Pause(_ context.Context, group GroupID, d time.Duration) error {
	if err := invalidPause(group); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	end := m.now().Add(d)
	if end.After(m.pauses[group]) {
		m.pauses[group] = end
	}
	return nil
}

// Ping implements Store.
func (m *Memory) Ping(context.Context) error { return nil }

func (m *Memory) putRecord(now time.Time, key string, value []byte, ttl time.Duration) {
	m.sweepRecords(now)
	if _, exists := m.records[key]; !exists {
		m.order = append(m.order, key)
	}
	m.records[key] = memRecord{value: append([]byte(nil), value...), expires: now.Add(ttl)}
	for len(m.records) > m.max {
		delete(m.records, m.order[0])
		m.order = m.order[1:]
	}
}

// GetRecord implements Store.
func (m *Memory) GetRecord(_ context.Context, key string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.records[key]
	if !ok || !m.now().Before(r.expires) {
		return nil, ErrNotFound
	}
	return append([]byte(nil), r.value...), nil
}

// sweepRecords drops expired records from the front of the insertion order. Records
// share one TTL, so they expire in order.
func (m *Memory) sweepRecords(now time.Time) {
	for len(m.order) > 0 {
		r, ok := m.records[m.order[0]]
		if ok && now.Before(r.expires) {
			return
		}
		delete(m.records, m.order[0])
		m.order = m.order[1:]
	}
}

// sweepState forgets expired claims as they come due, and spent rates and past pauses
// every so many operations (there are few: one per mailbox and key), so the cost stays
// constant per operation on average.
func (m *Memory) sweepState(now time.Time) {
	for len(m.expiry) > 0 && !now.Before(m.expiry[0].expires) {
		e := m.expiry[0]
		m.expiry = m.expiry[1:]
		// A claim given a later expiry since has another entry further on.
		if c, ok := m.claims[e.key]; ok && !now.Before(c.expires) {
			delete(m.claims, e.key)
		}
	}
	m.ops++
	if m.ops < 1024 {
		return
	}
	m.ops = 0
	for k, w := range m.logs {
		w.prune(now, w.period)
		if len(w.entries) == 0 {
			delete(m.logs, k)
		}
	}
	for k, end := range m.pauses {
		if !end.After(now) {
			delete(m.pauses, k)
		}
	}
}

// newToken returns a random fencing token for a claim.
func newToken() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
