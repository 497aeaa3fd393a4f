package server

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/mailgate/mailgate/mailerr"
)

// inflight bounds the request-body bytes held by the server at once, over both APIs, so
// that no number of clients can make memory grow past it. A request takes bytes as its
// body arrives (REST) or before its message is read (gRPC), and gives them back when it
// ends. A request that cannot get its bytes within wait is refused as busy, rather than
// holding a connection open in a queue nobody sees.
type inflight struct {
	sem  *semaphore.Weighted
	size int64
	wait time.Duration
}

func newInflight(size int64, wait time.Duration) *inflight {
	return &inflight{sem: semaphore.NewWeighted(size), size: size, wait: wait}
}

// reservation is one request's share of the budget.
type reservation struct {
	b    *inflight
	mu   sync.Mutex
	held int64
}

func (b *inflight) reserve() *reservation { return &reservation{b: b} }

// grow takes n more bytes, waiting up to the budget's wait.
func (r *reservation) grow(ctx context.Context, n int64) *mailerr.Error {
	if n <= 0 {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.held+n > r.b.size {
		return r.b.busy()
	}
	ctx, cancel := context.WithTimeout(ctx, r.b.wait)
	defer cancel()
	if err := r.b.sem.Acquire(ctx, n); err != nil {
		return r.b.busy()
	}
	r.held += n
	return nil
}

// shrink gives back what the reservation holds beyond n bytes.
func (r *reservation) shrink(n int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n < r.held {
		r.b.sem.Release(r.held - n)
		r.held = n
	}
}

// release gives back everything.
func (r *reservation) release() { r.shrink(0) }

func (b *inflight) busy() *mailerr.Error {
	return &mailerr.Error{Kind: mailerr.Unavailable, Reason: mailerr.ReasonServerBusy, RetryAfter: time.Second,
		Msg: fmt.Sprintf("server busy: %s of request bodies are already in flight (limits.max_inflight_bytes); retry shortly", mb(b.size))}
}
