package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/webhook"
)

// docBlocks returns the fenced blocks of lang (```go, ```python, ```js) in the section of
// docs/webhooks.md under heading, as written.
func docBlocks(t *testing.T, heading, lang string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "docs", "webhooks.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("docs/webhooks.md has no %q", heading)
	}
	if i := strings.Index(section, "\n## "); i >= 0 {
		section = section[:i]
	}
	var out []string
	for rest := section; ; {
		_, after, ok := strings.Cut(rest, "\n```"+lang+"\n")
		if !ok {
			return out
		}
		block, tail, _ := strings.Cut(after, "\n```\n")
		out = append(out, block+"\n")
		rest = tail
	}
}

// docCase is a notification the documented verifiers are given, and what they must say.
type docCase struct {
	Secret, ID, Timestamp, Signature string
	Body                             []byte
	want                             bool
}

func docCases(t *testing.T) []docCase {
	secret := webhook.NewSecret()
	sec := mustSecret(t, secret)
	body := []byte(`{"type":"message.sent","timestamp":"2026-12-04T20:00:00Z","data":{"id":"01m91h972bf4","subject":"Grüße ✓"}}`)
	signed := func(ts time.Time, b []byte, s webhook.Secret) docCase {
		h := http.Header{}
		webhook.SetHeaders(h, "evt_docs", ts, b, s)
		return docCase{Secret: secret, ID: h.Get(webhook.HeaderID), Timestamp: h.Get(webhook.HeaderTimestamp),
			Signature: h.Get(webhook.HeaderSignature), Body: body}
	}
	good := signed(time.Now(), body, sec)
	good.want = true
	rotated := signed(time.Now(), body, sec)
	rotated.Signature = webhook.Sign(rotated.ID, time.Now(), body, mustSecret(t, webhook.NewSecret()), sec)
	rotated.want = true
	changed := signed(time.Now(), []byte(strings.Replace(string(body), "sent", "failed", 1)), sec)
	wrongSecret := signed(time.Now(), body, mustSecret(t, webhook.NewSecret()))
	old := signed(time.Now().Add(-10*time.Minute), body, sec)
	return []docCase{good, rotated, changed, wrongSecret, old}
}

// run gives the cases to a program as JSON lines on stdin (body in base64) and reads
// one "true" or "false" per case from its stdout.
func runDocVerifier(t *testing.T, cases []docCase, dir string, name string, args ...string) {
	t.Helper()
	var in bytes.Buffer
	for _, c := range cases {
		json.NewEncoder(&in).Encode(map[string]any{"secret": c.Secret, "id": c.ID, "timestamp": c.Timestamp,
			"signatures": c.Signature, "body": c.Body})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Stdin = &in
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", name, err, stderr.Bytes())
	}
	got := strings.Fields(string(out))
	if len(got) != len(cases) {
		t.Fatalf("%s printed %q, want %d results", name, out, len(cases))
	}
	names := []string{"a good notification", "one signed during a rotation", "a changed body", "a wrong secret", "an old timestamp"}
	for i, c := range cases {
		if got[i] != map[bool]string{true: "true", false: "false"}[c.want] {
			t.Errorf("%s said %s for %s", name, got[i], names[i])
		}
	}
}

func write(t *testing.T, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

const verifyingHeading = "## Verifying a signature"

// The Go, Python and Node verifiers of docs/webhooks.md, as written there, accept what
// mailgate signs and refuse a changed body, a wrong secret and an old timestamp.
func TestDocVerifiers(t *testing.T) {
	t.Parallel()
	cases := docCases(t)
	for _, lang := range []string{"go", "python", "js"} {
		blocks := docBlocks(t, verifyingHeading, lang)
		if len(blocks) != 1 {
			t.Fatalf("%q has %d %s blocks, want 1", verifyingHeading, len(blocks), lang)
		}
		t.Run(lang, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			switch lang {
			case "go":
				write(t, filepath.Join(dir, "go.mod"), "module example.com/docs\n\ngo 1.22\n")
				write(t, filepath.Join(dir, "verify", "verify.go"), blocks[0])
				write(t, filepath.Join(dir, "main.go"), `package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"

	"example.com/docs/verify"
)

func main() {
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var c struct{ Secret, ID, Timestamp, Signatures string; Body []byte }
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			panic(err)
		}
		fmt.Println(verify.Verify(c.Secret, c.ID, c.Timestamp, c.Signatures, c.Body))
	}
}
`)
				runDocVerifier(t, cases, dir, "go", "run", ".")
			case "python":
				python, err := exec.LookPath("python3")
				if err != nil {
					t.Fatalf("python3 is needed to run the documented Python verifier: %v", err)
				}
				write(t, filepath.Join(dir, "verify.py"), blocks[0])
				write(t, filepath.Join(dir, "main.py"), `import base64, json, sys
from verify import verify
for line in sys.stdin:
    c = json.loads(line)
    print("true" if verify(c["secret"], c["id"], c["timestamp"], c["signatures"], base64.b64decode(c["body"])) else "false")
`)
				runDocVerifier(t, cases, dir, python, "main.py")
			case "js":
				node, err := exec.LookPath("node")
				if err != nil {
					t.Fatalf("node is needed to run the documented Node verifier: %v", err)
				}
				write(t, filepath.Join(dir, "verify.js"), blocks[0])
				write(t, filepath.Join(dir, "main.js"), `const { verify } = require("./verify.js");
const lines = require("node:fs").readFileSync(0, "utf8").split("\n").filter(Boolean);
for (const line of lines) {
  const c = JSON.parse(line);
  console.log(String(verify(c.secret, c.id, c.timestamp, c.signatures, Buffer.from(c.body, "base64"))));
}
`)
				runDocVerifier(t, cases, dir, node, "main.js")
			}
		})
	}
}
