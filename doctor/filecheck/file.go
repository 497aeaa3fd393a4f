// Package filecheck is the doctor's checks of a file backend: that its directory exists
// or can be created, and that a file can be written into it.
package filecheck

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/mailgate/mailgate/doctor"
	"github.com/mailgate/mailgate/senders/file"
)

// run is the checks of one backend.
type run struct{ b *doctor.Backend }

// Check checks a file backend.
func Check(_ context.Context, b *doctor.Backend, c *file.Config) { (&run{b}).file(c) }

// file checks a file backend's directory: that it exists or can be created, and that
// a file can be written into it (as the backend does: a .tmp-*.eml file, synced, then
// removed here). It creates nothing that it does not remove.
func (d *run) file(c *file.Config) {
	uid := fmt.Sprintf("uid %d", os.Getuid())
	fi, err := os.Stat(c.Dir)
	switch {
	case err == nil && !fi.IsDir():
		d.b.Fail("directory", c.Dir+" is not a directory", "set dir to a directory")
		d.b.Skip("write", "no directory to write into")
		return
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		parent, perr := creatableIn(c.Dir)
		if perr != nil {
			d.b.Fail("directory", fmt.Sprintf("%s does not exist, and this process (%s) cannot create it: %v", c.Dir, uid, perr),
				fmt.Sprintf("create %s (mode 0750) for the user mailgate runs as, or set dir to a folder that user may create", c.Dir))
		} else {
			d.b.Pass("directory", fmt.Sprintf("%s does not exist yet; mailgate creates it at start (%s is writable by %s)", c.Dir, parent, uid))
		}
		d.b.Skip("write", "the directory does not exist yet")
		return
	case err != nil:
		d.b.Fail("directory", err.Error(), "check the path in dir and the permissions of its parent folders")
		d.b.Skip("write", "no directory to write into")
		return
	}
	d.b.Pass("directory", c.Dir+" exists")

	f, err := os.CreateTemp(c.Dir, ".tmp-doctor-*.eml")
	if err == nil {
		name := f.Name()
		_, err = f.WriteString("mailgate doctor\r\n")
		if serr := f.Sync(); err == nil {
			err = serr
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if rerr := os.Remove(name); err == nil {
			err = rerr
		}
	}
	if err != nil {
		d.b.Fail("write", fmt.Sprintf("this process (%s) cannot write in %s: %v", uid, c.Dir, err),
			fmt.Sprintf("let the user mailgate runs as write in %s (e.g. chown mailgate %s && chmod 0750 %s), and run the doctor as that user", c.Dir, c.Dir, c.Dir))
		return
	}
	d.b.Pass("write", fmt.Sprintf("created, synced and removed a file in %s as %s", c.Dir, uid))
}

// creatableIn finds the nearest existing ancestor of dir and checks that a directory
// can be made in it (made and removed at once). It returns that ancestor.
func creatableIn(dir string) (string, error) {
	p := filepath.Clean(dir)
	if abs, err := filepath.Abs(p); err == nil {
		p = abs
	}
	for {
		parent := filepath.Dir(p)
		fi, err := os.Stat(parent)
		switch {
		case err == nil && !fi.IsDir():
			return "", fmt.Errorf("%s is not a directory", parent)
		case err == nil:
			tmp, err := os.MkdirTemp(parent, ".mailgate-doctor-")
			if err != nil {
				return "", err
			}
			return parent, os.Remove(tmp)
		case !errors.Is(err, fs.ErrNotExist):
			return "", err
		case parent == p:
			return "", err
		}
		p = parent
	}
}
