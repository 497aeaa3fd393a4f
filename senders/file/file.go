// Package file is a backend that writes each message as an .eml file into a folder: for
// trying mailgate out, for tests, and for handing mail to another system by directory.
package file

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/mailgate/mailgate/mailerr"
	"github.com/mailgate/mailgate/senders"
)

// Type is the `type: file` backend.
var Type = senders.Type{Name: "file", NewConfig: func() senders.Config { return new(Config) }}

var (
	_ senders.Config = (*Config)(nil)
	_ senders.Sender = (*Sender)(nil)
)

// Config is the `type: file` backend section.
type Config struct {
	senders.ConfigDefaults `yaml:"-"`
	// Dir is the folder the .eml files go to; it is created if missing.
	Dir string `yaml:"dir"`
}

// Validate implements senders.Config.
func (c *Config) Validate() error {
	if c.Dir == "" {
		return senders.Fieldf("dir", "required (the folder for the .eml files)")
	}
	return nil
}

// Open implements senders.Config.
func (c *Config) Open(env senders.Env) (senders.Sender, error) { return New(c.Dir, env.Logger) }

// Sender writes messages to Dir/<id>.eml. A file appears there complete or not at all:
// it is written under a temporary name, synced, then renamed.
type Sender struct {
	senders.SenderDefaults // Scope; Close is its own

	dir   string
	log   *slog.Logger
	mu    sync.Mutex
	sweep *time.Timer // the second sweep; nil once Close has run
}

// StaleTemp is how long a temporary file must have gone unmodified before it counts as
// left behind. A write in progress modifies its file all along, and the rename follows
// the last write within milliseconds, so a minute is far from any live write, even one
// by another process sharing the directory (or `mailgate doctor`).
const StaleTemp = time.Minute

// New returns a Sender writing into dir, creating it if needed. It removes the
// temporary files a crash left behind (those untouched for StaleTemp): at once, and
// again StaleTemp later for those a crash just before this start left, too fresh to
// tell from a live write. log may be nil.
func New(dir string, log *slog.Logger) (*Sender, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("file backend: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Sender{dir: dir, log: log}
	s.removeStale(time.Now())
	s.sweep = time.AfterFunc(StaleTemp, func() { s.removeStale(time.Now()) })
	return s, nil
}

// Close stops the pending sweep.
func (s *Sender) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sweep != nil {
		s.sweep.Stop()
		s.sweep = nil
	}
	return nil
}

// removeStale removes temporary files last modified StaleTemp or more before now.
func (s *Sender) removeStale(now time.Time) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		s.log.Warn("file backend: could not look for temporary files left by a crash", "dir", s.dir, "error", err)
		return
	}
	var removed int
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasPrefix(name, ".tmp-") || !strings.HasSuffix(name, ".eml") {
			continue
		}
		fi, err := e.Info()
		if err != nil || now.Sub(fi.ModTime()) < StaleTemp {
			continue
		}
		if err := os.Remove(filepath.Join(s.dir, name)); err != nil {
			s.log.Warn("file backend: could not remove a temporary file left by a crash", "file", filepath.Join(s.dir, name), "error", err)
			continue
		}
		removed++
	}
	if removed > 0 {
		s.log.Info("file backend: removed temporary files left by an interrupted write (a crash or a kill)", "dir", s.dir, "files", removed)
	}
}

// Send implements senders.Sender.
func (s *Sender) Send(ctx context.Context, msg *senders.Message) (*senders.Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	name := filepath.Join(s.dir, msg.ID+".eml")
	if err := writeAtomic(name, msg); err != nil {
		return nil, mailerr.Wrap(mailerr.Unavailable, err, "file backend could not write the message")
	}
	return &senders.Result{Status: senders.Sent, Accepted: msg.Recipients, Remote: name}, nil
}

func writeAtomic(name string, msg *senders.Message) (err error) {
	f, err := os.CreateTemp(filepath.Dir(name), ".tmp-*.eml")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	w := bufio.NewWriterSize(f, 64<<10)
	if _, err = msg.WriteTo(w); err != nil {
		return err
	}
	if err = w.Flush(); err != nil {
		return err
	}
	if err = f.Chmod(0o640); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), name); err != nil {
		return err
	}
	// The rename is durable only once the directory itself is synced.
	d, err := os.Open(filepath.Dir(name))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
