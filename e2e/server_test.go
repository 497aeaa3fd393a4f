package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const (
	readyTimeout = 15 * time.Second
	// shutdownTimeout is listen.shutdown_timeout in the configs the tests write.
	shutdownTimeout = 10 * time.Second
	// maxMessageBytes is limits.max_message_bytes in the configs the tests write.
	maxMessageBytes = 1 << 20
)

// syncBuffer collects a process's stderr while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// proc is a running `mailgate serve`.
type proc struct {
	cmd      *exec.Cmd
	stderr   *syncBuffer
	done     chan struct{} // closed when the process has exited
	waitErr  error         // cmd.Wait's result, once done is closed
	stopOnce sync.Once
	signaled atomic.Bool // SIGTERM was sent

	httpAddr, grpcAddr string
	baseURL            string // http://httpAddr
	outbox             string // the file backend's folder
	dir                string // the working directory
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// logs is everything the process wrote to stderr so far.
func (p *proc) logs() string { return p.stderr.String() }

// start runs the binary with args in dir, stderr captured; cleanup stops it (if the test
// has not) and, if the test failed, prints its log.
func start(t testing.TB, dir string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{stderr: &syncBuffer{}, done: make(chan struct{}), dir: dir}
	p.cmd = exec.Command(binary, args...)
	p.cmd.Dir = dir
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout = p.stderr
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", args, err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.exited() {
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("mailgate %s log:\n%s", strings.Join(args, " "), p.logs())
		}
	})
	return p
}

// stop sends SIGTERM (unless the test did) and checks that the process exits with
// status 0 within the shutdown timeout, plus slack for a loaded machine.
func (p *proc) stop(t testing.TB) {
	t.Helper()
	p.stopOnce.Do(func() {
		if !p.signaled.Load() {
			p.terminate(t)
		}
		p.waitExit(t, shutdownTimeout+5*time.Second)
	})
}

// terminate sends SIGTERM.
func (p *proc) terminate(t testing.TB) {
	t.Helper()
	p.signaled.Store(true)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !p.exited() {
		t.Errorf("SIGTERM: %v", err)
	}
}

// waitExit waits up to limit for the process to end and checks its exit status is 0.
func (p *proc) waitExit(t testing.TB, limit time.Duration) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(limit):
		p.cmd.Process.Kill()
		<-p.done
		t.Errorf("mailgate did not exit within %s of SIGTERM; killed", limit)
		return
	}
	if p.waitErr != nil {
		t.Errorf("mailgate exited with %v, want status 0", p.waitErr)
	}
}

// waitReady polls GET /readyz until it answers 200, the process exits, or readyTimeout.
// It returns an error (not a test failure) so callers can retry on a port conflict.
func (p *proc) waitReady() error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(readyTimeout)
	for time.Now().Before(deadline) {
		if p.exited() {
			return fmt.Errorf("mailgate exited before it was ready (%v)", p.waitErr)
		}
		resp, err := client.Get(p.baseURL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("GET /readyz did not answer 200 within %s", readyTimeout)
}

// freeAddr returns a loopback address with a port nobody listened on a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// configYAML is the configuration of the tests' servers.
func configYAML(httpAddr, grpcAddr, outbox string) string {
	return fmt.Sprintf(`# written by the mailgate e2e test
listen:
  http: %s
  grpc: %s
  shutdown_timeout: %s
keys:
  - name: app
    hash: %s
    senders: ["app@example.com", "*@notify.example.com", "slow@example.com"]
  - name: other
    hash: %s
    senders: ["other@example.com"]
  - name: wide
    hash: %s
    senders: ["*"]
  - name: drain
    hash: %s
    senders: ["slow@example.com"]
routes:
  - {name: slow, match: "slow@example.com", backend: slow}
  - {name: files, match: "*@example.com", backend: outbox}
  - {name: notify, match: "*@notify.example.com", backend: outbox}
backends:
  outbox:
    type: file
    dir: %q
  slow:
    type: discard
    delay: 2s
limits:
  max_message_bytes: %d
log:
  format: json
`, httpAddr, grpcAddr, shutdownTimeout, keys["app"].Hash, keys["other"].Hash, keys["wide"].Hash,
		keys["drain"].Hash, outbox, maxMessageBytes)
}

// serve writes a configuration into a temporary folder and runs `mailgate serve
// --config FILE` on free loopback ports until it is ready. A port taken between picking
// and listening makes it start again on other ports.
func serve(t testing.TB) *proc {
	t.Helper()
	dir := t.TempDir()
	return serveWith(t, dir, filepath.Join(dir, "outbox"), "")
}

// serveWith is serve with the outbox folder chosen by the caller (replicas can share
// one) and extra top-level YAML appended to the configuration.
func serveWith(t testing.TB, dir, outbox, extra string) *proc {
	t.Helper()
	p := serveConfigFunc(t, dir, func(httpAddr, grpcAddr string) string {
		return configYAML(httpAddr, grpcAddr, outbox) + extra
	})
	p.outbox = outbox
	return p
}

// serveConfig runs a configuration of the caller's; its first two %s are the HTTP and
// gRPC listen addresses.
func serveConfig(t testing.TB, dir, cfg string) *proc {
	t.Helper()
	return serveConfigFunc(t, dir, func(httpAddr, grpcAddr string) string { return fmt.Sprintf(cfg, httpAddr, grpcAddr) })
}

func serveConfigFunc(t testing.TB, dir string, cfgFor func(httpAddr, grpcAddr string) string) *proc {
	t.Helper()
	cfgPath := filepath.Join(dir, "mailgate.yaml")
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		httpAddr, grpcAddr := freeAddr(t), freeAddr(t)
		if err := os.WriteFile(cfgPath, []byte(cfgFor(httpAddr, grpcAddr)), 0o600); err != nil {
			t.Fatal(err)
		}
		p := start(t, dir, nil, "serve", "--config", cfgPath)
		p.httpAddr, p.grpcAddr = httpAddr, grpcAddr
		p.baseURL = "http://" + httpAddr
		lastErr = p.waitReady()
		if lastErr == nil {
			t.Cleanup(func() { p.stop(t) })
			return p
		}
		if !p.exited() || !strings.Contains(p.logs(), "address already in use") {
			t.Fatalf("mailgate serve: %v\n%s", lastErr, p.logs())
		}
		t.Logf("port conflict, starting again: %v", lastErr)
	}
	t.Fatalf("mailgate serve: %v", lastErr)
	return nil
}

// logLines parses the process's JSON log, failing on any line that is not JSON.
func logLines(t testing.TB, logs string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("log line is not JSON (log.format is json): %q", line)
			continue
		}
		out = append(out, m)
	}
	return out
}

// waitFor polls cond every 20 ms until it holds or limit passes.
func waitFor(ctx context.Context, limit time.Duration, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if cond() {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.New("condition not met within " + limit.String())
		case <-tick.C:
		}
	}
}
