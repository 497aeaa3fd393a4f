package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SharedRedis returns a client of the Redis on 127.0.0.1:6379 (the one `make test`
// ensures), or, when none answers, of a private server started for the test.
func SharedRedis(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", MaxRetries: -1})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err == nil {
		t.Cleanup(func() { c.Close() })
		return c
	}
	c.Close()
	return StartRedis(t).Client(t)
}

// RedisServer is a redis-server process of a test's own, on a unix socket, that the
// test can stop and start again (at the same address) to play an outage.
type RedisServer struct {
	Socket string
	dir    string
	args   []string
	cmd    *exec.Cmd
}

// StartRedis starts a private redis-server, without persistence unless args (redis.conf
// directives as flags, e.g. "--appendonly", "yes") say otherwise; it is stopped when the
// test ends.
func StartRedis(t testing.TB, args ...string) *RedisServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redis-server is not installed: run `make test`, which installs it (%v)", err)
	}
	dir, err := os.MkdirTemp("", "mailgate-redis-") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	s := &RedisServer{Socket: filepath.Join(dir, "r.sock"), dir: dir, args: args}
	s.Start(t)
	t.Cleanup(func() {
		s.Stop(t)
		os.RemoveAll(dir)
	})
	return s
}

// URL is the server's address in the form the configuration takes.
func (s *RedisServer) URL() string { return "unix://" + s.Socket }

// Client returns a client of the server, closed when the test ends.
func (s *RedisServer) Client(t testing.TB) *redis.Client {
	c := redis.NewClient(&redis.Options{Network: "unix", Addr: s.Socket, MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	return c
}

// Start starts the server (again) and waits until it answers.
func (s *RedisServer) Start(t testing.TB) {
	t.Helper()
	args := append([]string{"--port", "0", "--unixsocket", s.Socket,
		"--save", "", "--appendonly", "no", "--dir", s.dir}, s.args...)
	s.cmd = exec.Command("redis-server", args...)
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("unix", s.Socket)
		if err == nil {
			fmt.Fprint(c, "PING\r\n")
			buf := make([]byte, 7)
			c.SetReadDeadline(time.Now().Add(time.Second))
			n, _ := c.Read(buf)
			c.Close()
			if string(buf[:n]) == "+PONG\r\n" {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on %s did not answer within 10s", s.Socket)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Stop kills the server; its data is gone.
func (s *RedisServer) Stop(t testing.TB) {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Kill()
	s.cmd.Wait()
	s.cmd = nil
	os.Remove(s.Socket)
}

// Prefix returns a key prefix of the test's own for a shared Redis, and deletes every key
// under it when the test ends, so runs leave nothing behind (leftover keys slow a Redis
// that others share, CI's included).
func Prefix(t testing.TB, c redis.UniversalClient, name string) string {
	var b [6]byte
	rand.Read(b[:])
	prefix := "mgtest:" + name + ":" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() { DeletePrefix(c, prefix) })
	return prefix
}

// DeletePrefix deletes every key that starts with prefix.
func DeletePrefix(c redis.UniversalClient, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	del := func(ctx context.Context, c redis.UniversalClient) error {
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		var batch []string
		for iter.Next(ctx) {
			batch = append(batch, iter.Val())
			if len(batch) == 1000 {
				c.Unlink(ctx, batch...)
				batch = batch[:0]
			}
		}
		if len(batch) > 0 {
			c.Unlink(ctx, batch...)
		}
		return iter.Err()
	}
	if cc, ok := c.(*redis.ClusterClient); ok {
		cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error { return del(ctx, n) })
		return
	}
	del(ctx, c)
}
