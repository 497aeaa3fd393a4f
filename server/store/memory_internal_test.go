package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestMemoryRecordsEvictOldest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	now := time.Unix(1_800_000_000, 0)
	m := NewMemory()
	m.now = func() time.Time { return now }
	m.max = 3
	for i := range 5 {
		m.putRecord(now, fmt.Sprint(i), []byte("x"), time.Hour)
	}
	if len(m.records) != 3 || len(m.order) != 3 {
		t.Errorf("%d records, %d in order; want the cap of 3", len(m.records), len(m.order))
	}
	if _, err := m.GetRecord(ctx, "0"); !errors.Is(err, ErrNotFound) {
		t.Error("oldest record not evicted")
	}
	v, _ := m.GetRecord(ctx, "4")
	v[0] = 'y'
	if w, _ := m.GetRecord(ctx, "4"); string(w) != "x" {
		t.Error("caller can modify the stored value")
	}
}

func TestMemorySweepsState(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	now := time.Unix(1_800_000_000, 0)
	m := NewMemory()
	m.now = func() time.Time { return now }
	for i := range 2000 {
		m.Admit(ctx, &Admission{
			Claim:  &Claim{Scope: "a", Key: fmt.Sprint(i), Fingerprint: "f", LockTTL: time.Second},
			Groups: []Group{{Kind: Mailbox, Name: fmt.Sprint("g", i), Limits: []Limit{{ID: MessagesPerMinute, Count: 1, Period: time.Second, Cost: 1}}}},
		})
	}
	now = now.Add(time.Hour)
	for range 1100 {
		m.Admit(ctx, &Admission{})
	}
	if len(m.claims) != 0 || len(m.logs) != 0 || len(m.expiry) != 0 {
		t.Errorf("%d claims and %d windows left after they all expired", len(m.claims), len(m.logs))
	}
}

func TestMemoryCapsClaims(t *testing.T) {
	t.Parallel()
	m := NewMemory()
	m.max = 10
	for i := range 25 {
		m.Admit(context.Background(), &Admission{Claim: &Claim{Scope: "a", Key: fmt.Sprint(i), Fingerprint: "f", LockTTL: time.Hour}})
	}
	if len(m.claims) != 10 {
		t.Errorf("%d claims, want the cap of 10", len(m.claims))
	}
	if _, ok := m.claims["a\x0024"]; !ok {
		t.Error("the newest claim was evicted")
	}
}
