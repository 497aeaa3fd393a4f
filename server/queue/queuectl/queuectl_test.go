package queuectl_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mailgate/mailgate/server/queue"
	"github.com/mailgate/mailgate/server/queue/queuectl"
	"github.com/mailgate/mailgate/server/queue/spool"
	"github.com/mailgate/mailgate/server/store"
)

// The client over a real socket does what the queue itself does, errors included.
func TestClientMatchesQueue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "qctl") // short: a unix socket path has a length limit
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	q, err := spool.Open(filepath.Join(dir, "queue.db"), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	sock := filepath.Join(dir, queuectl.SocketName)
	stop, err := queuectl.Serve(ctx, sock, q)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stop() })
	if _, err := queuectl.Serve(ctx, sock, q); err == nil {
		t.Error("a second Serve on a live socket succeeded")
	}
	c := queuectl.Dial(sock)
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}

	now := time.Now()
	for _, id := range []string{"a1", "a2"} {
		if err := q.Enqueue(ctx, &queue.Item{ID: id, Key: "app", Group: store.GroupID{Kind: store.Mailbox, Name: "a@example.com"},
			Backends: []string{"graph"}, Body: []byte("body"), Accepted: now, NotBefore: now.Add(time.Hour),
			Deadline: now.Add(2 * time.Hour), Tags: map[string]string{"n": id}}); err != nil {
			t.Fatal(err)
		}
	}
	items, next, err := c.List(ctx, queue.ListQuery{Key: "app", Limit: 1})
	if err != nil || len(items) != 1 || next == "" || items[0].Body != nil {
		t.Fatalf("List = %d items, next %q, %v", len(items), next, err)
	}
	if more, _, err := c.List(ctx, queue.ListQuery{Key: "app", Limit: 1, PageToken: next}); err != nil || len(more) != 1 || more[0].ID == items[0].ID {
		t.Fatalf("second page = %v, %v", more, err)
	}
	if _, _, err := c.List(ctx, queue.ListQuery{}); !errors.Is(err, queue.ErrInvalid) {
		t.Errorf("List without key = %v, want ErrInvalid", err)
	}
	it, err := c.Get(ctx, "a1")
	if err != nil || it.Tags["n"] != "a1" || it.State != queue.Queued || it.Body != nil {
		t.Fatalf("Get = %+v, %v", it, err)
	}
	if _, err := c.Get(ctx, "zz"); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("Get of none = %v, want ErrNotFound", err)
	}
	err = c.Requeue(ctx, "a1", now, now.Add(time.Hour))
	var se *queue.StateError
	if !errors.As(err, &se) || !errors.Is(err, queue.ErrNotRequeueable) || se.State != queue.Queued {
		t.Errorf("Requeue of a queued item = %v, want a StateError QUEUED wrapping ErrNotRequeueable", err)
	}
	if err := c.Cancel(ctx, "a1"); err != nil {
		t.Fatal(err)
	}
	if err := c.Cancel(ctx, "a1"); !errors.Is(err, queue.ErrNotCancelable) {
		t.Errorf("second Cancel = %v, want ErrNotCancelable", err)
	}
	if err := c.Requeue(ctx, "a1", now, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got, _ := q.Get(ctx, "a1"); got.State != queue.Queued {
		t.Errorf("after Requeue: %s", got.State)
	}
	if err := c.Delete(ctx, "a2"); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Get(ctx, "a2"); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("after Delete, Get = %v", err)
	}
}

// A socket file left by a process that died does not stop the next server.
func TestServeReplacesStaleSocket(t *testing.T) {
	t.Parallel()
	dir, err := os.MkdirTemp("", "qctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, queuectl.SocketName)
	if err := os.WriteFile(sock, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	q, err := spool.Open(filepath.Join(dir, "queue.db"), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	stop, err := queuectl.Serve(context.Background(), sock, q)
	if err != nil {
		t.Fatalf("Serve over a stale file: %v", err)
	}
	stop()
}
