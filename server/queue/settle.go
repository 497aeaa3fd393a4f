package queue

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

// Backoff is the wait before the nth retry (n ≥ 1): lo doubled n-1 times, at most hi,
// then ±25%, so that items that failed together do not retry together.
func Backoff(lo, hi time.Duration, n int) time.Duration {
	b := lo
	for i := 1; i < n && b < hi; i++ {
		b *= 2
	}
	b = min(b, hi)
	return time.Duration(float64(b) * (0.75 + rand.Float64()/2))
}

// Record runs op, an operation that records a leased item's outcome (Complete, Retry,
// Release...), retrying it for a few seconds while the queue's storage fails: the
// outcome is known, and losing it means the lease lapses and the item is handed out
// again. It returns op's last error; ErrStaleLease or ErrNotFound (the item was taken
// over, or is gone) at once, since retrying cannot help.
func Record(op func(context.Context) error) error {
	var err error
	for i, wait := 0, 200*time.Millisecond; i < 5; i, wait = i+1, wait*2 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = op(ctx)
		cancel()
		if err == nil || errors.Is(err, ErrStaleLease) || errors.Is(err, ErrNotFound) {
			return err
		}
		time.Sleep(wait)
	}
	return err
}
