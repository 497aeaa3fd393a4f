package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailgate/mailgate/server/apikey"
)

// childArgsEnv, when set, makes the test binary run `mailgate` with these arguments
// (a JSON list) instead of the tests: a real process to send signals to.
const childArgsEnv = "MAILGATE_TEST_CHILD_ARGS"

func TestMain(m *testing.M) {
	if v := os.Getenv(childArgsEnv); v != "" {
		var args []string
		if err := json.Unmarshal([]byte(v), &args); err != nil {
			panic(err)
		}
		os.Args = append([]string{"mailgate"}, args...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// mailgateProcess is `mailgate ARGS...` running in a child process, with its JSON log
// lines delivered one by one.
type mailgateProcess struct {
	cmd   *exec.Cmd
	lines chan map[string]any
	exit  chan error
}

func startMailgate(t *testing.T, env []string, args ...string) *mailgateProcess {
	t.Helper()
	argsJSON, err := json.Marshal(args)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(append(os.Environ(), childArgsEnv+"="+string(argsJSON)), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &mailgateProcess{cmd: cmd, lines: make(chan map[string]any, 100), exit: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) != nil {
				line = map[string]any{"text": sc.Text()}
			}
			p.lines <- line
		}
		close(p.lines)
		p.exit <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
		}
	})
	return p
}

// waitFor returns the first log line whose msg is msg, failing after 20s or when the
// process ends first.
func (p *mailgateProcess) waitFor(t *testing.T, msg string) map[string]any {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				t.Fatalf("the process ended before logging %q: %v", msg, <-p.exit)
			}
			if line["msg"] == msg {
				return line
			}
		case <-timeout:
			t.Fatalf("no %q logged within 20s", msg)
		}
	}
}

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSIGHUPIgnored: SIGHUP, which would end a Go program, is logged and ignored by
// `mailgate serve` and `mailgate shim`, which keep serving; SIGTERM still stops them.
func TestSIGHUPIgnored(t *testing.T) {
	t.Parallel()
	serveConfig := writeFile(t, "mailgate.yaml", `
listen: {http: "127.0.0.1:0", grpc: "127.0.0.1:0"}
log: {format: json}
keys:
  - {name: app, hash: "`+apikey.Hash("mg_test")+`", senders: ["*"]}
routes:
  - {match: "*", backend: sink}
backends:
  sink: {type: discard}
`)
	shimConfig := writeFile(t, "shim.yaml", `
log: {format: json}
shim:
  listen: "127.0.0.1:0"
  upstream: {grpc: "127.0.0.1:1"}
`)
	for _, c := range []struct {
		name      string
		args      []string
		listening string
		// alive checks that the process still serves at the address of the listening line.
		alive func(t *testing.T, listening map[string]any)
	}{
		{"serve", []string{"serve", "--config", serveConfig}, "mailgate listening", func(t *testing.T, l map[string]any) {
			resp, err := http.Get("http://" + l["http"].(string) + "/healthz")
			if err != nil {
				t.Fatalf("after SIGHUP: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("after SIGHUP: /healthz %s", resp.Status)
			}
		}},
		{"shim", []string{"shim", "--config", shimConfig}, "mailgate shim listening", func(t *testing.T, l map[string]any) {
			conn, err := net.DialTimeout("tcp", l["smtp"].(string), 5*time.Second)
			if err != nil {
				t.Fatalf("after SIGHUP: %v", err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			greeting, err := bufio.NewReader(conn).ReadString('\n')
			if err != nil || !strings.HasPrefix(greeting, "220 ") {
				t.Errorf("after SIGHUP: greeting %q, %v", greeting, err)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			p := startMailgate(t, nil, c.args...)
			listening := p.waitFor(t, c.listening)
			for range 2 {
				if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
					t.Fatal(err)
				}
				if line := p.waitFor(t, sighupIgnored); line["level"] != "WARN" {
					t.Errorf("logged at %v, want WARN", line["level"])
				}
			}
			c.alive(t, listening)
			if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			go func() {
				for range p.lines {
				}
			}()
			select {
			case err := <-p.exit:
				if err != nil {
					t.Errorf("after SIGTERM: %v, want exit status 0", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("still running 30s after SIGTERM")
			}
		})
	}
}

// runMailgate runs `mailgate ARGS...` in a child process to its end, and returns its
// output and exit status.
func runMailgate(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	argsJSON, err := json.Marshal(args)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(append(os.Environ(), childArgsEnv+"="+string(argsJSON)), env...)
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatal(err)
	}
	return o.String(), e.String(), cmd.ProcessState.ExitCode()
}
