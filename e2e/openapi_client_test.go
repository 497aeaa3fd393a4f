package e2e

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/mailgate/mailgate/senders/graph/graphtest"
)

// goIn runs the go command in dir, with the toolchain and module cache of the test.
func goIn(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %v (in %s): %v\n%s", args, dir, err, out)
	}
}

// TestOpenAPIClient generates a Go client from the committed OpenAPI document with
// go-swagger (pinned in tools/go.mod, as are the packages the client imports), builds a
// program on it (testdata/openapiclient) and runs it against mailgate: a message sent,
// replayed by its Idempotency-Key header and read back, and the 400, 401, 404 and 429
// answers decoded as the declared googleRpcStatus, with 429's Retry-After header.
func TestOpenAPIClient(t *testing.T) {
	t.Parallel()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	tools := filepath.Join(root, "tools")
	gen := t.TempDir()
	swagger := filepath.Join(gen, "swagger")
	goIn(t, tools, "build", "-o", swagger, "github.com/go-swagger/go-swagger/cmd/swagger")

	// The client's module takes the tools' requirements and checksums, so that it builds
	// with the pinned versions and nothing is resolved anew.
	mod, err := os.ReadFile(filepath.Join(tools, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	mod = regexp.MustCompile(`(?m)^module .*$`).ReplaceAll(mod, []byte("module example.com/mailgateclient"))
	sum, err := os.ReadFile(filepath.Join(tools, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	driver, err := os.ReadFile("testdata/openapiclient/main.go")
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(gen, "cmd", "openapiclient"), 0o755)
	for name, b := range map[string][]byte{"go.mod": mod, "go.sum": sum, "cmd/openapiclient/main.go": driver} {
		if err := os.WriteFile(filepath.Join(gen, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(swagger, "generate", "client", "--quiet", "-A", "mailgate",
		"-f", filepath.Join(root, "openapi", "mailgate.swagger.json"), "-t", gen)
	cmd.Dir = gen
	cmd.Env = append(os.Environ(), "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("swagger generate client: %v\n%s", err, out)
	}
	goIn(t, gen, "build", "-o", filepath.Join(gen, "openapiclient"), "./cmd/openapiclient")

	f := graphtest.New(t)
	f.Script("busy@contoso.com", graphtest.Throttle("2.128"))
	p := graphServer(t, f, "")
	run := exec.Command(filepath.Join(gen, "openapiclient"), p.httpAddr, "billing@contoso.com", "busy@contoso.com", "alice@example.com")
	run.Env = append(os.Environ(), "MAILGATE_API_KEY="+keys["app"].Key)
	out, err := run.Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			t.Fatalf("openapiclient: %v\n%s", err, exit.Stderr)
		}
		t.Fatal(err)
	}
	type status struct {
		HTTP       int
		Code       codes.Code
		Message    string
		Types      []string
		Fields     []string
		RetryAfter int64
	}
	type sent struct {
		ID, Route, Backend string
		Replayed           bool
		AcceptedRecipients []string
	}
	var got struct {
		Sent, Replay                               sent
		Got                                        struct{ ID, From, Route string }
		Invalid, NoKey, Throttled, NotFound, BadID status
		StatusOfSent                               string
		ReplayedSameRecord                         bool
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("openapiclient printed %q: %v", out, err)
	}
	if s := got.Sent; len(s.ID) != 26 || got.StatusOfSent != "SENT" || s.Route != "graph" || s.Replayed ||
		!slices.Equal(s.AcceptedRecipients, []string{"alice@example.com"}) {
		t.Errorf("SendMail answered %+v (status %s)", s, got.StatusOfSent)
	}
	if !got.Replay.Replayed || !got.ReplayedSameRecord {
		t.Errorf("the same Idempotency-Key header: %+v, want the first answer replayed", got.Replay)
	}
	if g := got.Got; g.ID != got.Sent.ID || g.From != "billing@contoso.com" || g.Route != "graph" {
		t.Errorf("GetMessage answered %+v", g)
	}
	for _, c := range []struct {
		name string
		got  status
		code codes.Code
		// field must be among the BadRequest's violations.
		field      string
		retryAfter int64
	}{
		{"invalid recipient", got.Invalid, codes.InvalidArgument, "to[0].address", 0},
		{"no key", got.NoKey, codes.Unauthenticated, "", 0},
		{"throttled mailbox", got.Throttled, codes.ResourceExhausted, "", 3},
		{"unknown id", got.NotFound, codes.NotFound, "", 0},
		{"malformed id", got.BadID, codes.InvalidArgument, "id", 0},
	} {
		if c.got.Code != c.code || c.got.Message == "" || !slices.Contains(c.got.Types, typeErrorInfo) {
			t.Errorf("%s: HTTP %d decoded as %+v, want code %s with a message and an ErrorInfo", c.name, c.got.HTTP, c.got, c.code)
		}
		if c.field != "" && !slices.Contains(c.got.Fields, c.field) {
			t.Errorf("%s: field violations %q, want %s", c.name, c.got.Fields, c.field)
		}
		if c.got.RetryAfter != c.retryAfter {
			t.Errorf("%s: Retry-After %d, want %d", c.name, c.got.RetryAfter, c.retryAfter)
		}
	}
	// The client sent saveToSentItems false (a *bool, for the document's x-nullable), and
	// Graph received it so; the throttled message never reached Graph.
	m := f.Sent()
	if len(m) != 1 {
		t.Fatalf("Graph received %d messages, want 1", len(m))
	}
	if s := m[0].SaveToSentItems; s == nil || *s {
		t.Errorf("saveToSentItems false reached Graph as %s", fmtBool(s))
	}
}
