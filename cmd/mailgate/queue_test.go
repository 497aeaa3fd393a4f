package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/server/apikey"
	"github.com/mailgate/mailgate/server/queue"
	"github.com/mailgate/mailgate/server/queue/queuectl"
	"github.com/mailgate/mailgate/server/queue/spool"
	"github.com/mailgate/mailgate/server/store"
)

// spoolConfig writes a configuration whose local queue is in a folder of its own, with
// two keys; it returns the file and the folder.
func spoolConfig(t *testing.T) (file, dir string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "mgq") // short: the control socket's path has a length limit
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	yaml := `
keys:
  - {name: app, hash: ` + apikey.Hash("mg_test") + `, senders: ["*"]}
  - {name: other, hash: ` + apikey.Hash("mg_other") + `, senders: ["*"]}
routes:
  - {match: "*", backend: sink}
backends:
  sink: {type: discard}
queue:
  dir: ` + filepath.Join(dir, "spool") + `
`
	file = filepath.Join(dir, "mailgate.yaml")
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return file, filepath.Join(dir, "spool")
}

func putItems(t *testing.T, q queue.Queue, key string, ids ...string) {
	t.Helper()
	now := time.Now()
	for _, id := range ids {
		if err := q.Enqueue(context.Background(), &queue.Item{ID: id, Key: key, From: "a@example.com", Route: "*",
			Group: store.GroupID{Kind: store.Backend, Name: "sink"}, Backends: []string{"sink"}, Body: []byte{1},
			Accepted: now, NotBefore: now.Add(time.Hour), Deadline: now.Add(2 * time.Hour),
			Recipients: []string{"to-" + id + "@example.com"}}); err != nil {
			t.Fatal(err)
		}
	}
}

// The commands work on the file when no server holds it, and through the control
// socket when one does, with the same output.
func TestQueueCommands(t *testing.T) {
	t.Parallel()
	for _, viaSocket := range []bool{false, true} {
		t.Run(map[bool]string{false: "file", true: "socket"}[viaSocket], func(t *testing.T) {
			t.Parallel()
			cfg, dir := spoolConfig(t)
			if _, _, err := runCmd("queue", "list", "--config", cfg); err == nil || !strings.Contains(err.Error(), "no local queue") {
				t.Errorf("list without a queue: %v", err)
			}
			os.MkdirAll(dir, 0o700)
			q, err := spool.Open(filepath.Join(dir, "queue.db"), spool.Options{})
			if err != nil {
				t.Fatal(err)
			}
			putItems(t, q, "app", "m1", "m2")
			putItems(t, q, "other", "m3")
			if viaSocket {
				stop, err := queuectl.Serve(context.Background(), filepath.Join(dir, queuectl.SocketName), q)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { stop(); q.Close() })
			} else {
				q.Close()
			}

			out, _, err := runCmd("queue", "list", "--config", cfg)
			if err != nil || !strings.Contains(out, "3 message(s)") || !strings.Contains(out, "m3  QUEUED  other") {
				t.Fatalf("list: %v\n%s", err, out)
			}
			out, _, err = runCmd("queue", "list", "--config", cfg, "--recipient", "To-M2@Example.com")
			if err != nil || !strings.Contains(out, "1 message(s)") || !strings.Contains(out, "m2  QUEUED") {
				t.Errorf("list --recipient: %v\n%s", err, out)
			}
			if _, errOut, err := runCmd("queue", "list", "--config", cfg, "--recipient", "nobody"); !errors.Is(err, errUsage) || !strings.Contains(errOut, "not an address") {
				t.Errorf("list --recipient nobody: %v %q", err, errOut)
			}
			out, _, _ = runCmd("queue", "list", "--config", cfg, "--key", "other", "--json")
			if strings.Count(out, "\n") != 1 || !strings.Contains(out, `"id":"m3"`) || !strings.Contains(out, `"status":"QUEUED"`) {
				t.Errorf("list --key other --json:\n%s", out)
			}
			if out, _, err := runCmd("queue", "cancel", "--config", cfg, "m1"); err != nil || out != "m1 CANCELED\n" {
				t.Errorf("cancel: %v %q", err, out)
			}
			_, errOut, err := runCmd("queue", "cancel", "--config", cfg, "m1", "nope")
			if !errors.Is(err, exitStatus(1)) || !strings.Contains(errOut, "m1: ") || !strings.Contains(errOut, "only a QUEUED message") ||
				!strings.Contains(errOut, "nope: no such message") {
				t.Errorf("cancel again: %v\n%s", err, errOut)
			}
			if out, _, _ := runCmd("queue", "show", "--config", cfg, "m1"); !strings.Contains(out, "status:     CANCELED") || !strings.Contains(out, "finished:") {
				t.Errorf("show:\n%s", out)
			}
			if out, _, err := runCmd("queue", "retry", "--config", cfg, "m1"); err != nil || out != "m1 QUEUED\n" {
				t.Errorf("retry: %v %q", err, out)
			}
			if _, errOut, err := runCmd("queue", "retry", "--config", cfg, "m2"); err == nil || !strings.Contains(errOut, "only FAILED, UNKNOWN or CANCELED") {
				t.Errorf("retry of a queued one: %v %q", err, errOut)
			}
			runCmd("queue", "cancel", "--config", cfg, "m2")
			if out, _, err := runCmd("queue", "purge", "--config", cfg, "--status", "canceled"); err != nil || out != "purged 1 message(s)\n" {
				t.Errorf("purge --status: %v %q", err, out)
			}
			if out, _, err := runCmd("queue", "purge", "--config", cfg, "m3"); err != nil || out != "purged 1 message(s)\n" {
				t.Errorf("purge m3: %v %q", err, out)
			}
			if out, _, _ := runCmd("queue", "list", "--config", cfg); !strings.Contains(out, "1 message(s)") || !strings.Contains(out, "m1") {
				t.Errorf("after purges:\n%s", out)
			}
		})
	}
}

func TestQueueUsage(t *testing.T) {
	t.Parallel()
	cfg, _ := spoolConfig(t)
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"queue"}, "usage: mailgate queue"},
		{[]string{"queue", "flush"}, `unknown command "flush"`},
		{[]string{"queue", "show", "--config", cfg}, "give one or more message ids"},
		{[]string{"queue", "purge", "--config", cfg}, "--status"},
		{[]string{"queue", "purge", "--config", cfg, "--status", "FAILED", "m1"}, "not both"},
		{[]string{"queue", "list", "--config", cfg, "--status", "LOST"}, `"LOST" is not QUEUED`},
	} {
		_, errOut, err := runCmd(tc.args...)
		if !errors.Is(err, errUsage) || !strings.Contains(errOut, tc.says) {
			t.Errorf("%v: %v, stderr %q; want usage error saying %q", tc.args, err, errOut, tc.says)
		}
	}
}
