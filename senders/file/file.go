// Package file is a backend that writes each message as an .eml file into a folder: for
// trying mailgate out, for tests, and for handing mail to another system by directory.
package file

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/mailgate/mailgate/mailerr"
	"github.com/mailgate/mailgate/senders"
)

// Config is the `type: file` backend section.
type Config struct {
	// Dir is the folder the .eml files go to; it is created if missing.
	Dir string `yaml:"dir"`
}

// Validate implements senders.Config.
func (c *Config) Validate() error {
	if c.Dir == "" {
		return fmt.Errorf("dir: required (the folder for the .eml files)")
	}
	return nil
}

// Open implements senders.Config.
func (c *Config) Open(senders.Env) (senders.Sender, error) { return New(c.Dir) }

// Sender writes messages to Dir/<id>.eml. A file appears there complete or not at all:
// it is written under a temporary name, synced, then renamed.
type Sender struct {
	dir string
}

// New returns a Sender writing into dir, creating it if needed.
func New(dir string) (*Sender, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("file backend: %w", err)
	}
	return &Sender{dir: dir}, nil
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
