package server

import (
	"context"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"

	"github.com/mailgate/mailgate/server/store"
	"github.com/mailgate/mailgate/server/store/storetest"
)

// frozenRedis is a Redis that accepts connections and never answers, as one stopped
// with SIGSTOP, stuck in a slow script or swapping does. It returns its address.
func frozenRedis(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// A frozen Redis fails each call within redis.timeout: the API answers 503
// STORE_UNAVAILABLE at once instead of holding the request for the whole stall, and
// sends nothing.
func TestFrozenRedisFailsFast(t *testing.T) {
	t.Parallel()
	const timeout = 200 * time.Millisecond
	// Far below the go-redis defaults (5 s a read: 20 s for an Admit), far above the
	// bound: a loaded machine does not make this flaky.
	const bound = 5 * time.Second
	client, err := store.NewRedisClient(store.RedisOptions{URL: "redis://" + frozenRedis(t), Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	backend := &countingSender{}
	srv := startWithBackend(t, backend, func(o *Options) { o.Service.Store = store.NewRedis(client, "mg:") })

	start := time.Now()
	resp, e := post(t, srv.url, appKey, `{"from":{"address":"app@example.com"},"to":[{"address":"bob@example.com"}],"text":"hi","idempotencyKey":"frozen-1"}`)
	took := time.Since(start)
	t.Logf("REST answered in %v with Redis frozen (redis.timeout %v)", took, timeout)
	if took > bound {
		t.Errorf("REST took %v with Redis frozen, want well under %v", took, bound)
	}
	if resp.StatusCode != http.StatusServiceUnavailable || e.reason() != "STORE_UNAVAILABLE" {
		t.Errorf("REST: %d %s, want 503 STORE_UNAVAILABLE", resp.StatusCode, e.reason())
	}

	start = time.Now()
	_, err = srv.mail.SendMail(withAPIKey(appKey), validRequest())
	if took := time.Since(start); took > bound {
		t.Errorf("gRPC took %v with Redis frozen", took)
	}
	if code, info, _ := errorInfo(t, err); code != codes.Unavailable || info.GetReason() != "STORE_UNAVAILABLE" {
		t.Errorf("gRPC: %v %s, want UNAVAILABLE STORE_UNAVAILABLE", code, info.GetReason())
	}

	start = time.Now()
	if code, _ := get(t, srv.url+"/readyz"); code != http.StatusServiceUnavailable || time.Since(start) > bound {
		t.Errorf("/readyz: %d after %v", code, time.Since(start))
	}
	if n := backend.n.Load(); n != 0 {
		t.Errorf("%d messages sent with Redis frozen, want 0", n)
	}
}

// The same bound holds for the store's own calls, whatever the caller's context.
func TestFrozenRedisStoreCalls(t *testing.T) {
	t.Parallel()
	client, _ := store.NewRedisClient(store.RedisOptions{URL: "redis://" + frozenRedis(t), Timeout: 100 * time.Millisecond})
	t.Cleanup(func() { client.Close() })
	s := store.NewRedis(client, "mg:")
	ctx := context.Background()
	for name, call := range map[string]func() error{
		"admit": func() error {
			_, err := s.Admit(ctx, &store.Admission{Claim: &store.Claim{Scope: "a", Key: "k", Fingerprint: "f", LockTTL: time.Minute}})
			return err
		},
		"get record": func() error { _, err := s.GetRecord(ctx, "msg:a:1"); return err },
		"pause": func() error {
			return s.Pause(ctx, store.GroupID{Kind: store.Mailbox, Name: "a@example.com"}, time.Second)
		},
		"data check": func() error { _, err := s.CheckData(ctx); return err },
	} {
		start := time.Now()
		err := call()
		if took := time.Since(start); err == nil || took > 5*time.Second {
			t.Errorf("%s: %v after %v, want an error well within 5s", name, err, took)
		}
	}
}

// A real Redis that stalls (DEBUG SLEEP, as a long script or a fork on a big dataset
// does) after the pool's connections are open: the request fails within the bound.
func TestStalledRedisFailsFast(t *testing.T) {
	t.Parallel()
	redisSrv := storetest.StartRedis(t, "--enable-debug-command", "local")
	client, err := store.NewRedisClient(store.RedisOptions{URL: redisSrv.URL(), Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	backend := &countingSender{}
	srv := startWithBackend(t, backend, func(o *Options) { o.Service.Store = store.NewRedis(client, "mg:") })
	if _, err := srv.mail.SendMail(withAPIKey(appKey), validRequest()); err != nil {
		t.Fatal(err)
	}

	// The stall: 10 s, from a connection of its own.
	sleeper := redisSrv.Client(t)
	go sleeper.Do(context.Background(), "DEBUG", "SLEEP", "10")
	probe := redis.NewClient(&redis.Options{Network: "unix", Addr: redisSrv.Socket, ReadTimeout: 50 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { probe.Close() })
	for deadline := time.Now().Add(5 * time.Second); ; {
		if probe.Ping(context.Background()).Err() != nil {
			break // asleep
		}
		if time.Now().After(deadline) {
			t.Fatal("DEBUG SLEEP did not stall Redis")
		}
		time.Sleep(10 * time.Millisecond)
	}

	start := time.Now()
	_, err = srv.mail.SendMail(withAPIKey(appKey), validRequest())
	took := time.Since(start)
	t.Logf("answered in %v during a 10 s stall (redis.timeout 200ms)", took)
	// 15 times the timeout, and under go-redis's default read timeout (5 s).
	if took > 3*time.Second {
		t.Errorf("took %v during a 10 s stall, want well under it", took)
	}
	if code, info, _ := errorInfo(t, err); code != codes.Unavailable || info.GetReason() != "STORE_UNAVAILABLE" {
		t.Errorf("%v %s, want UNAVAILABLE STORE_UNAVAILABLE", code, info.GetReason())
	}
	if n := backend.n.Load(); n != 1 {
		t.Errorf("%d messages sent, want only the one before the stall", n)
	}
}
