// Package e2e drives the built mailgate binary over gRPC and REST, as its users do:
// `mailgate keys new`, `mailgate check-config`, `mailgate serve`, then real clients
// against real listeners, and the .eml files the file backend writes, parsed with the
// standard library.
//
// Set MAILGATE_E2E_RACE=1 to build the binary with the race detector too (slower on a
// cold build cache); a race in the server then fails the test through its exit status.
package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var (
	// binary is the mailgate binary TestMain built.
	binary string
	// keys are API keys made with `mailgate keys new`, by name, shared by every server
	// the tests start.
	keys = map[string]apiKey{}
)

// apiKey is what `mailgate keys new` prints: the key once, and the hash for the config.
type apiKey struct {
	Name, Key, Hash string
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "mailgate-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if binary, err = build(dir); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build:", err)
		return 1
	}
	for _, name := range []string{"app", "other", "wide", "drain"} {
		k, err := newKey(name)
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			return 1
		}
		keys[name] = k
	}
	return m.Run()
}

// moduleRoot finds the directory of go.mod through `go env GOMOD`.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside a Go module")
	}
	return filepath.Dir(gomod), nil
}

func build(dir string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "mailgate")
	args := []string{"build", "-o", bin}
	if os.Getenv("MAILGATE_E2E_RACE") == "1" {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "./cmd/mailgate")...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%v: %w\n%s", cmd.Args, err, out)
	}
	return bin, nil
}

// newKey runs `mailgate keys new NAME` and parses its output: the line starting with
// mg_ is the key, the hash: line the hash.
func newKey(name string) (apiKey, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(binary, "keys", "new", name)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return apiKey{}, fmt.Errorf("mailgate keys new %s: %w\n%s", name, err, stderr.Bytes())
	}
	k := apiKey{Name: name}
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "mg_"):
			if k.Key != "" {
				return apiKey{}, fmt.Errorf("keys new %s printed two keys:\n%s", name, stdout.Bytes())
			}
			k.Key = line
		case strings.HasPrefix(line, "hash:"):
			k.Hash = strings.TrimSpace(strings.TrimPrefix(line, "hash:"))
		}
	}
	if k.Key == "" || !strings.HasPrefix(k.Hash, "sha256:") {
		return apiKey{}, fmt.Errorf("keys new %s: no key or hash in its output:\n%s", name, stdout.Bytes())
	}
	return k, nil
}
