package e2e

import (
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net/smtp"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailgate/mailgate/senders/graph/graphtest"
	"github.com/mailgate/mailgate/senders/smtp/smtptest"
)

// Everything a caller or an operator holds secret goes through a running mailgate (API
// keys over REST and SMTP AUTH, a wrong key, the Graph and SMTP AUTH client secret, the
// tokens Entra issues, a mailbox password) with its log at debug level; none of it, and
// no message body, may appear in the log. And every message gets its one log line.
func TestLogsHoldNoSecrets(t *testing.T) {
	t.Parallel()
	entra := graphtest.New(t)
	smtpSrv := smtptest.New(t, smtptest.Options{Mode: smtptest.Submission, Tokens: entra.TokenScope,
		Users: map[string]string{"basic@contoso.com": "Pa55-word-for-the-log-test"}})
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "client-secret")
	os.WriteFile(secretFile, []byte(graphtest.ClientSecret), 0o600)
	passwordFile := filepath.Join(dir, "password")
	os.WriteFile(passwordFile, []byte("Pa55-word-for-the-log-test"), 0o600)
	cas := smtpSrv.CAFileWith(t, entra.CAFile(t))
	shimAddr := freeAddr(t)

	cfg := fmt.Sprintf(`listen: {http: "%%s", grpc: "%%s"}
keys:
  - {name: app, hash: %s, senders: ["*@contoso.com"]}
routes:
  - {match: "graph@contoso.com", backend: graph}
  - {match: "basic@contoso.com", backend: basic, mailbox: basic@contoso.com}
  - {match: "*@contoso.com", backend: submission}
backends:
  graph:
    type: graph
    tenant_id: %[2]s
    client_id: %[3]s
    client_secret_file: %[4]s
    graph_url: %[5]s
    authority_url: %[6]s
    ca_file: %[7]s
  submission:
    type: smtp_auth
    address: %[8]s
    tenant_id: %[2]s
    client_id: %[3]s
    client_secret_file: %[4]s
    authority_url: %[6]s
    ca_file: %[7]s
  basic:
    type: smtp_auth
    auth: login
    address: %[8]s
    username: basic@contoso.com
    password_file: %[9]s
    ca_file: %[7]s
shim:
  listen: %[10]s
log: {format: json, level: debug}
`, keys["app"].Hash, graphtest.TenantID, graphtest.ClientID, secretFile, entra.GraphURL(), entra.AuthorityURL(),
		cas, smtpSrv.Addr(), passwordFile, shimAddr)
	p := serveConfig(t, dir, cfg)
	key := bearer(keys["app"].Key)

	bodies := map[string]string{
		"graph":  "Graph body: the quarterly numbers are 4711",
		"smtp":   "SMTP AUTH body: the door code is 8642",
		"basic":  "Basic body: the safe combination is 1357",
		"shim":   "Shim body: the alarm PIN is 9753",
		"attach": "attachment content: salary list",
	}
	sendOK(t, p, key, mustJSON(t, map[string]any{
		"from": map[string]string{"address": "graph@contoso.com"}, "to": []map[string]string{{"address": "x@fabrikam.com"}},
		"subject": "q", "text": bodies["graph"],
		"attachments": []map[string]any{{"filename": "a.txt", "content": []byte(bodies["attach"])}},
	}))
	sendOK(t, p, key, mustJSON(t, map[string]any{
		"from": map[string]string{"address": "ops@contoso.com"}, "to": []map[string]string{{"address": "x@fabrikam.com"}},
		"subject": "q", "text": bodies["smtp"],
	}))
	sendOK(t, p, key, mustJSON(t, map[string]any{
		"from": map[string]string{"address": "basic@contoso.com"}, "to": []map[string]string{{"address": "x@fabrikam.com"}},
		"subject": "q", "text": bodies["basic"],
	}))
	wrongKey := "mg_thisIsNotAKeyButLooksLikeOne0000000000000"
	if r := sendREST(t, p, bearer(wrongKey), []byte(`{}`)); r.Status != 401 {
		t.Errorf("wrong key: %d", r.Status)
	}
	// A refusal from Microsoft: logged with the remote code.
	smtpSrv.Script(smtptest.StageMail, smtptest.Reply{Code: 550, Enhanced: "5.7.60", Text: "SMTP; Client does not have permissions to send as this sender"})
	if r := sendREST(t, p, key, mustJSON(t, map[string]any{
		"from": map[string]string{"address": "ops@contoso.com"}, "to": []map[string]string{{"address": "x@fabrikam.com"}},
		"subject": "q", "text": bodies["smtp"] + " again",
	})); r.Status != 403 {
		t.Errorf("Send As refusal: %d %s", r.Status, r.Body)
	}

	// The shim: AUTH with the key, and with a wrong one.
	c, err := smtp.Dial(shimAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.StartTLS(&tls.Config{InsecureSkipVerify: true}); err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(smtp.PlainAuth("", "app", wrongKey, "127.0.0.1")); err == nil {
		t.Error("the shim took a wrong key")
	}
	c2, err := smtp.Dial(shimAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.StartTLS(&tls.Config{InsecureSkipVerify: true})
	if err := c2.Auth(smtp.PlainAuth("", "app", keys["app"].Key, "127.0.0.1")); err != nil {
		t.Fatal(err)
	}
	c2.Mail("ops@contoso.com")
	c2.Rcpt("x@fabrikam.com")
	w, _ := c2.Data()
	fmt.Fprintf(w, "From: ops@contoso.com\r\nTo: x@fabrikam.com\r\nSubject: s\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\n\r\n%s\r\n", bodies["shim"])
	if err := w.Close(); err != nil {
		t.Fatalf("shim DATA: %v", err)
	}
	c2.Quit()

	p.stop(t)
	logs := p.logs()
	secrets := map[string]string{
		"API key":          keys["app"].Key,
		"wrong API key":    wrongKey,
		"client secret":    graphtest.ClientSecret,
		"mailbox password": "Pa55-word-for-the-log-test",
	}
	for i, tok := range entra.IssuedTokens() {
		secrets[fmt.Sprintf("access token %d", i)] = tok
	}
	if len(entra.IssuedTokens()) < 2 {
		t.Errorf("%d tokens issued: the test meant to have Graph and SMTP tokens", len(entra.IssuedTokens()))
	}
	for name, body := range bodies {
		secrets[name+" body"] = body
		secrets[name+" body, base64"] = base64.StdEncoding.EncodeToString([]byte(body))
	}
	for what, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("the log holds the %s", what)
		}
	}

	// One line per message, with what an operator needs.
	var accepted, refused int
	for _, l := range logLines(t, logs) {
		switch l["msg"] {
		case "message accepted":
			accepted++
			for _, f := range []string{"id", "key", "route", "backend", "outcome", "duration_ms", "message_id"} {
				if _, ok := l[f]; !ok {
					t.Errorf("accepted line without %s: %v", f, l)
				}
			}
		case "message refused":
			refused++
			if l["remote"] != "550 5.7.60 SMTP; Client does not have permissions to send as this sender" || l["outcome"] != "SEND_AS_DENIED" {
				t.Errorf("refusal line: %v", l)
			}
		}
	}
	if accepted != 4 || refused != 1 {
		t.Errorf("%d accepted and %d refused lines, want 4 and 1", accepted, refused)
	}
}
