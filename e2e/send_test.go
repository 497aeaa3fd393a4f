package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// sendResult is what one run of `mailgate send` printed, and its exit status.
type sendResult struct {
	stdout, stderr string
	code           int
}

// sendCLI runs `mailgate send args...` with stdin (nil: /dev/null, as under cron) and
// env added to an environment without MAILGATE_URL and MAILGATE_API_KEY. It fails the
// test if any API key appears in the output.
func sendCLI(t *testing.T, env []string, stdin io.Reader, args ...string) sendResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, append([]string{"send"}, args...)...)
	cmd.Env = append(os.Environ(), append([]string{"MAILGATE_URL=", "MAILGATE_API_KEY="}, env...)...)
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("mailgate send %q did not finish within %s", args, requestTimeout)
	}
	r := sendResult{stdout: stdout.String(), stderr: stderr.String(), code: exitCode(t, err)}
	for name, k := range keys {
		if strings.Contains(r.stdout+r.stderr, k.Key) {
			t.Errorf("mailgate send printed the API key %s:\n%s%s", name, r.stdout, r.stderr)
		}
	}
	return r
}

// sentID checks that the run succeeded with the one line "ID MESSAGE-ID SENT", and
// returns the id.
func sentID(t *testing.T, r sendResult, domain string) string {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit status %d, want 0; stderr:\n%s", r.code, r.stderr)
	}
	f := strings.Fields(r.stdout)
	if len(f) != 3 || strings.Count(r.stdout, "\n") != 1 || len(f[0]) != 26 ||
		f[1] != "<"+f[0]+"@"+domain+">" || f[2] != "SENT" {
		t.Fatalf("stdout %q, want one line: ID <ID@%s> SENT", r.stdout, domain)
	}
	if r.stderr != "" {
		t.Errorf("stderr is not empty: %s", r.stderr)
	}
	return f[0]
}

// sendJSON is the --json output.
type sendJSON struct {
	ID                 string   `json:"id"`
	MessageID          string   `json:"messageId"`
	Route              string   `json:"route"`
	Backend            string   `json:"backend"`
	Status             string   `json:"status"`
	Replayed           *bool    `json:"replayed"`
	AcceptedRecipients []string `json:"acceptedRecipients"`
}

func decodeSendJSON(t *testing.T, r sendResult) sendJSON {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit status %d, want 0; stderr:\n%s", r.code, r.stderr)
	}
	if strings.Count(r.stdout, "\n") != 1 || !strings.HasSuffix(r.stdout, "\n") {
		t.Errorf("--json: want one line, got %q", r.stdout)
	}
	var out sendJSON
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("--json output %q: %v", r.stdout, err)
	}
	if out.Replayed == nil {
		t.Errorf("--json output lacks replayed: %s", r.stdout)
	}
	return out
}

// failed checks a run's exit status and that stderr holds every one of want.
func failed(t *testing.T, r sendResult, code int, want ...string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit status %d, want %d; stderr:\n%s", r.code, code, r.stderr)
	}
	if r.stdout != "" {
		t.Errorf("stdout %q, want nothing", r.stdout)
	}
	for _, w := range want {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
		}
	}
}

// TestSendCommand runs `mailgate send` against a server whose mailboxes may each send
// one message a minute: every case sends as its own From address, so the cases do not
// throttle each other, and the throttled case shows exit status 75.
func TestSendCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	outbox := filepath.Join(dir, "outbox")
	p := serveConfigFunc(t, dir, func(httpAddr, grpcAddr string) string {
		cfg := configYAML(httpAddr, grpcAddr, outbox)
		if !strings.Contains(cfg, "\nlimits:\n") {
			t.Fatal("configYAML has no limits section to add the mailbox limit to")
		}
		return strings.Replace(cfg, "\nlimits:\n", "\nlimits:\n  mailbox: {messages_per_minute: 1}\n", 1)
	})
	p.outbox = outbox
	app := keys["app"].Key
	restURL, grpcURL := "--server="+p.baseURL, "--server=grpc://"+p.grpcAddr
	const domain = "notify.example.com"

	t.Run("REST: addresses, headers, tags, attachments", func(t *testing.T) {
		t.Parallel()
		files := t.TempDir()
		write := func(name string, b []byte) string {
			path := filepath.Join(files, name)
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			return path
		}
		pdf := randomBytes(t, 64<<10)
		blob := append([]byte("zz\x00\x01"), randomBytes(t, 1000)...)
		notes := []byte("plain notes, no extension\n")
		png := randomBytes(t, 2<<10)
		html := `<p>Hello</p><img src="cid:logo@e2e">`
		r := sendCLI(t, nil, nil, restURL, "--key", app,
			"--from", "Reports Robot <attach@"+domain+">",
			"--to", `"Doe, Jane" <jane@example.net>, bob@example.org`,
			"--to", "carol@example.net", "--cc", "dave@example.net", "--bcc", "hidden-cli@example.org",
			"--subject", "Nightly report ✓",
			"--text", "See the attachments.\n", "--html", html,
			"--attach", write("report.pdf", pdf), "--attach", write("notes", notes),
			"--attach", write("blob", blob), "--inline", write("logo.png", png)+":logo@e2e",
			"--header", "X-Ticket: T-42", "--tag", "job=nightly", "--save-to-sent-items", "false")
		id := sentID(t, r, domain)
		checkEML(t, readEML(t, p, id), wantEML{
			MessageID: "<" + id + "@" + domain + ">",
			From:      mail.Address{Name: "Reports Robot", Address: "attach@" + domain},
			To: []mail.Address{{Name: "Doe, Jane", Address: "jane@example.net"},
				{Address: "bob@example.org"}, {Address: "carol@example.net"}},
			Cc:      []mail.Address{{Address: "dave@example.net"}},
			Bcc:     []string{"hidden-cli@example.org"},
			Subject: "Nightly report ✓",
			Headers: map[string]string{"X-Ticket": "T-42"},
			Text:    "See the attachments.\n",
			HTML:    html,
			Attachments: []wantAttachment{
				{Filename: "report.pdf", ContentType: "application/pdf", Content: pdf},
				{Filename: "notes", ContentType: "text/plain", Content: notes},
				{Filename: "blob", ContentType: "application/octet-stream", Content: blob},
				{Filename: "logo.png", ContentType: "image/png", Content: png, ContentID: "logo@e2e"},
			},
		})
		// The tag arrived: GetMessage shows it.
		got := rest(t, "GET", p.baseURL+"/v1/messages/"+id, bearer(app), nil)
		if got.Status != 200 || !strings.Contains(string(got.Body), `"job":"nightly"`) {
			t.Errorf("GetMessage: HTTP %d %s, want the tag job=nightly", got.Status, got.Body)
		}
	})

	// gRPC, with the server and key from the environment, and the text body from stdin
	// (no --text: stdin is a pipe).
	t.Run("gRPC: environment, body from stdin", func(t *testing.T) {
		t.Parallel()
		body := "line one\nGrüße, line two\n"
		r := sendCLI(t, []string{"MAILGATE_URL=grpc://" + p.grpcAddr, "MAILGATE_API_KEY=" + app},
			strings.NewReader(body), "--from", "stdin@"+domain, "--to", "ops@example.net", "--subject", "from stdin")
		id := sentID(t, r, domain)
		checkEML(t, readEML(t, p, id), wantEML{
			MessageID: "<" + id + "@" + domain + ">",
			From:      mail.Address{Address: "stdin@" + domain},
			To:        []mail.Address{{Address: "ops@example.net"}},
			Subject:   "from stdin",
			Text:      body,
		})
	})

	t.Run("REST: --html - and --key-file", func(t *testing.T) {
		t.Parallel()
		keyFile := writeData(t, "key", app+"\n")
		html := "<h1>Report</h1>\n"
		r := sendCLI(t, nil, strings.NewReader(html), restURL, "--key-file", keyFile,
			"--from", "html@"+domain, "--to", "ops@example.net", "--subject", "html", "--text", "Report", "--html", "-")
		id := sentID(t, r, domain)
		checkEML(t, readEML(t, p, id), wantEML{
			MessageID: "<" + id + "@" + domain + ">",
			From:      mail.Address{Address: "html@" + domain},
			To:        []mail.Address{{Address: "ops@example.net"}},
			Subject:   "html",
			Text:      "Report",
			HTML:      html,
		})
	})

	t.Run("gRPC: --raw FILE", func(t *testing.T) {
		t.Parallel()
		msg := crlf("From: Raw <raw@"+domain+">", "To: ops@example.net", "Subject: raw",
			"Message-ID: <raw-1@"+domain+">", "Date: Tue, 24 Nov 2026 10:02:00 +0000",
			"MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", "", "Raw body ✓", "")
		r := sendCLI(t, nil, nil, grpcURL, "--key", app, "--raw", writeData(t, "raw.eml", msg))
		if r.code != 0 {
			t.Fatalf("exit status %d; stderr:\n%s", r.code, r.stderr)
		}
		f := strings.Fields(r.stdout)
		if len(f) != 3 || f[1] != "<raw-1@"+domain+">" || f[2] != "SENT" {
			t.Fatalf("stdout %q, want ID <raw-1@%s> SENT", r.stdout, domain)
		}
		if got := string(readEML(t, p, f[0])); got != msg {
			t.Errorf("the .eml differs from the file sent:\n got %q\nwant %q", got, msg)
		}
	})

	// The same key twice: one message, the same id; the second answer is a replay.
	t.Run("idempotency key, JSON output", func(t *testing.T) {
		t.Parallel()
		args := []string{"--key", app, "--from", "idem@" + domain, "--to", "ops@example.net",
			"--subject", "once", "--text", "only once", "--idempotency-key", "e2e-cli-1", "--json"}
		first := decodeSendJSON(t, sendCLI(t, nil, nil, append(args, restURL)...))
		if len(first.ID) != 26 || first.MessageID != "<"+first.ID+"@"+domain+">" || first.Route != "notify" ||
			first.Backend != "outbox" || first.Status != "SENT" || *first.Replayed ||
			strings.Join(first.AcceptedRecipients, ",") != "ops@example.net" {
			t.Errorf("first answer %+v, want a new SENT message to ops@example.net on notify/outbox", first)
		}
		second := decodeSendJSON(t, sendCLI(t, nil, nil, append(args, grpcURL)...))
		if second.ID != first.ID || !*second.Replayed {
			t.Errorf("second answer %+v, want id %s replayed", second, first.ID)
		}
		readEML(t, p, first.ID)
	})

	// auto derives the key from the message: the same command again is not sent again
	// (the mailbox's limit of one a minute would refuse a second message), a different
	// message is a different key.
	t.Run("idempotency key auto", func(t *testing.T) {
		t.Parallel()
		args := func(text string) []string {
			return []string{restURL, "--key", app, "--from", "auto@" + domain, "--to", "ops@example.net",
				"--subject", "auto", "--text", text, "--idempotency-key", "auto", "--json"}
		}
		first := decodeSendJSON(t, sendCLI(t, nil, nil, args("same")...))
		second := decodeSendJSON(t, sendCLI(t, nil, nil, args("same")...))
		if first.ID == "" || second.ID != first.ID || *first.Replayed || !*second.Replayed {
			t.Errorf("answers %+v and %+v, want one id, the second replayed", first, second)
		}
		failed(t, sendCLI(t, nil, nil, args("different")...), 75, "THROTTLED")
	})

	t.Run("exit statuses", func(t *testing.T) {
		t.Parallel()
		msg := func(from string) []string {
			return []string{"--from", from + "@" + domain, "--to", "ops@example.net", "--subject", "s", "--text", "t"}
		}
		t.Run("401 unknown key: 77", func(t *testing.T) {
			t.Parallel()
			for _, server := range []string{restURL, grpcURL} {
				failed(t, sendCLI(t, nil, nil, append(msg("badkey"), server, "--key", "mg_wrong")...),
					77, "UNAUTHENTICATED")
			}
		})
		t.Run("403 not allowed to send as: 77", func(t *testing.T) {
			t.Parallel()
			failed(t, sendCLI(t, nil, nil, restURL, "--key", app, "--from", "boss@elsewhere.example",
				"--to", "ops@example.net", "--text", "t"), 77, "SENDER_NOT_ALLOWED")
		})
		t.Run("400 bad address: 65", func(t *testing.T) {
			t.Parallel()
			for _, server := range []string{restURL, grpcURL} {
				r := sendCLI(t, nil, nil, server, "--key", app, "--from", "bad@"+domain,
					"--to", "not-an-address", "--text", "t")
				failed(t, r, 65, "INVALID_ARGUMENT", "\n  to[0].address: ")
			}
		})
		t.Run("429 mailbox limit: 75", func(t *testing.T) {
			t.Parallel()
			sentID(t, sendCLI(t, nil, nil, append(msg("throttle"), restURL, "--key", app)...), domain)
			for _, server := range []string{restURL, grpcURL} {
				r := sendCLI(t, nil, nil, append(msg("throttle"), server, "--key", app)...)
				failed(t, r, 75, "THROTTLED", "mailgate send: retry after ")
			}
		})
		t.Run("unreachable: 75", func(t *testing.T) {
			t.Parallel()
			closed := freeAddr(t)
			for _, server := range []string{"--server=http://" + closed, "--server=grpc://" + closed} {
				failed(t, sendCLI(t, nil, nil, append(msg("down"), server, "--key", app)...), 75, "cannot reach")
			}
		})
		t.Run("no key: 77", func(t *testing.T) {
			t.Parallel()
			failed(t, sendCLI(t, nil, nil, append(msg("nokey"), restURL)...), 77, "MAILGATE_API_KEY")
		})
		t.Run("unreadable file: 66", func(t *testing.T) {
			t.Parallel()
			missing := filepath.Join(t.TempDir(), "missing.pdf")
			failed(t, sendCLI(t, nil, nil, append(msg("nofile"), restURL, "--key", app, "--attach", missing)...),
				66, missing)
		})
		t.Run("usage: 2", func(t *testing.T) {
			t.Parallel()
			for _, args := range [][]string{
				{"--no-such-flag"},
				{"bob@example.net"},
				{"--server", "ftp://example.net"},
				{"--header", "no colon"},
				{"--text", "-", "--html", "-"},
			} {
				r := sendCLI(t, nil, nil, append([]string{"--key", app}, args...)...)
				if r.code != 2 || r.stderr == "" {
					t.Errorf("%q: exit status %d, want 2 and a reason on stderr:\n%s", args, r.code, r.stderr)
				}
			}
		})
	})
}
