package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/app"
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
	cmd.Dir = t.TempDir() // the embedded default writes ./outbox
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
	// A command that should end but serves instead fails the test, not the run.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0])
	cmd.Env = append(append(os.Environ(), childArgsEnv+"="+string(argsJSON)), env...)
	cmd.Dir = t.TempDir()
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatal(err)
	}
	return o.String(), e.String(), cmd.ProcessState.ExitCode()
}

// TestServeListenOverrides moves the embedded default's listeners with the flags and
// the MAILGATE_LISTEN_* variables (flags first), turns one off, and serves there.
func TestServeListenOverrides(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		env  []string
		args []string
		// want: the listening line's attributes: an address on loopback, or absent.
		want map[string]bool
	}{
		{"flags", nil, []string{"--listen-http", "127.0.0.1:0", "--listen-grpc", "127.0.0.1:0", "--listen-smtp", "127.0.0.1:0"},
			map[string]bool{"http": true, "grpc": true, "smtp": true}},
		{"environment", []string{"MAILGATE_LISTEN_HTTP=127.0.0.1:0", "MAILGATE_LISTEN_GRPC=127.0.0.1:0", "MAILGATE_LISTEN_SMTP=off"}, nil,
			map[string]bool{"http": true, "grpc": true, "smtp": false}},
		{"a flag wins over the environment", []string{"MAILGATE_LISTEN_HTTP=127.0.0.1:1", "MAILGATE_LISTEN_SMTP=127.0.0.1:0"},
			[]string{"--listen-http", "127.0.0.1:0", "--listen-grpc", "off"},
			map[string]bool{"http": true, "grpc": false, "smtp": true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			p := startMailgate(t, append(c.env, "MAILGATE_DEV_KEY="+sendTestKey), append([]string{"serve"}, c.args...)...)
			l := p.waitFor(t, "mailgate listening")
			for attr, on := range c.want {
				addr, ok := l[attr].(string)
				switch {
				case !on && ok:
					t.Errorf("%s listens on %s, want it off", attr, addr)
				case on && !ok:
					t.Errorf("no %s listener: %v", attr, l)
				case on:
					if ap, err := netip.ParseAddrPort(addr); err != nil || !ap.Addr().IsLoopback() || ap.Port() == 0 || ap.Port() == 1 {
						t.Errorf("%s listens on %q, want a free loopback port", attr, addr)
					}
				}
			}
			if addr, ok := l["http"].(string); ok {
				r := runSendTest(t, nil, append(minimalSendArgs, "--server", "http://"+addr)...)
				if r.code != 0 {
					t.Errorf("send to %s: exit %d\n%s", addr, r.code, r.stderr)
				}
			}
			p.cmd.Process.Signal(syscall.SIGTERM)
			go func() {
				for range p.lines {
				}
			}()
			if err := <-p.exit; err != nil {
				t.Errorf("after SIGTERM: %v", err)
			}
		})
	}
}

// TestServeListenOverrideErrors: a bad address names the flag or variable, the setting
// it replaces and the rule, as a usage mistake (exit 2), before anything listens; a
// port in use says what set it.
func TestServeListenOverrideErrors(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { taken.Close() }) // after the parallel subtests
	cfg := writeFile(t, "mailgate.yaml", `
listen: {http: "127.0.0.1:0", grpc: "127.0.0.1:0"}
keys:
  - {name: app, hash: "`+apikey.Hash("mg_test")+`", senders: ["*"]}
routes:
  - {match: "*", backend: sink}
backends:
  sink: {type: discard}
`)
	for _, c := range []struct {
		name string
		env  []string
		args []string
		code int
		want []string
	}{
		{"no host:port", nil, []string{"--listen-http", "8080"}, 2,
			[]string{`serve: --listen-http (listen.http): want host:port (e.g. 127.0.0.1:8080 or :8080), not "8080"`}},
		{"port out of range", []string{"MAILGATE_LISTEN_GRPC=127.0.0.1:90000"}, nil, 2,
			[]string{`serve: MAILGATE_LISTEN_GRPC (listen.grpc): "127.0.0.1:90000": the port must be a number from 0 to 65535`}},
		{"two at once", []string{"MAILGATE_LISTEN_SMTP=2525"}, []string{"--listen-http", "localhost"}, 2,
			[]string{"serve: --listen-http (listen.http): want host:port", `serve: MAILGATE_LISTEN_SMTP (shim.listen): want host:port, not "2525"`}},
		{"both APIs off", nil, []string{"--listen-http", "off", "--listen-grpc", "off"}, 2,
			[]string{"serve: --listen-http and --listen-grpc (listen): at least one of http and grpc must be set"}},
		{"with --config", nil, []string{"--config", cfg, "--listen-http", "127.0.0.1:0"}, 2,
			[]string{"serve: --listen-http is for the embedded default; with --config, set listen.http in " + cfg}},
		{"port taken, by a flag", nil, []string{"--listen-http", taken.Addr().String(), "--listen-grpc", "127.0.0.1:0", "--listen-smtp", "off"}, 1,
			[]string{"address already in use (set with --listen-http)"}},
		{"port taken, by a variable", []string{"MAILGATE_LISTEN_HTTP=127.0.0.1:0", "MAILGATE_LISTEN_GRPC=" + taken.Addr().String(), "MAILGATE_LISTEN_SMTP=off"}, nil, 1,
			[]string{"address already in use (set with MAILGATE_LISTEN_GRPC)"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, stderr, code := runMailgate(t, append(c.env, "MAILGATE_DEV_KEY="+sendTestKey), append([]string{"serve"}, c.args...)...)
			if code != c.code {
				t.Errorf("exit status %d, want %d; stderr:\n%s", code, c.code, stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
		})
	}
}

func TestEmbeddedListenError(t *testing.T) {
	t.Parallel()
	inUse := errors.New("shim.listen: listen tcp 127.0.0.1:2525: bind: address already in use")
	cfg := app.Default()
	overridden := applyListenOverrides(cfg, map[string]string{"listen-http": "127.0.0.1:0"}, func(string) string { return "" })
	for _, c := range []struct {
		setting, want string
	}{
		{"shim.listen", inUse.Error() + " (the embedded default's shim.listen: give another address with --listen-smtp or MAILGATE_LISTEN_SMTP, or off)"},
		{"listen.http", inUse.Error() + " (set with --listen-http)"},
		{"redis", inUse.Error()},
	} {
		err := embeddedListenError(c.setting, inUse, overridden)
		if err.Error() != c.want || !errors.Is(err, inUse) {
			t.Errorf("%s: %q, want %q", c.setting, err, c.want)
		}
	}
}
