package spool_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailgate/mailgate/server/queue"
	"github.com/mailgate/mailgate/server/queue/spool"
	"github.com/mailgate/mailgate/server/store"
)

// childEnv names the spool file the re-executed test binary enqueues into.
const childEnv = "MAILGATE_SPOOL_CRASH_CHILD"

// TestMain lets the test binary be the process that gets killed: with childEnv set it
// enqueues for ever, printing each id once Enqueue has returned.
func TestMain(m *testing.M) {
	if path := os.Getenv(childEnv); path != "" {
		os.Exit(enqueueForever(path))
	}
	os.Exit(m.Run())
}

func enqueueForever(path string) int {
	s, err := spool.Open(path, spool.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	out := bufio.NewWriter(os.Stdout)
	for i := 0; ; i++ {
		it := &queue.Item{ID: fmt.Sprintf("m%06d", i), Key: "app",
			Group: store.GroupID{Kind: store.Mailbox, Name: "a@example.com"},
			Body:  make([]byte, 2048), Deadline: time.Now().Add(time.Hour)}
		if err := s.Enqueue(context.Background(), it); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		// Flushed each time: a reported id is one whose Enqueue returned.
		fmt.Fprintln(out, it.ID)
		out.Flush()
	}
}

func TestEnqueueSurvivesKill(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "queue.db")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+path)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var reported []string
	sc := bufio.NewScanner(stdout)
	for len(reported) < 150 && sc.Scan() {
		reported = append(reported, sc.Text())
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// What it printed before dying was enqueued too.
	for sc.Scan() {
		reported = append(reported, sc.Text())
	}
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v, not by SIGKILL; stderr: %s", err, stderr.String())
	}
	if len(reported) < 150 {
		t.Fatalf("child reported %d ids before it was killed; stderr: %s", len(reported), stderr.String())
	}
	s, err := spool.Open(path, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, id := range reported {
		it, err := s.Get(context.Background(), id)
		if err != nil {
			t.Fatalf("%s was reported enqueued, then: %v", id, err)
		}
		if it.State != queue.Queued || len(it.Body) != 2048 {
			t.Errorf("%s: state %v, %d body bytes", id, it.State, len(it.Body))
		}
	}
	t.Logf("%d reported ids all present after SIGKILL", len(reported))
}

func TestOpenHeldSpoolFailsFast(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "queue.db")
	s := open(t, path, time.Now)
	defer s.Close()
	start := time.Now()
	_, err := spool.Open(path, spool.Options{LockTimeout: 200 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("second Open = %v, want an error naming %s as in use", err, path)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("second Open took %s", d)
	}
	t.Log(err)
}
