package file

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/mailerr"
	"github.com/mailgate/mailgate/senders"
)

func message(id string) *senders.Message {
	return senders.NewMessage(id, &senders.Content{
		From: mail.Address{Address: "a@example.com"},
		To:   []mail.Address{{Address: "b@example.com"}},
		Text: "hello",
	}, time.Now())
}

func TestSendWritesOneCompleteFile(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "new", "outbox")
	s, err := New(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Send(context.Background(), message("01jx0000000000000000000001"))
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != "01jx0000000000000000000001.eml" {
		t.Fatalf("outbox holds %v, want exactly the .eml (no temporary files)", entries)
	}
	b, _ := os.ReadFile(filepath.Join(dir, entries[0].Name()))
	if !strings.Contains(string(b), "hello") || res.Remote != filepath.Join(dir, entries[0].Name()) || res.Status != senders.Sent {
		t.Errorf("result %+v, file %q", res, b)
	}
	if fi, _ := os.Stat(res.Remote); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", fi.Mode().Perm())
	}
}

func TestSendFailureIsUnavailable(t *testing.T) {
	t.Parallel()
	// Root writes into read-only folders, so make the target a file instead.
	dir := t.TempDir()
	s, _ := New(dir, nil)
	os.RemoveAll(dir)
	os.WriteFile(dir, []byte("not a folder"), 0o600)
	_, err := s.Send(context.Background(), message("01jx0000000000000000000002"))
	var e *mailerr.Error
	if !errors.As(err, &e) || e.Kind != mailerr.Unavailable {
		t.Fatalf("err %v, want a classified Unavailable error", err)
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	if err := (&Config{}).Validate(); err == nil || !strings.HasPrefix(err.Error(), "dir:") {
		t.Errorf("empty dir: %v", err)
	}
}

// Temporary files a crash left behind are removed at start, with a log line; a write that
// may still be going on (a recent file) and everything else are left alone.
func TestStartRemovesStaleTemporaryFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	old := time.Now().Add(-2 * time.Hour)
	recent := time.Now().Add(-StaleTemp / 2)
	files := []struct {
		name string
		mod  time.Time
		dir  bool
		keep bool
	}{
		{".tmp-123456.eml", old, false, false},
		{".tmp-doctor-99.eml", old, false, false},
		{".tmp-789.eml", recent, false, true}, // perhaps another process's write in progress
		{"01jx0000000000000000000009.eml", old, false, true},
		{".tmp-1.txt", old, false, true},
		{"notes.tmp-1.eml", old, false, true},
		{".tmp-dir.eml", old, true, true},
	}
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		var err error
		if f.dir {
			err = os.Mkdir(p, 0o750)
		} else {
			err = os.WriteFile(p, []byte("partial"), 0o600)
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, f.mod, f.mod); err != nil {
			t.Fatal(err)
		}
	}
	var logs bytes.Buffer
	s, err := New(dir, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, f := range files {
		_, err := os.Lstat(filepath.Join(dir, f.name))
		if kept := err == nil; kept != f.keep {
			t.Errorf("%s: kept %v, want %v", f.name, kept, f.keep)
		}
	}
	if !strings.Contains(logs.String(), "removed temporary files") || !strings.Contains(logs.String(), "files=2") {
		t.Errorf("log: %q, want one line saying 2 files were removed", logs.String())
	}

	// The second sweep, StaleTemp later, takes the one that was too recent to judge.
	logs.Reset()
	s.removeStale(time.Now().Add(StaleTemp))
	if _, err := os.Stat(filepath.Join(dir, ".tmp-789.eml")); err == nil {
		t.Error("the second sweep left .tmp-789.eml")
	}
	if !strings.Contains(logs.String(), "files=1") {
		t.Errorf("log: %q", logs.String())
	}
	if s.sweep == nil {
		t.Error("no second sweep scheduled")
	}
	s.Close()
	if s.sweep != nil {
		t.Error("Close left the sweep scheduled")
	}
}
