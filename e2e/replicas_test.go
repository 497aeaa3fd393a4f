package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/mailgate/mailgate/server/store/storetest"
)

// twoReplicas runs two `mailgate serve` processes on one Redis (the one `make test`
// ensures on 127.0.0.1:6379), under a key prefix of their own, writing into one outbox.
func twoReplicas(t *testing.T) (a, b *proc, outbox string) {
	t.Helper()
	outbox = filepath.Join(t.TempDir(), "outbox")
	prefix := storetest.Prefix(t, storetest.SharedRedis(t), "e2e")
	extra := fmt.Sprintf("redis:\n  url: redis://127.0.0.1:6379/0\n  key_prefix: %q\n", prefix)
	a = serveWith(t, t.TempDir(), outbox, extra)
	b = serveWith(t, t.TempDir(), outbox, extra)
	return a, b, outbox
}

func countEML(t *testing.T, dir string) int {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".eml") {
			n++
		}
	}
	return n
}

// 50 concurrent requests with one Idempotency-Key, spread over both replicas: one
// delivery; every other answer is a replay of it or 409 while it is in flight.
func TestReplicasShareIdempotency(t *testing.T) {
	t.Parallel()
	a, b, outbox := twoReplicas(t)
	body := mustJSON(t, map[string]any{
		"from":    map[string]string{"address": "app@example.com"},
		"to":      []map[string]string{{"address": "bob@example.net"}},
		"subject": "once",
		"text":    "exactly once",
	})
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	ids := map[string]bool{}
	replayed := 0
	for i := range 50 {
		p := []*proc{a, b}[i%2]
		wg.Go(func() {
			req, _ := http.NewRequest("POST", p.baseURL+"/v1/messages:send", strings.NewReader(string(body)))
			req.Header.Set("Authorization", "Bearer "+keys["app"].Key)
			req.Header.Set("Idempotency-Key", `"invoice-2026-11-24-0001"`)
			r, err := doRequest(req)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Error(err)
				return
			}
			statuses[r.Status]++
			if r.Status == 200 {
				resp := decodeSend(t, r.Body)
				ids[resp.GetId()] = true
				if resp.GetReplayed() {
					replayed++
				}
			}
		})
	}
	wg.Wait()
	if n := countEML(t, outbox); n != 1 {
		t.Errorf("%d messages delivered, want exactly 1", n)
	}
	if statuses[200]+statuses[409] != 50 || len(ids) != 1 || replayed != statuses[200]-1 {
		t.Errorf("statuses %v, ids %v, %d replayed: want only 200 (one original, the rest replays of it) and 409", statuses, ids, replayed)
	}
	t.Logf("statuses %v, %d replays", statuses, replayed)
}

// The mailbox's 30 messages per minute are one budget for all replicas: 31 messages in
// a minute through both give exactly one 429.
func TestReplicasShareMailboxBudget(t *testing.T) {
	t.Parallel()
	a, b, outbox := twoReplicas(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	var retryAfter string
	for i := range 31 {
		p := []*proc{a, b}[i%2]
		wg.Go(func() {
			body := mustJSON(t, map[string]any{
				"from": map[string]string{"address": "budget@notify.example.com"},
				"to":   []map[string]string{{"address": "bob@example.net"}},
				"text": fmt.Sprintf("message %d", i),
			})
			r := sendREST(t, p, bearer(keys["app"].Key), body)
			mu.Lock()
			defer mu.Unlock()
			statuses[r.Status]++
			if r.Status == 429 {
				retryAfter = r.Header.Get("Retry-After")
			}
		})
	}
	wg.Wait()
	if statuses[200] != 30 || statuses[429] != 1 {
		t.Errorf("statuses %v, want 30 × 200 and 1 × 429", statuses)
	}
	if retryAfter == "" || retryAfter == "0" {
		t.Errorf("429 without a Retry-After (%q)", retryAfter)
	}
	if n := countEML(t, outbox); n != 30 {
		t.Errorf("%d messages delivered, want 30", n)
	}
}
