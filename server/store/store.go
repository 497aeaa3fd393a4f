// Package store keeps mailgate's shared state: the record of every accepted message (for
// GetMessage). Memory is the in-process implementation used by the embedded default; it
// serves one replica only.
package store

import (
	"context"
	"errors"
	"sync"
	"time"
)

// ErrNotFound is returned for a record that does not exist or has expired.
var ErrNotFound = errors.New("store: not found")

// Records keeps small values for a time.
//
// PutRecord stores value under key until ttl passes; a later PutRecord replaces it.
// GetRecord returns the value, or ErrNotFound once it has expired. Any other error means
// the store is unreachable: the caller must not assume the record is absent.
type Records interface {
	PutRecord(ctx context.Context, key string, value []byte, ttl time.Duration) error
	GetRecord(ctx context.Context, key string) ([]byte, error)
}

// Memory is an in-process Records. It keeps at most MaxRecords; past that the oldest go
// first, so a long-running test instance cannot grow without bound.
type Memory struct {
	mu      sync.Mutex
	now     func() time.Time
	max     int
	records map[string]memRecord
	order   []string // keys in insertion order, for expiry and eviction
}

type memRecord struct {
	value   []byte
	expires time.Time
}

// DefaultMaxRecords bounds Memory's size.
const DefaultMaxRecords = 100_000

// NewMemory returns an empty in-process store.
func NewMemory() *Memory {
	return &Memory{now: time.Now, max: DefaultMaxRecords, records: make(map[string]memRecord)}
}

// PutRecord implements Records.
func (m *Memory) PutRecord(_ context.Context, key string, value []byte, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	m.sweep(now)
	if _, exists := m.records[key]; !exists {
		m.order = append(m.order, key)
	}
	m.records[key] = memRecord{value: append([]byte(nil), value...), expires: now.Add(ttl)}
	for len(m.records) > m.max {
		delete(m.records, m.order[0])
		m.order = m.order[1:]
	}
	return nil
}

// GetRecord implements Records.
func (m *Memory) GetRecord(_ context.Context, key string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.records[key]
	if !ok || !m.now().Before(r.expires) {
		return nil, ErrNotFound
	}
	return append([]byte(nil), r.value...), nil
}

// sweep drops expired records from the front of the insertion order. Records mostly
// share one TTL, so they expire roughly in order; one that outlives its neighbours
// merely waits for its turn.
func (m *Memory) sweep(now time.Time) {
	for len(m.order) > 0 {
		r, ok := m.records[m.order[0]]
		if ok && now.Before(r.expires) {
			return
		}
		delete(m.records, m.order[0])
		m.order = m.order[1:]
	}
}
