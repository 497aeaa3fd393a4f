// Package spool is the local queue: one bbolt file on disk, for a single node (the
// embedded default). Each operation is one bbolt transaction, written and fsynced before
// it returns, so an Enqueue that returned survives kill -9 and a power cut.
//
// Buckets (docs/queue.md has the design; times are 8 bytes, big-endian Unix ns):
//
//	items     id -> JSON of queue.Item without its Body
//	bodies    id -> the Body, apart so that List and the settles never read or rewrite it
//	ready     kind byte, group name, 0, notBefore, id -> nil
//	          one key per Queued item; sorted by group, then by when it is ready
//	leases    until, id -> nil
//	          one key per Sending item; sorted by when its lease lapses
//	live      accepted, id -> nil
//	          one key per Queued or Sending item: Stats' oldest is the first
//	bykey     API key, 0, accepted, id -> nil
//	          one key per item, for List: a key's items, in Accepted order
//	finished  finished, id -> nil
//	          one key per terminal item, for Expire: oldest Finished first
//
// The fencing token is the items bucket's sequence, which bbolt keeps in the same
// transaction as the lease.
package spool

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/mailgate/mailgate/server/queue"
	"github.com/mailgate/mailgate/server/store"
)

var (
	bItems    = []byte("items")
	bBodies   = []byte("bodies")
	bReady    = []byte("ready")
	bLeases   = []byte("leases")
	bLive     = []byte("live")
	bByKey    = []byte("bykey")
	bFinished = []byte("finished")
)

// Options are the spool's settings. The zero value is the default.
type Options struct {
	// LockTimeout is how long Open waits for another process to let go of the file;
	// default 1s.
	LockTimeout time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// BatchDelay, when positive, lets concurrent Enqueues and settles (Complete, Retry,
	// Release, Extend, ...) share one transaction (and one fsync): each waits up to
	// BatchDelay for others to join it (bbolt's Batch), and still returns only once
	// its change is on disk.
	BatchDelay time.Duration
}

// Spool is a queue.Queue in one bbolt file.
type Spool struct {
	db    *bolt.DB
	now   func() time.Time
	batch bool
}

var _ queue.Queue = (*Spool)(nil)

// Open opens (creating it if need be) the spool file at path. The file is locked for
// the process: when another process holds it, Open fails after Options.LockTimeout with
// an error naming the file, rather than waiting for ever.
func Open(path string, opts Options) (*Spool, error) {
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("queue spool %s is in use by another process (still locked after %s): %w", path, opts.LockTimeout, err)
	}
	if err != nil {
		return nil, fmt.Errorf("queue spool %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bItems, bBodies, bReady, bLeases, bLive, bByKey, bFinished} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("queue spool %s: %w", path, err)
	}
	if opts.BatchDelay > 0 {
		db.MaxBatchDelay = opts.BatchDelay
	}
	return &Spool{db: db, now: opts.Now, batch: opts.BatchDelay > 0}, nil
}

// Close implements queue.Queue.
func (s *Spool) Close() error { return s.db.Close() }

// Path is the spool's file.
func (s *Spool) Path() string { return s.db.Path() }

func stamp(t time.Time) []byte {
	var b [8]byte
	n := t.UnixNano()
	if t.IsZero() || n < 0 {
		n = 0
	}
	binary.BigEndian.PutUint64(b[:], uint64(n))
	return b[:]
}

// groupPrefix is a group's part of a ready key: every key of the group begins with it,
// and no other group's does (names hold no NUL).
func groupPrefix(g store.GroupID) []byte {
	p := make([]byte, 0, len(g.Name)+2)
	p = append(p, byte(g.Kind))
	p = append(p, g.Name...)
	return append(p, 0)
}

func readyKey(it *queue.Item) []byte {
	k := append(groupPrefix(it.Group), stamp(it.NotBefore)...)
	return append(k, it.ID...)
}

func leaseKey(it *queue.Item) []byte { return append(stamp(it.Lease.Until), it.ID...) }

func liveKey(it *queue.Item) []byte { return append(stamp(it.Accepted), it.ID...) }

func finishedKey(it *queue.Item) []byte { return append(stamp(it.Finished), it.ID...) }

// keyPrefix is an API key's part of a bykey key (keys hold no NUL).
func keyPrefix(key string) []byte { return append([]byte(key), 0) }

func byKeyKey(it *queue.Item) []byte { return append(keyPrefix(it.Key), liveKey(it)...) }

// get returns the item without its Body.
func get(tx *bolt.Tx, id string) (*queue.Item, error) {
	v := tx.Bucket(bItems).Get([]byte(id))
	if v == nil {
		return nil, fmt.Errorf("%w: %s", queue.ErrNotFound, id)
	}
	it := new(queue.Item)
	if err := json.Unmarshal(v, it); err != nil {
		return nil, fmt.Errorf("queue spool: item %s is unreadable: %w", id, err)
	}
	return it, nil
}

// put writes the item's metadata; its Body, kept apart, is Enqueue's to write.
func put(tx *bolt.Tx, it *queue.Item) error {
	c := *it
	c.Body = nil
	v, err := json.Marshal(&c)
	if err != nil {
		return err
	}
	return tx.Bucket(bItems).Put([]byte(it.ID), v)
}

// finish ends it in state st (terminal) at now: its finished key is what Expire finds.
func finish(tx *bolt.Tx, it *queue.Item, st queue.State, now time.Time) error {
	it.State, it.Lease, it.Finished = st, queue.Lease{}, now
	if err := tx.Bucket(bLive).Delete(liveKey(it)); err != nil {
		return err
	}
	return tx.Bucket(bFinished).Put(finishedKey(it), nil)
}

// Enqueue implements queue.Queue.
func (s *Spool) Enqueue(ctx context.Context, it *queue.Item) error {
	if err := queue.CheckNew(it); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	c := *it
	c.State = queue.Queued
	if c.Accepted.IsZero() {
		c.Accepted = s.now()
	}
	update := s.db.Update
	if s.batch {
		// Batch may run f more than once (alone, when another in its batch failed): f
		// only reads and writes the transaction, so that is safe.
		update = s.db.Batch
	}
	return update(func(tx *bolt.Tx) error {
		if tx.Bucket(bItems).Get([]byte(c.ID)) != nil {
			return fmt.Errorf("%w: %s", queue.ErrExists, c.ID)
		}
		if err := put(tx, &c); err != nil {
			return err
		}
		if err := tx.Bucket(bBodies).Put([]byte(c.ID), c.Body); err != nil {
			return err
		}
		for _, k := range [][2][]byte{{bReady, readyKey(&c)}, {bLive, liveKey(&c)}, {bByKey, byKeyKey(&c)}} {
			if err := tx.Bucket(k[0]).Put(k[1], nil); err != nil {
				return err
			}
		}
		return nil
	})
}

// Lease implements queue.Queue.
func (s *Spool) Lease(ctx context.Context, ready func(store.GroupID) bool, d time.Duration) (*queue.Item, error) {
	if ready == nil {
		return nil, fmt.Errorf("%w: Lease without a ready predicate", queue.ErrInvalid)
	}
	if d <= 0 {
		return nil, fmt.Errorf("%w: lease duration %s is not positive", queue.ErrInvalid, d)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	update := s.db.Update
	if s.batch {
		// Workers lease concurrently: leases share a transaction (and its fsync), each
		// seeing the ones before it, so no two take the same item. Batch may run this
		// more than once: it starts afresh each time, and finding nothing is not an
		// error inside the transaction (that would undo the batch).
		update = s.db.Batch
	}
	var out *queue.Item
	err := update(func(tx *bolt.Tx) error {
		out = nil
		now := s.now()
		if err := s.takeOver(tx, now); err != nil {
			return err
		}
		id, err := s.pick(tx, now, ready)
		if errors.Is(err, queue.ErrEmpty) {
			return nil
		}
		if err != nil {
			return err
		}
		it, err := get(tx, id)
		if err != nil {
			return err
		}
		if err := tx.Bucket(bReady).Delete(readyKey(it)); err != nil {
			return err
		}
		tok, err := tx.Bucket(bItems).NextSequence()
		if err != nil {
			return err
		}
		it.State = queue.Sending
		it.Lease = queue.Lease{ID: it.ID, Token: tok, Until: now.Add(d)}
		if err := put(tx, it); err != nil {
			return err
		}
		out = it
		if b := tx.Bucket(bBodies).Get([]byte(id)); b != nil {
			// The worker needs what it is to send.
			out.Body = bytes.Clone(b)
		}
		return tx.Bucket(bLeases).Put(leaseKey(it), nil)
	})
	if err == nil && out == nil {
		return nil, queue.ErrEmpty
	}
	return out, err
}

// takeOver makes every item whose lease lapsed before now ready again, at once.
func (s *Spool) takeOver(tx *bolt.Tx, now time.Time) error {
	leases := tx.Bucket(bLeases)
	limit := stamp(now)
	var lapsed [][]byte
	c := leases.Cursor()
	for k, _ := c.First(); k != nil && bytes.Compare(k[:8], limit) < 0; k, _ = c.Next() {
		lapsed = append(lapsed, bytes.Clone(k))
	}
	for _, k := range lapsed {
		if err := leases.Delete(k); err != nil {
			return err
		}
		it, err := get(tx, string(k[8:]))
		if err != nil {
			return err
		}
		it.LastError = fmt.Sprintf("lease until %s lapsed: its worker stopped; taken over", it.Lease.Until.UTC().Format(time.RFC3339Nano))
		it.State, it.Lease, it.NotBefore, it.TakenOver = queue.Queued, queue.Lease{}, time.Time{}, true
		if err := put(tx, it); err != nil {
			return err
		}
		if err := tx.Bucket(bReady).Put(readyKey(it), nil); err != nil {
			return err
		}
	}
	return nil
}

// pick returns the id of the earliest ready item of the first group ready accepts,
// looking at each group's earliest key only and skipping to the next group otherwise.
func (s *Spool) pick(tx *bolt.Tx, now time.Time, ready func(store.GroupID) bool) (string, error) {
	limit := stamp(now)
	c := tx.Bucket(bReady).Cursor()
	for k, _ := c.First(); k != nil; {
		nul := bytes.IndexByte(k, 0)
		if nul < 1 || len(k) < nul+1+8 {
			return "", fmt.Errorf("queue spool: malformed ready key %q", k)
		}
		g := store.GroupID{Kind: store.GroupKind(k[0]), Name: string(k[1:nul])}
		at := k[nul+1 : nul+9]
		if bytes.Compare(at, limit) <= 0 && ready(g) {
			return string(k[nul+9:]), nil
		}
		// Next group: the first key after every key with this prefix.
		next := bytes.Clone(k[:nul+1])
		next[nul] = 1
		k, _ = c.Seek(next)
	}
	return "", queue.ErrEmpty
}

// settle runs f on the item l leases, in one transaction, if l is its current lease.
func (s *Spool) settle(ctx context.Context, l queue.Lease, f func(it *queue.Item) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	update := s.db.Update
	if s.batch {
		// Workers settle concurrently: sharing a transaction (and its fsync) leaves the
		// single writer free for Lease, which runs one at a time. Batch may run this
		// more than once (alone, when another in its batch failed): it reads the item
		// afresh each time and f only changes that copy, so that is safe.
		update = s.db.Batch
	}
	return update(func(tx *bolt.Tx) error {
		it, err := get(tx, l.ID)
		if err != nil {
			return err
		}
		if it.State != queue.Sending || it.Lease.Token != l.Token {
			return &queue.StateError{ID: it.ID, State: it.State, Err: queue.ErrStaleLease}
		}
		if err := tx.Bucket(bLeases).Delete(leaseKey(it)); err != nil {
			return err
		}
		if err := f(it); err != nil {
			return err
		}
		if it.State.Terminal() {
			if err := finish(tx, it, it.State, s.now()); err != nil {
				return err
			}
		}
		if err := put(tx, it); err != nil {
			return err
		}
		switch it.State {
		case queue.Sending:
			return tx.Bucket(bLeases).Put(leaseKey(it), nil)
		case queue.Queued:
			return tx.Bucket(bReady).Put(readyKey(it), nil)
		}
		return nil
	})
}

// Extend implements queue.Queue.
func (s *Spool) Extend(ctx context.Context, l queue.Lease, d time.Duration) (queue.Lease, error) {
	if d <= 0 {
		return queue.Lease{}, fmt.Errorf("%w: lease duration %s is not positive", queue.ErrInvalid, d)
	}
	var out queue.Lease
	err := s.settle(ctx, l, func(it *queue.Item) error {
		it.Lease.Until = s.now().Add(d)
		out = it.Lease
		return nil
	})
	return out, err
}

// Release implements queue.Queue.
func (s *Spool) Release(ctx context.Context, l queue.Lease, notBefore time.Time) error {
	return s.settle(ctx, l, func(it *queue.Item) error {
		it.State, it.Lease, it.NotBefore, it.TakenOver = queue.Queued, queue.Lease{}, notBefore, false
		return nil
	})
}

func record(it *queue.Item, a queue.Attempt, st queue.State) {
	it.Attempts = append(it.Attempts, a)
	it.LastError = a.Error
	it.State, it.Lease, it.TakenOver = st, queue.Lease{}, false
}

// Retry implements queue.Queue.
func (s *Spool) Retry(ctx context.Context, l queue.Lease, at time.Time, a queue.Attempt) error {
	return s.settle(ctx, l, func(it *queue.Item) error {
		record(it, a, queue.Queued)
		it.NotBefore = at
		return nil
	})
}

// Complete implements queue.Queue.
func (s *Spool) Complete(ctx context.Context, l queue.Lease, a queue.Attempt) error {
	return s.settle(ctx, l, func(it *queue.Item) error { record(it, a, queue.Sent); return nil })
}

// Fail implements queue.Queue.
func (s *Spool) Fail(ctx context.Context, l queue.Lease, a queue.Attempt) error {
	return s.settle(ctx, l, func(it *queue.Item) error { record(it, a, queue.Failed); return nil })
}

// MarkUnknown implements queue.Queue.
func (s *Spool) MarkUnknown(ctx context.Context, l queue.Lease, a queue.Attempt) error {
	return s.settle(ctx, l, func(it *queue.Item) error { record(it, a, queue.Unknown); return nil })
}

// Cancel implements queue.Queue.
func (s *Spool) Cancel(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		it, err := get(tx, id)
		if err != nil {
			return err
		}
		if it.State != queue.Queued {
			return &queue.StateError{ID: id, State: it.State, Err: queue.ErrNotCancelable}
		}
		if err := tx.Bucket(bReady).Delete(readyKey(it)); err != nil {
			return err
		}
		if err := finish(tx, it, queue.Canceled, s.now()); err != nil {
			return err
		}
		return put(tx, it)
	})
}

// Get implements queue.Queue.
func (s *Spool) Get(ctx context.Context, id string) (*queue.Item, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out *queue.Item
	err := s.db.View(func(tx *bolt.Tx) error {
		it, err := get(tx, id)
		if err != nil {
			return err
		}
		// bbolt's bytes live only as long as the transaction.
		if b := tx.Bucket(bBodies).Get([]byte(id)); b != nil {
			it.Body = bytes.Clone(b)
		}
		out = it
		return nil
	})
	return out, err
}

// List implements queue.Queue. It walks the key's bykey keys backwards from the upper
// bound (AcceptedTo, or the page token's item) and reads each item's metadata, never
// its body; it stops after Limit+1 matches (the one more says there is a next page)
// or at AcceptedFrom.
func (s *Spool) List(ctx context.Context, q queue.ListQuery) ([]*queue.Item, string, error) {
	after, err := queue.CheckListQuery(&q)
	if err != nil {
		return nil, "", err
	}
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	prefix := keyPrefix(q.Key)
	// upper is the first key past what the page may hold.
	upper := append(bytes.Clone(prefix[:len(prefix)-1]), 1)
	if !q.AcceptedTo.IsZero() {
		upper = append(bytes.Clone(prefix), stamp(q.AcceptedTo)...)
	}
	if !after.IsZero() {
		if k := append(append(bytes.Clone(prefix), stamp(after.Accepted)...), after.ID...); bytes.Compare(k, upper) < 0 {
			upper = k
		}
	}
	lower := append(bytes.Clone(prefix), stamp(q.AcceptedFrom)...)
	var out []*queue.Item
	more := false
	err = s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bByKey).Cursor()
		k, _ := c.Seek(upper)
		if k == nil {
			k, _ = c.Last()
		} else {
			k, _ = c.Prev()
		}
		for ; k != nil && bytes.HasPrefix(k, prefix) && bytes.Compare(k, lower) >= 0; k, _ = c.Prev() {
			if len(k) < len(prefix)+9 {
				return fmt.Errorf("queue spool: malformed bykey key %q", k)
			}
			it, err := get(tx, string(k[len(prefix)+8:]))
			if err != nil {
				return err
			}
			if !q.Match(it) {
				continue
			}
			if len(out) == q.Limit {
				more = true
				return nil
			}
			out = append(out, it)
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	next := ""
	if more {
		last := out[len(out)-1]
		next = queue.ListCursor{Accepted: last.Accepted, ID: last.ID}.Token()
	}
	return out, next, nil
}

// Requeue implements queue.Queue.
func (s *Spool) Requeue(ctx context.Context, id string, at, deadline time.Time) error {
	if err := queue.CheckRequeue(id, at, deadline); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		it, err := get(tx, id)
		if err != nil {
			return err
		}
		switch it.State {
		case queue.Failed, queue.Unknown, queue.Canceled:
		default:
			return &queue.StateError{ID: id, State: it.State, Err: queue.ErrNotRequeueable}
		}
		if err := tx.Bucket(bFinished).Delete(finishedKey(it)); err != nil {
			return err
		}
		it.State, it.NotBefore, it.Deadline, it.Finished, it.TakenOver = queue.Queued, at, deadline, time.Time{}, false
		if err := put(tx, it); err != nil {
			return err
		}
		if err := tx.Bucket(bReady).Put(readyKey(it), nil); err != nil {
			return err
		}
		return tx.Bucket(bLive).Put(liveKey(it), nil)
	})
}

// Delete implements queue.Queue.
func (s *Spool) Delete(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		it, err := get(tx, id)
		if err != nil {
			return err
		}
		if it.State == queue.Sending {
			return &queue.StateError{ID: id, State: it.State, Err: queue.ErrLeased}
		}
		return remove(tx, it)
	})
}

// remove deletes a non-leased item and all its keys.
func remove(tx *bolt.Tx, it *queue.Item) error {
	keys := [][2][]byte{{bItems, []byte(it.ID)}, {bBodies, []byte(it.ID)}, {bByKey, byKeyKey(it)}}
	switch {
	case it.State == queue.Queued:
		keys = append(keys, [2][]byte{bReady, readyKey(it)}, [2][]byte{bLive, liveKey(it)})
	case it.State.Terminal():
		keys = append(keys, [2][]byte{bFinished, finishedKey(it)})
	}
	for _, k := range keys {
		if err := tx.Bucket(k[0]).Delete(k[1]); err != nil {
			return err
		}
	}
	return nil
}

// Expire implements queue.Queue: it walks the finished bucket from its oldest key.
func (s *Spool) Expire(ctx context.Context, finishedBefore time.Time, max int) (int, error) {
	if err := queue.CheckExpire(max); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		n = 0
		limit := stamp(finishedBefore)
		var ids []string
		c := tx.Bucket(bFinished).Cursor()
		for k, _ := c.First(); k != nil && len(ids) < max && bytes.Compare(k[:8], limit) < 0; k, _ = c.Next() {
			ids = append(ids, string(k[8:]))
		}
		for _, id := range ids {
			it, err := get(tx, id)
			if err != nil {
				return err
			}
			if err := remove(tx, it); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

// Stats implements queue.Queue. It counts keys of ready (comparing each one's time
// with now), leases and live's first key: no item is read.
func (s *Spool) Stats(ctx context.Context) (queue.Stats, error) {
	if err := ctx.Err(); err != nil {
		return queue.Stats{}, err
	}
	var st queue.Stats
	err := s.db.View(func(tx *bolt.Tx) error {
		limit := stamp(s.now())
		c := tx.Bucket(bReady).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			nul := bytes.IndexByte(k, 0)
			if nul < 1 || len(k) < nul+9 {
				return fmt.Errorf("queue spool: malformed ready key %q", k)
			}
			st.Queued++
			if bytes.Compare(k[nul+1:nul+9], limit) <= 0 {
				st.Due++
			}
		}
		st.Sending = tx.Bucket(bLeases).Stats().KeyN
		if k, _ := tx.Bucket(bLive).Cursor().First(); len(k) >= 8 {
			st.OldestQueued = time.Unix(0, int64(binary.BigEndian.Uint64(k))).UTC()
		}
		return nil
	})
	return st, err
}
