package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailgate/mailgate/senders/graph/graphtest"
	"github.com/mailgate/mailgate/senders/smtp/smtptest"
	"github.com/mailgate/mailgate/server/store/storetest"
)

// The queue's end-to-end tests: the built binary, killed with SIGKILL while it delivers
// queued messages to a fake relay connector (smtptest, IP-based, as Microsoft's MX
// behaves), then started again on the same spool or Redis. Each message carries an
// X-Test-Id header so that the fake's received messages can be counted per message.

// queueConfig is a server sending every *@contoso.com message, queued, through a relay
// backend at relayAddr. extra is appended at the top level.
func queueConfig(relayAddr, caFile, extra string) func(httpAddr, grpcAddr string) string {
	return func(httpAddr, grpcAddr string) string {
		return fmt.Sprintf(`# written by the mailgate e2e queue test
listen: {http: %q, grpc: %q, shutdown_timeout: %s}
keys:
  - {name: app, hash: %q, senders: ["*@contoso.com"]}
routes:
  - {name: mx, match: "*@contoso.com", backend: mx, delivery: queued}
backends:
  mx:
    type: relay
    address: %s
    accepted_domains: [contoso.com]
    ca_file: %s
    max_connections: 4
queue:
  lease: 5s
  min_backoff: 1s
  max_backoff: 2s
  workers: 8
%slog: {format: json}
`, httpAddr, grpcAddr, shutdownTimeout, keys["app"].Hash, relayAddr, caFile, extra)
	}
}

// kill ends p with SIGKILL, as a crash or the OOM killer would, and waits for it.
func (p *proc) kill(t testing.TB) {
	t.Helper()
	p.stopOnce.Do(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
}

// restart runs p's configuration again in p's folder, on the same addresses.
func restart(t testing.TB, p *proc) *proc {
	t.Helper()
	q := start(t, p.dir, nil, "serve", "--config", filepath.Join(p.dir, "mailgate.yaml"))
	q.httpAddr, q.grpcAddr, q.baseURL, q.outbox = p.httpAddr, p.grpcAddr, p.baseURL, p.outbox
	if err := q.waitReady(); err != nil {
		t.Fatalf("mailgate serve after SIGKILL: %v\n%s", err, q.logs())
	}
	t.Cleanup(func() { q.stop(t) })
	return q
}

// queueAll sends n messages, q-0 … q-n-1, through ps in turn from 16 clients, and
// returns the ids the server answered QUEUED with, by test id. Anything but 202 QUEUED
// fails the test.
func queueAll(t *testing.T, ps []*proc, n int, sendAt string) map[string]string {
	t.Helper()
	var mu sync.Mutex
	ids := make(map[string]string, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				testID := fmt.Sprintf("q-%d", i)
				req := map[string]any{
					"from":    map[string]string{"address": fmt.Sprintf("dev%d@contoso.com", i%5)},
					"to":      []map[string]string{{"address": "ops@fabrikam.test"}},
					"subject": "queued " + testID,
					"text":    "queued message " + testID,
					"headers": map[string]string{"X-Test-Id": testID},
				}
				if sendAt != "" {
					req["sendAt"] = sendAt
				}
				r := sendREST(t, ps[i%len(ps)], bearer(keys["app"].Key), mustJSON(t, req))
				var resp struct{ ID, Status string }
				if r.Status != 202 || json.Unmarshal(r.Body, &resp) != nil || resp.Status != "QUEUED" {
					t.Errorf("%s: %d %s, want 202 QUEUED", testID, r.Status, r.Body)
					continue
				}
				mu.Lock()
				ids[testID] = resp.ID
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return ids
}

// graphSecretFile writes the Graph fake's client secret into dir, for a backend's
// client_secret_file, and returns the file.
func graphSecretFile(t *testing.T, dir string) string {
	t.Helper()
	f := filepath.Join(dir, "graph-secret")
	if err := os.WriteFile(f, []byte(graphtest.ClientSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// queueOne sends one message from from to ops@fabrikam.test through p with the app
// key, its X-Test-Id testID, and returns the id it was answered 202 QUEUED with.
func queueOne(t *testing.T, p *proc, from, testID string) string {
	t.Helper()
	r := sendREST(t, p, bearer(keys["app"].Key), mustJSON(t, map[string]any{
		"from": map[string]string{"address": from}, "to": []map[string]string{{"address": "ops@fabrikam.test"}},
		"subject": testID, "text": testID, "headers": map[string]string{"X-Test-Id": testID},
	}))
	var resp struct{ ID, Status string }
	if r.Status != 202 || json.Unmarshal(r.Body, &resp) != nil || resp.Status != "QUEUED" {
		t.Fatalf("%s: %d %s, want 202 QUEUED", testID, r.Status, r.Body)
	}
	return resp.ID
}

// finalStatus polls GetMessage for id on p until its status is final, or fails after
// limit.
func finalStatus(t *testing.T, p *proc, id string, limit time.Duration) string {
	t.Helper()
	var status string
	err := waitFor(t.Context(), limit, func() bool {
		r, err := doREST("GET", p.baseURL+"/v1/messages/"+id, bearer(keys["app"].Key), nil)
		if err != nil || r.Status != 200 {
			return false
		}
		var m struct{ Status string }
		json.Unmarshal(r.Body, &m)
		status = m.Status
		switch status {
		case "SENT", "FAILED", "CANCELED", "UNKNOWN":
			return true
		}
		return false
	})
	if err != nil {
		t.Fatalf("message %s: still %q: %v", id, status, err)
	}
	return status
}

// receivedByTestID counts the fake's accepted messages per X-Test-Id.
func receivedByTestID(f *smtptest.Server) map[string]int {
	out := make(map[string]int)
	for _, m := range f.Messages() {
		if sub := testIDRE.FindSubmatch(m.Data); sub != nil {
			out[string(sub[1])]++
		}
	}
	return out
}

// checkOncePerMessage waits for every message to reach a final status (asking ps[0])
// and checks the promise: SENT means delivered exactly once, UNKNOWN at most once,
// nothing FAILED. It returns how many ended UNKNOWN.
func checkOncePerMessage(t *testing.T, p *proc, f *smtptest.Server, ids map[string]string) (unknown int) {
	t.Helper()
	testIDs := make([]string, 0, len(ids))
	for testID := range ids {
		testIDs = append(testIDs, testID)
	}
	sort.Strings(testIDs)
	final := make(map[string]string, len(ids)) // test id → final status
	statuses := make(map[string]int)
	for _, testID := range testIDs {
		final[testID] = finalStatus(t, p, ids[testID], 60*time.Second)
		statuses[final[testID]]++
	}
	// Final statuses do not change, so the fake's count taken after them is final too.
	got := receivedByTestID(f)
	bad := 0
	for _, testID := range testIDs {
		st, n := final[testID], got[testID]
		if (st == "SENT" && n != 1) || (st == "UNKNOWN" && n > 1) || st == "FAILED" || st == "CANCELED" {
			if bad++; bad <= 5 {
				t.Errorf("%s (%s): %s, delivered %d times", testID, ids[testID], st, n)
			}
		}
	}
	if bad > 5 {
		t.Errorf("… %d messages in all not delivered as their status says", bad)
	}
	t.Logf("%d messages: statuses %v; the fake received %d", len(ids), statuses, len(f.Messages()))
	return statuses["UNKNOWN"]
}

// (b) The local spool: SIGKILL while delivering, start again on the same folder:
// every accepted message is delivered, none twice.
func TestQueueSpoolSurvivesKill(t *testing.T) {
	t.Parallel()
	f := smtptest.New(t, smtptest.Options{Mode: smtptest.Relay, AcceptedDomains: []string{"contoso.com"}})
	f.SetLatency(20 * time.Millisecond)
	dir := t.TempDir()
	p := serveConfigFunc(t, dir, queueConfig(f.Addr(), f.CAFile(t), "")) // queue.dir: ./spool in dir
	const n = 300
	ids := queueAll(t, []*proc{p}, n, "")
	if err := waitFor(t.Context(), 60*time.Second, func() bool { return len(f.Messages()) >= 80 }); err != nil {
		t.Fatalf("fewer than 80 delivered: %v", err)
	}
	p.kill(t)
	before := len(f.Messages())
	if before >= n {
		t.Fatalf("all %d delivered before the kill: the test proves nothing; slow the fake", before)
	}
	t.Logf("SIGKILL after %d of %d deliveries", before, n)
	q := restart(t, p)
	unknown := checkOncePerMessage(t, q, f, ids)
	if unknown > 8 { // at most the workers' messages in flight at the kill
		t.Errorf("%d messages UNKNOWN, want at most queue.workers (8)", unknown)
	}
}

// (a) Two replicas on one Redis, 1,000 messages accepted by both, one replica killed
// with SIGKILL mid-run and started again: every message delivered, none twice (an
// UNKNOWN outcome, from a lease taken over, is counted), and both replicas delivered.
func TestQueueReplicasSurviveKill(t *testing.T) {
	t.Parallel()
	f := smtptest.New(t, smtptest.Options{Mode: smtptest.Relay, AcceptedDomains: []string{"contoso.com"}})
	f.SetLatency(10 * time.Millisecond)
	prefix := storetest.Prefix(t, storetest.SharedRedis(t), "e2e")
	redis := fmt.Sprintf("redis:\n  url: redis://127.0.0.1:6379/0\n  key_prefix: %q\n", prefix)
	a := serveConfigFunc(t, t.TempDir(), queueConfig(f.Addr(), f.CAFile(t), redis))
	b := serveConfigFunc(t, t.TempDir(), queueConfig(f.Addr(), f.CAFile(t), redis))
	const n = 1000
	ids := queueAll(t, []*proc{a, b}, n, "")
	if err := waitFor(t.Context(), 60*time.Second, func() bool { return len(f.Messages()) >= 300 }); err != nil {
		t.Fatalf("fewer than 300 delivered: %v", err)
	}
	a.kill(t)
	killedLogs := a.logs()
	before := len(f.Messages())
	if before >= n {
		t.Fatalf("all %d delivered before the kill: the test proves nothing; slow the fake", before)
	}
	t.Logf("SIGKILL of one replica after %d of %d deliveries", before, n)
	restart(t, a) // back on the same Redis; it takes work again while b finishes
	unknown := checkOncePerMessage(t, b, f, ids)
	if unknown > 8 {
		t.Errorf("%d messages UNKNOWN, want at most one replica's queue.workers (8)", unknown)
	}
	for name, logs := range map[string]string{"killed": killedLogs, "survivor": b.logs()} {
		if !strings.Contains(logs, `"msg":"queued message sent"`) {
			t.Errorf("the %s replica delivered nothing: want both to take work from the queue", name)
		}
	}
}

// (e) Redis restarted (SIGKILL, then started on the same append-only file, appendfsync
// always) while 50 messages wait for their sendAt: nothing lost, none sent twice.
func TestQueueSurvivesRedisRestart(t *testing.T) {
	t.Parallel()
	r := storetest.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	f := smtptest.New(t, smtptest.Options{Mode: smtptest.Relay, AcceptedDomains: []string{"contoso.com"}})
	redis := fmt.Sprintf("redis:\n  url: %s\n", r.URL())
	p := serveConfigFunc(t, t.TempDir(), queueConfig(f.Addr(), f.CAFile(t), redis))
	const n = 50
	ids := queueAll(t, []*proc{p}, n, time.Now().Add(4*time.Second).UTC().Format(time.RFC3339Nano))
	if got := len(f.Messages()); got != 0 {
		t.Fatalf("%d delivered before their sendAt", got)
	}
	r.Stop(t)
	time.Sleep(500 * time.Millisecond) // mailgate sees Redis gone
	r.Start(t)
	if unknown := checkOncePerMessage(t, p, f, ids); unknown != 0 {
		t.Errorf("%d UNKNOWN: nothing was in flight when Redis stopped", unknown)
	}
}

// forward accepts connections on addr and copies each to and from target, until the
// test ends: a backend that comes back on the address mailgate was configured with.
func forward(t *testing.T, addr, target string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				u, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer u.Close()
				go io.Copy(u, c)
				io.Copy(c, u)
			}()
		}
	}()
}

// The shim with its backend down: the device gets 250, the message waits with its failed
// attempts on record, and goes out once the backend is back.
func TestQueueShimBackendDown(t *testing.T) {
	t.Parallel()
	needSwaks(t)
	f := smtptest.New(t, smtptest.Options{Mode: smtptest.Relay, AcceptedDomains: []string{"contoso.com"}})
	down := freeAddr(t) // nothing listens here until forward
	var smtpAddr string
	p := serveConfigFunc(t, t.TempDir(), func(httpAddr, grpcAddr string) string {
		smtpAddr = freeAddr(t)
		shim := fmt.Sprintf("shim:\n  listen: %q\n  hostname: shim.test\n  devices: [{cidr: 127.0.0.1/32, key: app}]\n", smtpAddr)
		return queueConfig(down, f.CAFile(t), shim)(httpAddr, grpcAddr)
	})
	data := writeData(t, "scan.eml", crlf(
		"From: scanner@contoso.com",
		"To: ops@fabrikam.test",
		"Subject: scan while the connector is down",
		"Message-ID: <scan-down-1@printer.contoso.com>",
		"X-Test-Id: scan-down",
		"Date: "+time.Now().Format(time.RFC1123Z),
		"",
		"Your scan is ready."))
	id := send(t, smtpAddr, "-f", "scanner@contoso.com", "-t", "ops@fabrikam.test", "--data", "@"+data)

	var m struct {
		Status   string
		Attempts []struct{ Outcome, Error string }
	}
	err := waitFor(t.Context(), 20*time.Second, func() bool {
		r, err := doREST("GET", p.baseURL+"/v1/messages/"+id, bearer(keys["app"].Key), nil)
		return err == nil && r.Status == 200 && json.Unmarshal(r.Body, &m) == nil && len(m.Attempts) > 0
	})
	if err != nil || m.Status != "QUEUED" || m.Attempts[0].Outcome == "SENT" {
		t.Fatalf("with the backend down: %+v (%v), want QUEUED with a failed attempt", m, err)
	}
	t.Logf("backend down: %s after %d attempts, the first: %s %s", m.Status, len(m.Attempts), m.Attempts[0].Outcome, m.Attempts[0].Error)

	forward(t, down, f.Addr())
	if st := finalStatus(t, p, id, 30*time.Second); st != "SENT" {
		t.Fatalf("after the backend came back: %s, want SENT", st)
	}
	if n := receivedByTestID(f)["scan-down"]; n != 1 {
		t.Errorf("delivered %d times, want once", n)
	}
}

// (d) Failover: a route with backends [m365, mx] whose Graph mailbox Microsoft throttles
// for two minutes. The first message tries Graph, is throttled, and goes out through
// the relay, both attempts on record; the next one goes straight to the relay, while the
// mailbox is paused, without a Graph request.
func TestQueueFailoverFromPausedGraph(t *testing.T) {
	t.Parallel()
	g := graphtest.New(t)
	relay := smtptest.New(t, smtptest.Options{Mode: smtptest.Relay, AcceptedDomains: []string{"contoso.com"}})
	dir := t.TempDir()
	secretFile := graphSecretFile(t, dir)
	cas := relay.CAFileWith(t, g.CAFile(t))
	p := serveConfigFunc(t, dir, func(httpAddr, grpcAddr string) string {
		return fmt.Sprintf(`listen: {http: %q, grpc: %q, shutdown_timeout: %s}
keys:
  - {name: app, hash: %q, senders: ["*@contoso.com"]}
routes:
  - {name: both, match: "*@contoso.com", backends: [m365, mx], delivery: queued}
backends:
  m365: {type: graph, tenant_id: %s, client_id: %s, client_secret_file: %s, graph_url: %s, authority_url: %s, ca_file: %s}
  mx: {type: relay, address: %s, accepted_domains: [contoso.com], ca_file: %s}
queue: {min_backoff: 1s, max_backoff: 2s}
log: {format: json}
`, httpAddr, grpcAddr, shutdownTimeout, keys["app"].Hash, graphtest.TenantID, graphtest.ClientID, secretFile,
			g.GraphURL(), g.AuthorityURL(), cas, relay.Addr(), cas)
	})
	g.Script("reports@contoso.com", graphtest.Throttle("120"))
	send := func(testID string) string {
		id := queueOne(t, p, "reports@contoso.com", testID)
		if st := finalStatus(t, p, id, 30*time.Second); st != "SENT" {
			t.Fatalf("%s: %s, want SENT", testID, st)
		}
		return id
	}
	type attempt struct{ Backend, Outcome, Error string }
	attempts := func(id string) []attempt {
		r := rest(t, "GET", p.baseURL+"/v1/messages/"+id, bearer(keys["app"].Key), nil)
		var m struct {
			Backend  string
			Attempts []attempt
		}
		if err := json.Unmarshal(r.Body, &m); err != nil || m.Backend != "mx" {
			t.Errorf("GET %s: backend %q (%v): %s, want mx", id, m.Backend, err, r.Body)
		}
		return m.Attempts
	}

	first := attempts(send("failover-1"))
	if len(first) != 2 || first[0].Backend != "m365" || first[0].Outcome == "SENT" || first[1].Backend != "mx" || first[1].Outcome != "SENT" {
		t.Errorf("first message's attempts %+v: want m365 throttled, then mx SENT", first)
	}
	graphRequests := len(g.Requests())
	second := attempts(send("failover-2"))
	if len(second) != 1 || second[0].Backend != "mx" {
		t.Errorf("second message's attempts %+v: want mx only, the mailbox being paused", second)
	}
	if n := len(g.Requests()) - graphRequests; n != 0 {
		t.Errorf("%d Graph requests for the second message, want none while the mailbox is paused", n)
	}
	got := receivedByTestID(relay)
	if got["failover-1"] != 1 || got["failover-2"] != 1 || len(g.Sent()) != 0 {
		t.Errorf("relay received %v, Graph sent %d: want each message once through the relay", got, len(g.Sent()))
	}
	t.Logf("first: %+v; second: %+v", first, second)
}

// (c) Microsoft throttling and failing, then recovering, for queued messages: Graph
// answers a mailbox's first two sendMails 429 with Retry-After 5 and 3 (longer than the
// 2 s the Graph backend waits out itself); SMTP AUTH drops a connection at MAIL FROM
// (transient: nothing was sent) and answers a DATA 432 4.3.2 (Microsoft's concurrency
// limit, as it words it since June 2025), then another mailbox's DATA 451 4.7.500 (IP
// throttling). Each message is delivered exactly once; no attempt reaches a mailbox
// while it is paused; the attempts carry Microsoft's replies. (A Graph 503 is not among
// the failures: Graph may have sent the message, so it is UNKNOWN, not retried.)
func TestQueueThrottledBackendsRecover(t *testing.T) {
	t.Parallel()
	g := graphtest.New(t)
	sub := smtptest.New(t, smtptest.Options{Mode: smtptest.Submission, Tokens: g.TokenScope})
	dir := t.TempDir()
	secretFile := graphSecretFile(t, dir)
	cas := sub.CAFileWith(t, g.CAFile(t))
	p := serveConfigFunc(t, dir, func(httpAddr, grpcAddr string) string {
		return fmt.Sprintf(`listen: {http: %q, grpc: %q, shutdown_timeout: %s}
keys:
  - {name: app, hash: %q, senders: ["*@contoso.com"]}
routes:
  - {name: reports, match: "reports@contoso.com", backend: m365, delivery: queued}
  - {name: devices, match: "*@contoso.com", backend: submission, delivery: queued}
backends:
  m365: {type: graph, tenant_id: %[5]s, client_id: %[6]s, client_secret_file: %[7]s, graph_url: %[8]s, authority_url: %[9]s, ca_file: %[10]s}
  submission: {type: smtp_auth, address: %[11]s, tenant_id: %[5]s, client_id: %[6]s, client_secret_file: %[7]s, authority_url: %[9]s, ca_file: %[10]s}
queue: {min_backoff: 1s, max_backoff: 2s}
log: {format: json}
`, httpAddr, grpcAddr, shutdownTimeout, keys["app"].Hash, graphtest.TenantID, graphtest.ClientID, secretFile,
			g.GraphURL(), g.AuthorityURL(), cas, sub.Addr())
	})
	key := bearer(keys["app"].Key)
	queue := func(from, testID string) string { return queueOne(t, p, from, testID) }
	type attempt struct {
		Time                           time.Time
		Backend, Outcome, Reply, Error string
	}
	type record struct {
		Status          string
		Attempts        []attempt
		NextAttemptTime *time.Time
	}
	get := func(id string) record {
		t.Helper()
		r := rest(t, "GET", p.baseURL+"/v1/messages/"+id, key, nil)
		var m record
		if err := json.Unmarshal(r.Body, &m); err != nil {
			t.Fatalf("GET %s: %v: %s", id, err, r.Body)
		}
		return m
	}

	// Three messages per mailbox, queued at once: the first attempt is refused and
	// pauses the mailbox; all three go once it is over.
	sub.Script(smtptest.StageMail, smtptest.Reply{Hangup: true})
	sub.Script(smtptest.StageData, smtptest.Reply{Code: 432, Enhanced: "4.3.2",
		Text: "Concurrent connections limit exceeded. Visit https://aka.ms/concurrent_sending for more information."})
	g.Script("reports@contoso.com", graphtest.Throttle("5"), graphtest.Throttle("3"))
	ids := map[string]string{}
	for i := range 3 {
		for _, from := range []string{"reports@contoso.com", "scanner@contoso.com"} {
			testID := fmt.Sprintf("%s-%d", strings.Split(from, "@")[0], i)
			ids[testID] = queue(from, testID)
		}
	}
	for testID, id := range ids {
		if st := finalStatus(t, p, id, 60*time.Second); st != "SENT" {
			t.Fatalf("%s: %s, want SENT: %+v", testID, st, get(id))
		}
	}

	// Every message once, at Microsoft.
	smtpGot := receivedByTestID(sub)
	graphGot := map[string]int{}
	for _, s := range g.Sent() {
		graphGot[s.Message.Header("X-Test-Id")]++
	}
	for testID := range ids {
		n := smtpGot[testID] + graphGot[testID]
		if n != 1 {
			t.Errorf("%s delivered %d times (SMTP AUTH %d, Graph %d), want once", testID, n, smtpGot[testID], graphGot[testID])
		}
	}

	// Paced: each throttle paused its mailbox, and no attempt (mailgate's record) or
	// Graph request (the fake's record) began while it lasted. The three messages of a
	// mailbox start together, so an attempt within a second of the throttled one's start
	// was under way before the throttle came.
	type refusal struct {
		at    time.Time
		pause time.Duration
	}
	refusals := map[string][]refusal{}     // mailbox → refusals
	attemptsAt := map[string][]time.Time{} // mailbox → every attempt
	for testID, id := range ids {
		mailbox := strings.Split(testID, "-")[0] + "@contoso.com"
		for _, a := range get(id).Attempts {
			attemptsAt[mailbox] = append(attemptsAt[mailbox], a.Time)
			switch {
			case a.Outcome == "SENT":
			case a.Outcome == "THROTTLED" && strings.HasPrefix(a.Reply, "432 4.3.2"):
				refusals[mailbox] = append(refusals[mailbox], refusal{a.Time, 15 * time.Second})
			case a.Outcome == "THROTTLED" && strings.HasPrefix(a.Reply, "429 TooManyRequests"):
				// Retry-After 5 or 3: at least 3 s.
				refusals[mailbox] = append(refusals[mailbox], refusal{a.Time, 3 * time.Second})
			case a.Outcome == "UNAVAILABLE" && mailbox == "scanner@contoso.com":
				// The dropped connection: only this message backs off.
			default:
				t.Errorf("%s: attempt %+v: want SENT, Microsoft's throttling replies, or the dropped connection", testID, a)
			}
		}
	}
	if len(refusals["scanner@contoso.com"]) != 1 || len(refusals["reports@contoso.com"]) != 2 {
		t.Fatalf("throttles %+v: want one 432 for scanner@, two 429s for reports@", refusals)
	}
	var graphSends []time.Time
	for _, r := range g.Requests() {
		if r.Server == "graph" && strings.EqualFold(r.Mailbox, "reports@contoso.com") && strings.HasSuffix(r.Path, "/sendMail") {
			graphSends = append(graphSends, r.At)
		}
	}
	if len(graphSends) != 5 { // two 429s, and the three that went through
		t.Errorf("%d Graph sendMail requests for reports@, want 5", len(graphSends))
	}
	attemptsAt["reports@contoso.com/graph"] = graphSends
	for mailbox, rs := range refusals {
		for _, rf := range rs {
			for _, at := range append(attemptsAt[mailbox], attemptsAt[mailbox+"/graph"]...) {
				// mailgate's clock and the fake's are the same machine's.
				if at.After(rf.at.Add(time.Second)) && at.Before(rf.at.Add(rf.pause-50*time.Millisecond)) {
					t.Errorf("%s: an attempt at %s, %s after the refusal that paused it for %s",
						mailbox, at.Format(time.RFC3339Nano), at.Sub(rf.at), rf.pause)
				}
			}
		}
	}

	// 451 4.7.500 (Microsoft throttles the sending IP): paused for minutes, the message
	// waits with its attempt on record and no other.
	sub.Script(smtptest.StageData, smtptest.Reply{Code: 451, Enhanced: "4.7.500",
		Text: "Server busy. Please try again later from [203.0.113.7]. (S77719) [Hostname=DB5PR01MB0001.eurprd01.prod.exchangelabs.com]"})
	before := len(sub.Messages())
	busy := queue("busy@contoso.com", "busy-0")
	var rec record
	if err := waitFor(t.Context(), 20*time.Second, func() bool {
		rec = get(busy)
		return len(rec.Attempts) > 0
	}); err != nil {
		t.Fatalf("busy-0: no attempt: %+v", rec)
	}
	time.Sleep(3 * time.Second)
	rec = get(busy)
	a := rec.Attempts[0]
	if rec.Status != "QUEUED" || len(rec.Attempts) != 1 || a.Outcome != "THROTTLED" || !strings.Contains(a.Reply, "451 4.7.500") {
		t.Errorf("busy-0 after 451 4.7.500: %+v, want QUEUED with one THROTTLED attempt carrying the reply", rec)
	}
	if rec.NextAttemptTime == nil || rec.NextAttemptTime.Sub(a.Time) < 4*time.Minute {
		t.Errorf("busy-0: next attempt %v after the attempt at %s, want the mailbox paused for minutes", rec.NextAttemptTime, a.Time)
	}
	if n := len(sub.Messages()) - before; n != 0 {
		t.Errorf("SMTP AUTH received %d messages while busy@ was paused", n)
	}
	t.Logf("refusals %+v; busy-0 %+v", refusals, rec)
}
