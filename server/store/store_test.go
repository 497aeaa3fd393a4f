package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestMemoryExpiresAndEvicts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	now := time.Unix(1_800_000_000, 0)
	m := NewMemory()
	m.now = func() time.Time { return now }
	m.max = 3

	m.PutRecord(ctx, "a", []byte("1"), time.Minute)
	if v, err := m.GetRecord(ctx, "a"); err != nil || string(v) != "1" {
		t.Fatalf("Get(a) = %q, %v", v, err)
	}
	now = now.Add(time.Minute)
	if _, err := m.GetRecord(ctx, "a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("expired record: %v", err)
	}
	for i := range 5 {
		m.PutRecord(ctx, fmt.Sprint(i), []byte("x"), time.Hour)
	}
	if len(m.records) != 3 || len(m.order) != 3 {
		t.Errorf("%d records, %d in order; want the cap of 3", len(m.records), len(m.order))
	}
	if _, err := m.GetRecord(ctx, "0"); !errors.Is(err, ErrNotFound) {
		t.Error("oldest record not evicted")
	}
	if _, err := m.GetRecord(ctx, "4"); err != nil {
		t.Error("newest record evicted")
	}
	// A returned value is a copy.
	v, _ := m.GetRecord(ctx, "4")
	v[0] = 'y'
	if w, _ := m.GetRecord(ctx, "4"); string(w) != "x" {
		t.Error("caller can modify the stored value")
	}
}
