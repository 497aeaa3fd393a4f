package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailgate/mailgate/server/apikey"
)

// doctorConfig writes a configuration whose outbox backend writes into dir.
func doctorConfig(t *testing.T, dir string) string {
	t.Helper()
	yaml := `
keys:
  - name: app
    hash: ` + apikey.Hash("mg_test") + `
    senders: ["*"]
routes:
  - {match: "*", backend: outbox}
backends:
  outbox: {type: file, dir: "` + dir + `"}
  sink: {type: discard}
`
	p := filepath.Join(t.TempDir(), "mailgate.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func doctorRun(args ...string) (stdout, stderr string, err error) {
	var o, e bytes.Buffer
	err = doctorCommand(context.Background(), args, &o, &e)
	return o.String(), e.String(), err
}

func TestDoctorCommand(t *testing.T) {
	t.Parallel()
	good := doctorConfig(t, t.TempDir())
	out, errOut, err := doctorRun(good)
	if err != nil || !strings.Contains(out, "PASS  write") || !strings.HasSuffix(out, "all 2 backends passed\n") {
		t.Errorf("doctor %s: %v\nstdout:\n%s\nstderr:\n%s", good, err, out, errOut)
	}

	// Flags after FILE, JSON.
	out, _, err = doctorRun(good, "--json", "--backend", "sink")
	var rep struct {
		OK     bool
		Checks []struct{ Backend, Status string }
	}
	if err != nil || json.Unmarshal([]byte(out), &rep) != nil || !rep.OK || len(rep.Checks) != 1 || rep.Checks[0].Backend != "sink" {
		t.Errorf("doctor --json --backend sink: %v\n%s", err, out)
	}

	// A skipped check (the directory does not exist yet, so nothing is written): no
	// check failed, exit status 0, and the summary says what was not verified instead
	// of "passed".
	notYet := doctorConfig(t, filepath.Join(t.TempDir(), "not", "yet"))
	out, errOut, err = doctorRun(notYet, "--backend", "outbox")
	if err != nil || !strings.Contains(out, "SKIP  write      the directory does not exist yet") ||
		!strings.HasSuffix(out, "no check failed in 1 backend; 1 check was skipped (see SKIP)\n") {
		t.Errorf("doctor with a skipped check: %v\nstdout:\n%s\nstderr:\n%s", err, out, errOut)
	}
	out, _, err = doctorRun(notYet, "--json")
	var skipped struct {
		OK      bool
		Failed  int
		Skipped int
	}
	if err != nil || json.Unmarshal([]byte(out), &skipped) != nil || !skipped.OK || skipped.Failed != 0 || skipped.Skipped != 1 {
		t.Errorf("doctor --json with a skipped check: %v\n%s", err, out)
	}

	// A failed check: exit status 1 (an error that is not a usage error).
	blocker := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	bad := doctorConfig(t, filepath.Join(blocker, "outbox"))
	out, _, err = doctorRun("--json", bad)
	if err == nil || errors.Is(err, errUsage) || !strings.Contains(err.Error(), "1 check failed") {
		t.Errorf("doctor on a failing setup: %v", err)
	}
	if json.Unmarshal([]byte(out), &rep) != nil || rep.OK {
		t.Errorf("JSON of a failing setup:\n%s", out)
	}

	// Usage mistakes: exit status 2.
	for _, args := range [][]string{
		nil,
		{good, "other.yaml"},
		{good, "--backend", "nope"},
		{good, "--timeout", "0s"},
		{"--bogus", good},
	} {
		if _, _, err := doctorRun(args...); !errors.Is(err, errUsage) {
			t.Errorf("doctor %q: %v, want a usage error", args, err)
		}
	}

	// An invalid configuration is an error, not a usage mistake.
	broken := filepath.Join(t.TempDir(), "broken.yaml")
	if err := os.WriteFile(broken, []byte("backends: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errOut, err := doctorRun(broken); err == nil || errors.Is(err, errUsage) || !strings.Contains(errOut, "invalid configuration") {
		t.Errorf("doctor on an invalid file: %v\n%s", err, errOut)
	}
}

// TestDoctorExitStatus: the process exits 0 when nothing failed, skipped checks
// included, and 1 when a check failed, as a cron job or a monitor reads it.
func TestDoctorExitStatus(t *testing.T) {
	t.Parallel()
	blocker := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		dir  string
		code int
		want string
	}{
		{"passed", t.TempDir(), 0, "all 2 backends passed\n"},
		{"skipped", filepath.Join(t.TempDir(), "not", "yet"), 0, "1 check was skipped (see SKIP)\n"},
		{"failed", filepath.Join(blocker, "outbox"), 1, "1 of 2 backends failed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			out, errOut, code := runMailgate(t, nil, "doctor", doctorConfig(t, c.dir))
			if code != c.code || !strings.Contains(out, c.want) {
				t.Errorf("exit status %d, want %d; stdout lacks %q:\n%s\nstderr:\n%s", code, c.code, c.want, out, errOut)
			}
		})
	}
}
