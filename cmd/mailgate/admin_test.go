package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailgate/mailgate/server/apikey"
	"github.com/mailgate/mailgate/server/store"
	"github.com/mailgate/mailgate/server/store/storetest"
)

// redisConfig writes a configuration that uses the Redis at url.
func redisConfig(t *testing.T, url string) string {
	t.Helper()
	yaml := `
keys:
  - name: app
    hash: ` + apikey.Hash("mg_test") + `
    senders: ["*"]
routes:
  - {match: "*", backend: sink}
backends:
  sink: {type: discard}
redis:
  url: "` + url + `"
`
	p := filepath.Join(t.TempDir(), "mailgate.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func runCmd(args ...string) (stdout, stderr string, err error) {
	var o, e bytes.Buffer
	err = run(context.Background(), args, &o, &e)
	return o.String(), e.String(), err
}

// check-config and doctor warn about a Redis that forgets its data on a restart, and
// say nothing against one that keeps it; neither fails for it.
func TestPersistenceWarnings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		args  []string
		warn  bool
		says  string
		unset bool // no Redis answers
	}{
		{"no persistence", nil, true, "no persistence", false},
		{"rdb only", []string{"--save", "60 1"}, true, "only RDB snapshots", false},
		{"aof", []string{"--appendonly", "yes"}, false, "AOF on, appendfsync everysec", false},
		{"managed: CONFIG refused", []string{"--appendonly", "yes", "--rename-command", "CONFIG", ""}, false, "AOF on", false},
		{"unreachable", nil, false, "persistence not checked", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			url := "unix://" + filepath.Join(t.TempDir(), "nobody.sock")
			if !tt.unset {
				url = storetest.StartRedis(t, tt.args...).URL()
			}
			file := redisConfig(t, url)
			out, errOut, err := runCmd("check-config", file)
			if err != nil {
				t.Fatalf("check-config: %v\n%s", err, errOut)
			}
			if strings.Contains(out, "warning: redis") != tt.warn || !strings.Contains(out, tt.says) {
				t.Errorf("check-config, want warning %v saying %q:\n%s", tt.warn, tt.says, out)
			}
			if tt.unset {
				return
			}
			out, _, err = runCmd("doctor", file)
			if err != nil {
				t.Errorf("doctor failed for persistence: %v\n%s", err, out)
			}
			if strings.Contains(out, "WARN  persistence") != tt.warn || !strings.Contains(out, tt.says) || !strings.Contains(out, "PASS  data") {
				t.Errorf("doctor, want warning %v saying %q:\n%s", tt.warn, tt.says, out)
			}
		})
	}
}

func TestStoreAck(t *testing.T) {
	t.Parallel()
	srv := storetest.StartRedis(t)
	file := redisConfig(t, srv.URL())
	ctx := context.Background()
	watcher := store.NewRedis(srv.Client(t), "mg:")
	watcher.SetReplica("replica-1")

	if out, _, err := runCmd("admin", "store-status", file); err != nil || !strings.Contains(out, "no loss") {
		t.Fatalf("store-status before: %v\n%s", err, out)
	}
	if out, _, err := runCmd("admin", "store-ack", file); err != nil || !strings.Contains(out, "nothing to acknowledge") {
		t.Fatalf("store-ack with nothing recorded: %v\n%s", err, out)
	}

	watcher.CheckData(ctx)
	srv.Client(t).Del(ctx, "mg:{meta}:marker")
	if st, err := watcher.CheckData(ctx); err != nil || st.Lost == nil {
		t.Fatalf("the loss was not recorded: %+v, %v", st, err)
	}
	out, _, err := runCmd("admin", "store-status", file)
	if err != nil || !strings.Contains(out, "lost mailgate's data") || !strings.Contains(out, "replica-1") {
		t.Errorf("store-status: %v\n%s", err, out)
	}
	out, _, err = runCmd("doctor", file)
	if err == nil || !strings.Contains(out, "FAIL  data") || !strings.Contains(out, "store-ack") {
		t.Errorf("doctor with a recorded loss: %v\n%s", err, out)
	}
	out, _, err = runCmd("admin", "store-ack", file)
	if err != nil || !strings.Contains(out, "acknowledged") || !strings.Contains(out, "is gone") {
		t.Fatalf("store-ack: %v\n%s", err, out)
	}
	if st, err := watcher.CheckData(ctx); err != nil || st.Lost != nil {
		t.Errorf("after store-ack the replica still sees %+v, %v", st, err)
	}

	for _, args := range [][]string{{"admin"}, {"admin", "store-ack"}, {"admin", "flush", file}} {
		if _, _, err := runCmd(args...); err != errUsage {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
	noRedis := doctorConfig(t, t.TempDir())
	if _, _, err := runCmd("admin", "store-ack", noRedis); err == nil || !strings.Contains(err.Error(), "no redis section") {
		t.Errorf("store-ack without redis: %v", err)
	}
}
