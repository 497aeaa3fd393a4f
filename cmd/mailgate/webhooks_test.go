package main

import (
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/svixtest"
	"github.com/mailgate/mailgate/server/apikey"
	"github.com/mailgate/mailgate/webhook"
)

// mailgate webhooks test NAME sends one signed webhook.test event, which the endpoint,
// svix and webhook.Verify accept; its failures are said plainly.
func TestWebhooksTest(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got []svixtest.Notification
	var headers []http.Header
	status := 204
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		got = append(got, svixtest.Notification{ID: r.Header.Get(webhook.HeaderID), Timestamp: r.Header.Get(webhook.HeaderTimestamp),
			Signature: r.Header.Get(webhook.HeaderSignature), Body: body})
		headers = append(headers, r.Header.Clone())
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)

	stdout, _, err := runCmd("webhooks", "secret")
	secret := strings.TrimSpace(stdout)
	if err != nil || !strings.HasPrefix(secret, "whsec_") {
		t.Fatalf("webhooks secret: %q, %v", stdout, err)
	}
	sec, err := webhook.ParseSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "mailgate.yaml")
	os.WriteFile(cfg, []byte(`
keys:
  - {name: app, hash: `+apikey.Hash("mg_test")+`, senders: ["*"]}
routes:
  - {match: "*", backend: sink}
backends:
  sink: {type: discard}
queue: {dir: `+filepath.Join(dir, "spool")+`}
webhooks:
  crm: {url: "`+srv.URL+`/hooks", secret: `+secret+`, ca_file: `+caFile+`, allow_private: true}
  strict: {url: "`+srv.URL+`/hooks", secret: `+secret+`, ca_file: `+caFile+`}
`), 0o600)

	stdout, stderr, err := runCmd("webhooks", "test", "crm", "--config", cfg)
	if err != nil || !strings.Contains(stdout, "webhook crm: "+srv.URL+"/hooks took event evt_") {
		t.Fatalf("webhooks test crm: %v\nstdout: %s\nstderr: %s", err, stdout, stderr)
	}
	mu.Lock()
	if len(got) != 1 || !strings.Contains(string(got[0].Body), `"type":"webhook.test"`) {
		t.Fatalf("received %+v", got)
	}
	if err := webhook.Verify(headers[0], got[0].Body, time.Now(), 5*time.Minute, sec); err != nil {
		t.Errorf("webhook.Verify: %v", err)
	}
	if errs := svixtest.Verify(t, secret, got[0]); errs[0] != nil {
		t.Errorf("svix: %v", errs[0])
	}
	status = 410
	mu.Unlock()

	for _, tc := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"webhooks", "test", "crm", "--config", cfg}, 1, "410 Gone"},
		{[]string{"webhooks", "test", "strict", "--config", cfg}, 1, "allow_private: true"},
		{[]string{"webhooks", "test", "crn", "--config", cfg}, 2, `no webhook "crn"`},
		{[]string{"webhooks", "test", "--config", cfg}, 2, "give the webhook's NAME"},
		{[]string{"webhooks", "tset"}, 2, `unknown command "tset"`},
	} {
		_, stderr, err := runCmd(tc.args...)
		if code := exitCode(err, io.Discard); code != tc.code || !strings.Contains(stderr, tc.says) {
			t.Errorf("%v: exit %d (%v), stderr %q; want %d and %q", tc.args, code, err, stderr, tc.code, tc.says)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 { // the 410; strict was refused before connecting
		t.Errorf("received %d requests, want 2", len(got))
	}
}
