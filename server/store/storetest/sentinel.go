package storetest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mailgate/mailgate/server/store"
)

// Sentinel is a redis-server master and one Sentinel that monitors it, on loopback
// ports, started for a test: the Redis of a deployment whose configuration gives
// redis.addrs and redis.master_name.
type Sentinel struct {
	// Addr is the Sentinel's address and MasterName the name it knows the master by.
	Addr, MasterName string
	// MasterAddr is the master's own address.
	MasterAddr string
}

// sentinelMaster is the name the Sentinel monitors the master by.
const sentinelMaster = "mailgate"

// StartSentinel starts a master and a Sentinel monitoring it, and returns once the
// Sentinel reports the master; both stop when the test ends. It skips the test when
// redis-server is not installed.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skipf("redis-server is not installed (Debian's redis-server); it runs the master and the Sentinel: %v", err)
	}
	dir := t.TempDir()
	masterPort := startOnFreePort(t, "master", func(port int) []string {
		return []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", dir}
	})
	s := &Sentinel{MasterName: sentinelMaster, MasterAddr: fmt.Sprintf("127.0.0.1:%d", masterPort)}
	sentinelPort := startOnFreePort(t, "sentinel", func(port int) []string {
		// A Sentinel rewrites its configuration file: it must be one of its own.
		conf := filepath.Join(dir, fmt.Sprintf("sentinel-%d.conf", port))
		text := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor %s 127.0.0.1 %d 1\n",
			port, dir, sentinelMaster, masterPort)
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return []string{conf, "--sentinel"}
	})
	s.Addr = fmt.Sprintf("127.0.0.1:%d", sentinelPort)

	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr, MaxRetries: -1})
	defer sc.Close()
	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Second)
	for {
		// "master" alone: no "disconnected", no "s_down"; the Sentinel has reached it.
		m, err := sc.Master(ctx, sentinelMaster).Result()
		if err == nil && m["flags"] == "master" && net.JoinHostPort(m["ip"], m["port"]) == s.MasterAddr {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the Sentinel on %s did not report the master %s within 10s: %v %v", s.Addr, s.MasterAddr, m, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return s
}

// Client returns a client of the master through the Sentinel, built as the service
// builds it from its configuration; it is closed when the test ends.
func (s *Sentinel) Client(t testing.TB) redis.UniversalClient {
	t.Helper()
	c, err := store.NewRedisClient(store.RedisOptions{Addrs: []string{s.Addr}, MasterName: s.MasterName})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("ping through the Sentinel on %s: %v", s.Addr, err)
	}
	return c
}

// startOnFreePort starts redis-server with args(port) on a free loopback port and
// returns the port once the server answers PING; it is killed when the test ends. A
// port found free may be taken before the server binds it, so a server that exits is
// started again on another.
func startOnFreePort(t testing.TB, what string, args func(port int) []string) int {
	t.Helper()
	for range 5 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		cmd := exec.Command("redis-server", args(port)...)
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		stop := func() { cmd.Process.Kill(); <-exited }
		if answers(fmt.Sprintf("127.0.0.1:%d", port), exited) {
			t.Cleanup(stop)
			return port
		}
		stop()
		t.Logf("%s on port %d did not start: %s", what, port, out.String())
	}
	t.Fatalf("could not start the %s of a Sentinel group", what)
	return 0
}

// answers reports whether a server answers PING on addr within 10s, and stops waiting
// when exited is closed.
func answers(addr string, exited <-chan struct{}) bool {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.SetDeadline(time.Now().Add(time.Second))
			fmt.Fprint(c, "PING\r\n")
			line, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if line == "+PONG\r\n" {
				return true
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}
