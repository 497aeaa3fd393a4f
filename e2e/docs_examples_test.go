package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// docExample is a shell example from the docs and the output printed after it.
type docExample struct {
	where   string // file:line
	command string
	output  string // "" when the docs show none
}

// docExamples finds the curl examples of a Markdown file: indented blocks whose first
// line is a curl command to the embedded default's REST address, and the indented
// block that follows them when it is JSON or an HTTP response.
// Examples after a line equal to stop (a heading whose examples need another setup) are
// left out.
func docExamples(t *testing.T, file, stop string) []docExample {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	type block struct {
		line int
		text string
	}
	var blocks []block
	var cur []string
	start, n := 0, 0
	flush := func() {
		if len(cur) > 0 {
			blocks = append(blocks, block{start, strings.TrimRight(strings.Join(cur, "\n"), "\n")})
		}
		cur = nil
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		n++
		l := sc.Text()
		if stop != "" && l == stop {
			break
		}
		switch {
		case strings.HasPrefix(l, "    "):
			if cur == nil {
				start = n
			}
			cur = append(cur, l[4:])
		case strings.TrimSpace(l) == "" && cur != nil:
			cur = append(cur, "")
		default:
			flush()
		}
	}
	flush()
	var out []docExample
	for i, b := range blocks {
		if !strings.HasPrefix(b.text, "curl -sS") || !strings.Contains(b.text, "http://127.0.0.1:8080/v1/") {
			continue
		}
		// A blank line ends the command; what follows in the same block is its output.
		command, output, _ := strings.Cut(b.text, "\n\n")
		ex := docExample{where: fmt.Sprintf("%s:%d", filepath.Base(file), b.line), command: command}
		output = strings.TrimSpace(output)
		if output == "" && i+1 < len(blocks) {
			output = blocks[i+1].text
		}
		if strings.HasPrefix(output, "{") || strings.HasPrefix(output, "HTTP/") {
			ex.output = output
		}
		out = append(out, ex)
	}
	return out
}

// shape is the structure of a JSON value: the keys of objects, recursively, and the
// kinds of values, without the values themselves.
func shape(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, x := range v {
			out[k] = shape(x)
		}
		return out
	case []any:
		if len(v) == 0 {
			return []any{}
		}
		return []any{shape(v[0])}
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "bool"
	}
	return "null"
}

// splitResponse returns an output's HTTP status line ("" for a bare body) and its JSON.
func splitResponse(out string) (string, string) {
	out = strings.ReplaceAll(out, "\r\n", "\n")
	if !strings.HasPrefix(out, "HTTP/") {
		return "", out
	}
	status, rest, _ := strings.Cut(out, "\n")
	_, body, _ := strings.Cut(rest, "\n\n")
	return strings.TrimSpace(status), body
}

var exampleID = regexp.MustCompile(`\b01m[0-9a-z]{23}\b`)

// The curl examples of the README, of docs/api.md, of docs/idempotency.md's
// walk-through and of docs/queue.md, run verbatim (but for the port) in the quick start's flow against the
// embedded default, print what the docs show: the same HTTP status and the same JSON fields.
func TestDocsExamples(t *testing.T) {
	t.Parallel()
	free := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}
	httpAddr, grpcAddr, smtpAddr := free(), free(), free()
	const devKey = "mg_local_dev_only" // the README's
	dir := t.TempDir()
	p := start(t, dir, []string{"MAILGATE_DEV_KEY=" + devKey, "MAILGATE_LISTEN_HTTP=" + httpAddr,
		"MAILGATE_LISTEN_GRPC=" + grpcAddr, "MAILGATE_LISTEN_SMTP=" + smtpAddr}, "serve")
	p.httpAddr, p.grpcAddr, p.baseURL = httpAddr, grpcAddr, "http://"+httpAddr
	if err := p.waitReady(); err != nil {
		t.Fatalf("mailgate serve: %v", err)
	}
	t.Cleanup(func() { p.stop(t) })

	// In this order: docs/api.md's look-up example takes the id of the README's message.
	var examples []docExample
	for _, doc := range []struct {
		file, stop string
		min        int
	}{
		{"../README.md", "", 1},
		{"../docs/api.md", "", 3},
		{"../docs/idempotency.md", "### A transient failure is not stored", 4},
		{"../docs/queue.md", "## Storage design", 6},
	} {
		found := docExamples(t, doc.file, doc.stop)
		if len(found) < doc.min {
			t.Fatalf("found %d curl examples in %s, want at least %d; the parser or the docs changed", len(found), doc.file, doc.min)
		}
		examples = append(examples, found...)
	}
	var lastID string // the look-up example takes "the id from your own response"
	for _, ex := range examples {
		if !strings.Contains(ex.command, "/v1/") {
			continue // /metrics and the like: not JSON
		}
		cmd := strings.ReplaceAll(ex.command, "127.0.0.1:8080", httpAddr)
		if lastID != "" {
			cmd = exampleID.ReplaceAllString(cmd, lastID)
		}
		c := exec.Command("bash", "-c", cmd)
		c.Dir = dir
		c.Env = append(os.Environ(), "MAILGATE_DEV_KEY="+devKey, "MAILGATE_API_KEY="+devKey)
		got, err := c.CombinedOutput()
		if err != nil {
			t.Errorf("%s: %v\n%s", ex.where, err, got)
			continue
		}
		gotStatus, gotBody := splitResponse(string(got))
		var gotJSON map[string]any
		if err := json.Unmarshal([]byte(gotBody), &gotJSON); err != nil {
			t.Errorf("%s: output is not JSON: %v\n%s", ex.where, err, got)
			continue
		}
		if id, ok := gotJSON["id"].(string); ok {
			lastID = id
		}
		if ex.output == "" {
			continue
		}
		wantStatus, wantBody := splitResponse(ex.output)
		var wantJSON map[string]any
		if err := json.Unmarshal([]byte(wantBody), &wantJSON); err != nil {
			t.Errorf("%s: the documented output is not JSON: %v", ex.where, err)
			continue
		}
		if gotStatus != wantStatus {
			t.Errorf("%s: status %q, documented %q", ex.where, gotStatus, wantStatus)
		}
		if g, w := mustMarshal(shape(gotJSON)), mustMarshal(shape(wantJSON)); g != w {
			t.Errorf("%s: output has fields\n  %s\nthe docs show\n  %s", ex.where, g, w)
		}
	}
}

func mustMarshal(v any) string {
	b, _ := json.Marshal(v) // maps marshal with sorted keys
	return string(b)
}

// mdSection returns the text of a Markdown file from the line heading to the next heading
// of the same level.
func mdSection(t *testing.T, file, heading string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("%s has no %q", file, heading)
	}
	level := heading[:strings.IndexByte(heading, ' ')+1]
	if i := strings.Index(rest, "\n"+level); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

// fencedYAML returns the n-th ```yaml block of text.
func fencedYAML(t *testing.T, text string, n int) string {
	t.Helper()
	parts := strings.Split(text, "```yaml\n")
	if len(parts) <= n {
		t.Fatalf("no yaml block %d", n)
	}
	block, _, _ := strings.Cut(parts[n], "```")
	return block
}

// The errors docs/configuration.md shows for its example files, with their line numbers,
// are what check-config prints for those files.
func TestConfigDocErrors(t *testing.T) {
	t.Parallel()
	const doc = "../docs/configuration.md"
	dir := t.TempDir()
	check := func(name, yaml string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		c := exec.Command(binary, "check-config", path)
		c.Env = append(os.Environ(), "MAILGATE_SECRETS=")
		out, _ := c.CombinedOutput()
		return string(out)
	}
	checking := mdSection(t, doc, "## Checking a configuration")
	complete := fencedYAML(t, mdSection(t, doc, "## A complete example"), 1)
	broken := fencedYAML(t, checking, 1)
	outputs := map[string]string{"example.yaml": check("example.yaml", complete), "broken.yaml": check("broken.yaml", broken)}
	for _, line := range strings.Split(checking, "\n") {
		l := strings.TrimSpace(line)
		if !strings.Contains(l, "(line ") {
			continue
		}
		found := false
		for _, out := range outputs {
			found = found || strings.Contains(out, l)
		}
		if !found {
			t.Errorf("docs/configuration.md shows %q; check-config printed:\n%s\n%s", l, outputs["example.yaml"], outputs["broken.yaml"])
		}
	}
}
