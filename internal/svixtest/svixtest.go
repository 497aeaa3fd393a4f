// Package svixtest checks webhook signatures with an independent verifier: the svix npm
// package's Webhook.verify (which implements the Standard Webhooks scheme), run with
// node. It installs svix into the module's .cache/npm/svix on first use (npm from the
// registry), as the Makefile installs its other npm tools.
package svixtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Version is the svix package the tests verify with.
const Version = "2.5.0"

// Notification is one received webhook: its headers and body as they arrived.
type Notification struct {
	ID, Timestamp, Signature string
	Body                     []byte
}

// verifyScript reads {secret, notifications} from stdin and prints, per notification,
// "" when Webhook.verify accepts it, else its error message, as a JSON list.
const verifyScript = `
const { Webhook } = require("svix");
let input = "";
process.stdin.on("data", (d) => (input += d));
process.stdin.on("end", () => {
  const { secret, notifications } = JSON.parse(input);
  const wh = new Webhook(secret);
  const out = notifications.map((n) => {
    try {
      wh.verify(Buffer.from(n.body, "base64").toString("utf8"), {
        "webhook-id": n.id, "webhook-timestamp": n.timestamp, "webhook-signature": n.signature,
      });
      return "";
    } catch (e) {
      return String(e.message || e) || "rejected";
    }
  });
  process.stdout.write(JSON.stringify(out));
});
`

var (
	once    sync.Once
	dir     string // the prefix svix is installed in
	install error
)

// Verify runs svix's Webhook(secret).verify on each notification and returns, for each,
// nil when svix accepts it or svix's refusal. It fails the test if node or svix cannot
// be run.
func Verify(t testing.TB, secret string, ns ...Notification) []error {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is needed to run the svix verifier (Debian's nodejs): %v", err)
	}
	once.Do(func() { dir, install = ensure() })
	if install != nil {
		t.Fatalf("svix %s: %v", Version, install)
	}
	type jsonNote struct {
		ID        string `json:"id"`
		Timestamp string `json:"timestamp"`
		Signature string `json:"signature"`
		Body      []byte `json:"body"`
	}
	in := struct {
		Secret        string     `json:"secret"`
		Notifications []jsonNote `json:"notifications"`
	}{Secret: secret}
	for _, n := range ns {
		in.Notifications = append(in.Notifications, jsonNote(n))
	}
	stdin, _ := json.Marshal(in)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "-e", verifyScript)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "NODE_PATH="+filepath.Join(dir, "node_modules"))
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node svix verifier: %v\n%s", err, stderr.Bytes())
	}
	var msgs []string
	if err := json.Unmarshal(out, &msgs); err != nil || len(msgs) != len(ns) {
		t.Fatalf("node svix verifier printed %q (%v), want %d results", out, err, len(ns))
	}
	errs := make([]error, len(ns))
	for i, m := range msgs {
		if m != "" {
			errs[i] = errors.New("svix: " + m)
		}
	}
	return errs
}

// ensure installs svix into <module root>/.cache/npm/svix unless it is there, under a
// file lock (test binaries of several packages may ask at once), and returns the prefix.
func ensure() (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	prefix := filepath.Join(root, ".cache", "npm", "svix")
	if err := os.MkdirAll(prefix, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(prefix, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", err
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if installed(prefix) {
		return prefix, nil
	}
	if _, err := exec.LookPath("npm"); err != nil {
		return "", fmt.Errorf("npm is needed to install svix (Debian's npm): %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "npm", "install", "--no-save", "--no-package-lock", "--no-audit",
		"--no-fund", "--prefix", prefix, "svix@"+Version).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("npm install svix@%s: %v\n%s", Version, err, out)
	}
	if !installed(prefix) {
		return "", fmt.Errorf("npm install svix@%s did not install version %s in %s", Version, Version, prefix)
	}
	return prefix, nil
}

func installed(prefix string) bool {
	b, err := os.ReadFile(filepath.Join(prefix, "node_modules", "svix", "package.json"))
	if err != nil {
		return false
	}
	var p struct{ Version string }
	return json.Unmarshal(b, &p) == nil && p.Version == Version
}

func moduleRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", errors.New("no go.mod above the test's directory")
		}
		d = parent
	}
}
