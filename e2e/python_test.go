package e2e

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protowire"

	mailgatev1 "github.com/mailgate/mailgate/api/mailgate/v1"
	"github.com/mailgate/mailgate/senders/graph/graphtest"
)

// debianPython is the interpreter Debian's python3-grpc-tools and python3-grpcio
// install into (scripts/python-grpc.sh).
const debianPython = "/usr/bin/python3"

// pythonGRPC makes sure Debian's Python gRPC toolchain is installed; the test is
// skipped, saying why, only where it cannot be.
func pythonGRPC(t *testing.T) {
	t.Helper()
	out, err := exec.Command("bash", "../scripts/python-grpc.sh", "install").CombinedOutput()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit) && exit.ExitCode() == 3:
		t.Skipf("Debian's Python gRPC tools are not available on this machine, so the Python client test cannot run: %s", strings.TrimSpace(string(out)))
	case err != nil:
		t.Fatalf("installing Python gRPC tools: %v\n%s", err, out)
	}
	t.Logf("%s", strings.TrimSpace(string(out)))
}

// TestPythonClient compiles the API with the protoc of Debian 12's python3-grpc-tools
// (1.14, older than proto3 `optional`), and calls the service from Python with the
// generated stubs: saveToSentItems false, and absent, must reach Microsoft 365 as such.
func TestPythonClient(t *testing.T) {
	t.Parallel()
	pythonGRPC(t)
	gen := t.TempDir()
	protos := []string{"../proto/mailgate/v1/mail.proto"}
	for _, pattern := range []string{"../third_party/google/api/*.proto", "../third_party/protoc-gen-openapiv2/options/*.proto"} {
		m, err := filepath.Glob(pattern)
		if err != nil || len(m) == 0 {
			t.Fatalf("no protos match %s (%v)", pattern, err)
		}
		protos = append(protos, m...)
	}
	args := append([]string{"-m", "grpc_tools.protoc", "-I../proto", "-I../third_party",
		"--python_out=" + gen, "--grpc_python_out=" + gen}, protos...)
	if out, err := exec.Command(debianPython, args...).CombinedOutput(); err != nil {
		t.Fatalf("grpc_tools.protoc: %v\n%s", err, out)
	}

	f := graphtest.New(t)
	p := graphServer(t, f, "")
	cmd := exec.Command(debianPython, "testdata/mailgate_client.py", p.grpcAddr, "billing@contoso.com", "alice@example.com")
	cmd.Env = append(os.Environ(), "PYTHONPATH="+gen, "MAILGATE_API_KEY="+keys["app"].Key, "PYTHONDONTWRITEBYTECODE=1")
	out, err := cmd.Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			t.Fatalf("Python client: %v\n%s", err, exit.Stderr)
		}
		t.Fatalf("Python client: %v", err)
	}
	type sent struct {
		ID, Status, Backend string
		Accepted            []string
	}
	var got struct {
		Sent []sent
		Get  struct {
			ID, From, Status, Route string
			Accepted                []string
		}
		Unauthenticated string
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("Python client printed %q: %v", out, err)
	}
	if len(got.Sent) != 2 {
		t.Fatalf("Python client: %s", out)
	}
	for _, s := range got.Sent {
		if len(s.ID) != 26 || s.Status != "SENT" || s.Backend != "m365" || len(s.Accepted) != 1 || s.Accepted[0] != "alice@example.com" {
			t.Errorf("SendMail answered %+v", s)
		}
	}
	g := got.Get
	if g.ID != got.Sent[0].ID || g.From != "billing@contoso.com" || g.Status != "SENT" || g.Route != "graph" || len(g.Accepted) != 1 {
		t.Errorf("GetMessage answered %+v, want the first message's record", g)
	}
	if got.Unauthenticated != "UNAUTHENTICATED" {
		t.Errorf("a call without a key: %s, want UNAUTHENTICATED", got.Unauthenticated)
	}
	// What Graph received: false as given, and the backend's default (true) without it.
	m := f.Sent()
	if len(m) != 2 {
		t.Fatalf("Graph received %d messages, want 2", len(m))
	}
	if s := m[0].SaveToSentItems; s == nil || *s {
		t.Errorf("saveToSentItems false from Python reached Graph as %v", fmtBool(s))
	}
	if s := m[1].SaveToSentItems; s == nil || !*s {
		t.Errorf("no saveToSentItems from Python reached Graph as %v, want the default true", fmtBool(s))
	}
}

func fmtBool(b *bool) string {
	if b == nil {
		return "absent"
	}
	if *b {
		return "true"
	}
	return "false"
}

// TestOldSaveToSentItemsField: a client generated from the mailgate.proto in which
// save_to_sent_items was `optional bool` field 11 is refused with INVALID_ARGUMENT naming
// the field and the fix, and nothing is sent with the backend's default instead.
func TestOldSaveToSentItemsField(t *testing.T) {
	t.Parallel()
	f := graphtest.New(t)
	p := graphServer(t, f, "")
	req := &mailgatev1.SendMailRequest{
		From: &mailgatev1.Address{Address: "billing@contoso.com"},
		To:   []*mailgatev1.Address{{Address: "alice@example.com"}},
		Text: "hi",
	}
	// Field 11, varint 0: what the old stubs put on the wire for save_to_sent_items false.
	req.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 11, protowire.VarintType), 0))
	_, err := dial(t, p).SendMail(rpcContext(t, bearer(keys["app"].Key)), req)
	checkGRPCError(t, err, wantError{code: codes.InvalidArgument, reason: "INVALID_ARGUMENT", fields: []string{"saveToSentItems"}})
	if err != nil && !strings.Contains(err.Error(), "regenerate the client") {
		t.Errorf("the error does not say how to fix it: %v", err)
	}
	if n := len(f.Sent()); n != 0 {
		t.Errorf("Graph received %d messages, want none", n)
	}
}
