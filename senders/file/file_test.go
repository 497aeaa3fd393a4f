package file

import (
	"context"
	"errors"
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
	s, err := New(dir)
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
	s, _ := New(dir)
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
