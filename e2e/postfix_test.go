package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

// postfixRelay runs a private Postfix (scripts/postfix-relay.sh) as the stand-in for
// Microsoft 365's MX endpoint behind a certificate-based inbound connector: STARTTLS
// required, relaying only for a client certificate from its test CA. args are more
// options for the script's start (--relayhost H:P --no-client-cert --no-tls makes it a
// smart host client in front of H:P instead). It returns the instance's directory
// (certificates, maildir, postfix.log) and its address. The test is skipped, saying why,
// only where Postfix cannot be installed.
func postfixRelay(t *testing.T, args ...string) (dir, addr string) {
	t.Helper()
	// Not t.TempDir(): Postfix's unprivileged processes must be able to reach it.
	dir, err := os.MkdirTemp("", "mailgate-postfix-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	addr = freeAddr(t)
	port := addr[strings.LastIndexByte(addr, ':')+1:]
	cmd := exec.Command("bash", append([]string{"../scripts/postfix-relay.sh", "start", dir, port}, args...)...)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit) && exit.ExitCode() == 3:
		os.RemoveAll(dir)
		t.Skipf("Postfix is not available on this machine, so this end-to-end test cannot run: %s", strings.TrimSpace(string(out)))
	case err != nil:
		t.Fatalf("starting Postfix: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("bash", "../scripts/postfix-relay.sh", "stop", dir).CombinedOutput(); err != nil {
			t.Errorf("stopping Postfix: %v\n%s", err, out)
		}
		if !t.Failed() {
			os.RemoveAll(dir)
		} else {
			t.Logf("Postfix's directory (log: postfix.log) is kept: %s", dir)
		}
	})
	return dir, addr
}

// delivered waits for Postfix to deliver the message for rcpt and returns the file.
func delivered(t *testing.T, dir, rcpt string) []byte {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		files, _ := filepath.Glob(filepath.Join(dir, "maildir", "new", "*"))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err == nil && bytes.Contains(b, []byte("\nDelivered-To: "+rcpt+"\n")) {
				return b
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	log, _ := os.ReadFile(filepath.Join(dir, "postfix.log"))
	t.Fatalf("Postfix delivered nothing for %s; its log:\n%s", rcpt, log)
	return nil
}

func TestRelayThroughPostfix(t *testing.T) {
	t.Parallel()
	pdir, paddr := postfixRelay(t)
	dir := t.TempDir()
	cfg := fmt.Sprintf(`listen: {http: "%%s", grpc: "%%s"}
keys:
  - {name: app, hash: %s, senders: ["*@contoso.test"]}
routes:
  - {match: "nocert@contoso.test", backend: nocert}
  - {match: "*@contoso.test", backend: connector}
backends:
  connector:
    type: relay
    address: %s
    tls: required
    client_cert_file: %s/client.pem
    client_key_file: %s/client.key
    ca_file: %s/ca.pem
    accepted_domains: [contoso.test]
  nocert:
    type: relay
    address: %s
    ca_file: %s/ca.pem
    accepted_domains: [contoso.test]
log: {format: json}
`, keys["app"].Hash, paddr, pdir, pdir, pdir, paddr, pdir)
	p := serveConfig(t, dir, cfg)
	key := bearer(keys["app"].Key)

	// A raw message: what arrives must be these bytes, under the headers Postfix adds.
	raw := strings.Join([]string{
		"From: Alerts <alerts@contoso.test>",
		"To: ops@fabrikam.test",
		"Subject: Disk almost full",
		"Message-ID: <disk-1@contoso.test>",
		"Date: Tue, 24 Nov 2026 10:00:00 +0000",
		"MIME-Version: 1.0",
		"Content-Type: text/plain; charset=utf-8",
		"Content-Transfer-Encoding: 8bit",
		"",
		"Volume /data is 97% full.",
		".a line that starts with a dot",
		"Grüße",
		"",
	}, "\r\n")
	resp := sendOK(t, p, key, mustJSON(t, map[string]any{
		"rawMime": []byte(raw),
		"to":      []map[string]string{{"address": "ops@fabrikam.test"}},
	}))
	if resp.GetBackend() != "connector" || len(resp.GetAcceptedRecipients()) != 1 {
		t.Errorf("response %v", resp)
	}
	got := delivered(t, pdir, "ops@fabrikam.test")
	want := strings.ReplaceAll(raw, "\r\n", "\n")
	if !bytes.HasSuffix(got, []byte("\n"+want)) {
		t.Errorf("Postfix delivered\n%s\nwant the message as sent:\n%s", got, want)
	}
	// Postfix's Received line says how it came: over TLS 1.2 or later (ESMTPS, or
	// UTF8SMTPS with SMTPUTF8), with the client certificate verified.
	if !bytes.Contains(got, []byte("SMTPS id")) || !bytes.Contains(got, []byte("(using TLSv1.")) ||
		!bytes.Contains(got, []byte(`Client CN "relay.contoso.test", Issuer "mailgate test CA" (verified OK)`)) {
		t.Errorf("the message did not come over TLS with the client certificate:\n%s", got)
	}

	// A structured message, two recipients.
	resp = sendOK(t, p, key, mustJSON(t, map[string]any{
		"from":    map[string]string{"address": "reports@contoso.test"},
		"to":      []map[string]string{{"address": "a@fabrikam.test"}, {"address": "b@contoso.test"}},
		"subject": "Weekly",
		"text":    "All well.",
	}))
	if len(resp.GetAcceptedRecipients()) != 2 {
		t.Errorf("response %v", resp)
	}
	for _, rcpt := range []string{"a@fabrikam.test", "b@contoso.test"} {
		if m := delivered(t, pdir, rcpt); !bytes.Contains(m, []byte("Message-ID: "+resp.GetMessageId())) {
			t.Errorf("message for %s lacks Message-ID %s:\n%s", rcpt, resp.GetMessageId(), m)
		}
	}

	// Without the client certificate the connector refuses to relay, and the caller sees
	// Postfix's reply.
	r := sendREST(t, p, key, mustJSON(t, map[string]any{
		"from": map[string]string{"address": "nocert@contoso.test"},
		"to":   []map[string]string{{"address": "ops@fabrikam.test"}},
		"text": "hello",
	}))
	checkRESTError(t, r, wantError{http: 422, code: codes.FailedPrecondition, reason: "BACKEND_REJECTED"})
	if !bytes.Contains(r.Body, []byte(`"smtpReply":"554 5.7.1`)) || !bytes.Contains(r.Body, []byte("Relay access denied")) {
		t.Errorf("refusal without a certificate: %s", r.Body)
	}

}
