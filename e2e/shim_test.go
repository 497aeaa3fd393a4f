package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The SMTP shim, driven by swaks (a real SMTP client: STARTTLS, AUTH LOGIN and PLAIN,
// old TLS versions through OpenSSL) against `mailgate serve` and `mailgate shim`.
//
// Each case sends from its own address, NAME@contoso.com, which a route of its own sends
// to a file backend writing into <dir>/NAME: parallel cases on one server each see only
// their own .eml files. Everything else (every other From) goes to <dir>/rest.

var (
	swaksOnce sync.Once
	swaksPath string
	swaksErr  error
)

// needSwaks returns the swaks binary, with TLS support (Perl's Net::SSLeay). Where either
// is missing it installs Debian's packages with apt-get, if this is root on a machine
// with apt-get; otherwise the test is skipped, saying what to install.
func needSwaks(t *testing.T) string {
	t.Helper()
	swaksOnce.Do(func() {
		if swaksPath, swaksErr = findSwaks(); swaksErr == nil {
			return
		}
		if _, err := exec.LookPath("apt-get"); err != nil || os.Geteuid() != 0 {
			swaksErr = fmt.Errorf("%w; it cannot be installed here (needs root and apt-get)", swaksErr)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		install := func() ([]byte, error) {
			cmd := exec.CommandContext(ctx, "apt-get", "install", "-y", "swaks", "libnet-ssleay-perl")
			cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
			return cmd.CombinedOutput()
		}
		out, err := install()
		if err != nil {
			if o, e := exec.CommandContext(ctx, "apt-get", "update").CombinedOutput(); e != nil {
				out, err = o, e
			} else {
				out, err = install()
			}
		}
		if err != nil {
			swaksErr = fmt.Errorf("%w; apt-get install -y swaks libnet-ssleay-perl failed: %v\n%s", swaksErr, err, lastLines(string(out), 5))
			return
		}
		swaksPath, swaksErr = findSwaks()
	})
	if swaksErr != nil {
		t.Skipf("the SMTP shim's end-to-end tests need swaks with TLS (Debian/Ubuntu: apt-get install swaks libnet-ssleay-perl): %v", swaksErr)
	}
	return swaksPath
}

// findSwaks returns swaks's path if it is on PATH and supports TLS.
func findSwaks() (string, error) {
	path, err := exec.LookPath("swaks")
	if err != nil {
		return "", errors.New("swaks is not on PATH")
	}
	out, _ := exec.Command(path, "--support").CombinedOutput()
	if !regexp.MustCompile(`(?m)^=== TLS supported`).Match(out) {
		return "", fmt.Errorf("%s does not support TLS (needs Perl's Net::SSLeay):\n%s", path, out)
	}
	return path, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// shimServer is a `mailgate serve` with the shim on smtpAddr.
type shimServer struct {
	*proc
	smtpAddr string
}

// outbox is the folder of the case sending from name@contoso.com.
func (s *shimServer) outbox(name string) string { return filepath.Join(s.dir, name) }

// emls lists the .eml files in the case's folder, sorted.
func (s *shimServer) emls(t testing.TB, name string) []string {
	t.Helper()
	entries, err := os.ReadDir(s.outbox(name))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".eml") {
			out = append(out, e.Name())
		}
	}
	slices.Sort(out)
	return out
}

// waitEMLs waits up to 20 s for the case's folder to hold exactly want (sorted), and
// returns what it holds then: the shim queues by default, so a 250 comes before the
// dispatcher writes the file.
func (s *shimServer) waitEMLs(t testing.TB, name string, want ...string) []string {
	t.Helper()
	want = slices.Sorted(slices.Values(want))
	var got []string
	waitFor(context.Background(), 20*time.Second, func() bool {
		got = s.emls(t, name)
		return slices.Equal(got, want)
	})
	return got
}

// serveShim runs `mailgate serve` with the shim on a free loopback port. shimYAML is
// added to the shim section (two-space indented lines), extra at the top level. The
// key app may send as *@contoso.com; other as other@contoso.com.
func serveShim(t *testing.T, shimYAML, extra string, cases ...string) *shimServer {
	t.Helper()
	dir := t.TempDir()
	s := &shimServer{}
	var routes, backends strings.Builder
	for _, c := range append(slices.Clone(cases), "rest") {
		match := c + "@contoso.com"
		if c == "rest" {
			match = "*"
		}
		fmt.Fprintf(&routes, "  - {name: %s, match: %q, backend: %s}\n", c, match, c)
		fmt.Fprintf(&backends, "  %s: {type: file, dir: %q}\n", c, filepath.Join(dir, c))
	}
	s.proc = serveConfigFunc(t, dir, func(httpAddr, grpcAddr string) string {
		s.smtpAddr = freeAddr(t)
		return fmt.Sprintf(`# written by the mailgate e2e shim test
listen: {http: %q, grpc: %q, shutdown_timeout: %s}
keys:
  - {name: app, hash: %q, senders: ["*@contoso.com"]}
  - {name: other, hash: %q, senders: ["other@contoso.com"]}
routes:
%sbackends:
%sshim:
  listen: %q
  hostname: shim.test
%s%slog: {format: json}
`, httpAddr, grpcAddr, shutdownTimeout, keys["app"].Hash, keys["other"].Hash,
			routes.String(), backends.String(), s.smtpAddr, shimYAML, extra)
	})
	return s
}

// swaks runs swaks against addr and returns its transcript (stdout and stderr) and
// whether it exited 0 (swaks exits non-zero on any unexpected reply or TLS failure).
func swaks(t *testing.T, addr string, args ...string) (string, bool) {
	t.Helper()
	bin := needSwaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--server", addr, "--helo", "device.test", "--timeout", "20"}, args...)...)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if err != nil && (!errors.As(err, &exit) || ctx.Err() != nil) {
		t.Fatalf("swaks %q: %v\n%s", args, err, out)
	}
	return string(out), err == nil
}

// authArgs are swaks's options for STARTTLS, then AUTH mech (LOGIN or PLAIN) as user with
// password (an API key's name and the key).
func authArgs(mech, user, password string) []string {
	return []string{"--tls", "--auth", mech, "--auth-user", user, "--auth-password", password}
}

var queuedRE = regexp.MustCompile(`(?m)^<[-~] +250 2\.0\.0 Ok: queued as ([0-9a-z]+)\r?$`)

// queued returns the mailgate id of the one message swaks got 250 for, failing the test
// if swaks did not succeed.
func queued(t *testing.T, out string, ok bool) string {
	t.Helper()
	m := queuedRE.FindAllStringSubmatch(out, -1)
	if !ok || len(m) != 1 {
		t.Fatalf("swaks: want one message queued (exit 0, 250 ... queued as ID); got exit ok=%v:\n%s", ok, out)
	}
	return m[0][1]
}

// refusedWith checks that swaks failed with a reply starting with prefix (code and
// enhanced code) and that no message was queued.
func refusedWith(t *testing.T, out string, ok bool, prefix string) {
	t.Helper()
	if ok || !regexp.MustCompile(`(?m)^<(\*\*|~\*) +`+regexp.QuoteMeta(prefix)+`\b`).MatchString(out) {
		t.Errorf("swaks: want a failure with %q; got exit ok=%v:\n%s", prefix, ok, out)
	}
	if queuedRE.MatchString(out) {
		t.Errorf("a message was queued:\n%s", out)
	}
}

// send runs swaks and returns the id of the message it got 250 for.
func send(t *testing.T, addr string, args ...string) string {
	t.Helper()
	out, ok := swaks(t, addr, args...)
	return queued(t, out, ok)
}

// writeData writes an SMTP message for swaks's --data @FILE.
func writeData(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// crlf joins lines with CRLF.
func crlf(lines ...string) string { return strings.Join(lines, "\r\n") }

// receivedRE is the shim's Received field at the top of a message.
var receivedRE = regexp.MustCompile(`^Received: from \S+ \(\[[0-9.]+\]\)\r\n\tby \S+ \(mailgate\) with ESMTPS?A? id [0-9a-f]{16};\r\n\t[^\r\n]+\r\n`)

// withoutReceived is a message from the shim without the Received field the shim puts on
// top; it fails the test without one.
func withoutReceived(t *testing.T, b []byte) []byte {
	t.Helper()
	loc := receivedRE.FindIndex(b)
	if loc == nil {
		t.Fatalf("no Received field from the shim on top: %q", b[:min(len(b), 300)])
	}
	return b[loc[1]:]
}

// TestShim runs one server with the defaults the cases below are about (min_tls 1.2, no
// AUTH before STARTTLS, devices in a range the tests do not connect from) and
// shim.max_message_bytes 10000.
func TestShim(t *testing.T) {
	t.Parallel()
	needSwaks(t)
	cases := []string{"tls", "big", "noauth", "badkey", "dedup", "nomsgid", "bytes"}
	s := serveShim(t, "  max_message_bytes: 10000\n  devices: [{cidr: 192.0.2.0/24, key: app}]\n", "", cases...)
	app := keys["app"]

	// A TLS 1.0-only client: the handshake fails under the default min_tls, before AUTH.
	t.Run("TLS 1.0 refused by default", func(t *testing.T) {
		t.Parallel()
		out, ok := swaks(t, s.smtpAddr, append(authArgs("LOGIN", "app", app.Key),
			"--tls-protocol", "tlsv1", "--tls-cipher", "DEFAULT:@SECLEVEL=0",
			"-f", "tls@contoso.com", "-t", "ops@fabrikam.test")...)
		if ok || !strings.Contains(out, "TLS startup failed") || strings.Contains(out, "AUTH LOGIN") {
			t.Errorf("want the TLS handshake to fail before AUTH; got exit ok=%v:\n%s", ok, out)
		}
		if f := s.emls(t, "tls"); len(f) != 0 {
			t.Errorf("wrote %v", f)
		}
	})

	// 20 KB over a 10,000-byte limit: 552 at the end of DATA, nothing sent.
	t.Run("oversize 552", func(t *testing.T) {
		t.Parallel()
		out, ok := swaks(t, s.smtpAddr, append(authArgs("PLAIN", "app", app.Key),
			"-f", "big@contoso.com", "-t", "ops@fabrikam.test", "--body", strings.Repeat("0123456789abcdef\n", 1250))...)
		if !strings.Contains(out, "SIZE 10000") {
			t.Errorf("EHLO does not announce SIZE 10000:\n%s", out)
		}
		refusedWith(t, out, ok, "552")
		if f := s.emls(t, "big"); len(f) != 0 {
			t.Errorf("wrote %v", f)
		}
	})

	// Without AUTH, from an address no device range covers: 530 at MAIL FROM, over plain
	// SMTP and after STARTTLS alike.
	t.Run("no AUTH 530", func(t *testing.T) {
		t.Parallel()
		for _, tls := range [][]string{nil, {"--tls"}} {
			out, ok := swaks(t, s.smtpAddr, append(tls, "-f", "noauth@contoso.com", "-t", "ops@fabrikam.test")...)
			refusedWith(t, out, ok, "530 5.7.0")
			if !strings.Contains(out, "MAIL FROM:<noauth@contoso.com>\n<~* 530") && !strings.Contains(out, "MAIL FROM:<noauth@contoso.com>\n<** 530") {
				t.Errorf("the 530 is not the reply to MAIL FROM:\n%s", out)
			}
		}
		if f := s.emls(t, "noauth"); len(f) != 0 {
			t.Errorf("wrote %v", f)
		}
	})

	// A wrong key, another key's secret under app's name, and app's key under a name
	// that is not its own: 535 5.7.8 each.
	t.Run("wrong key 535", func(t *testing.T) {
		t.Parallel()
		for _, c := range []struct{ mech, user, pass string }{
			{"LOGIN", "app", "mg_not_a_key_at_all"},
			{"PLAIN", "app", keys["other"].Key},
			{"LOGIN", "nobody", app.Key},
		} {
			out, ok := swaks(t, s.smtpAddr, append(authArgs(c.mech, c.user, c.pass),
				"-f", "badkey@contoso.com", "-t", "ops@fabrikam.test")...)
			refusedWith(t, out, ok, "535 5.7.8")
		}
		if f := s.emls(t, "badkey"); len(f) != 0 {
			t.Errorf("wrote %v", f)
		}
	})

	// The key may not send as fabrikam.com: 550 5.7.1 from the service's check, after
	// DATA; the catch-all route's folder stays empty.
	t.Run("From not allowed 550", func(t *testing.T) {
		t.Parallel()
		out, ok := swaks(t, s.smtpAddr, append(authArgs("LOGIN", "app", app.Key),
			"-f", "x@fabrikam.com", "-t", "ops@fabrikam.test", "--header", "From: x@fabrikam.com")...)
		refusedWith(t, out, ok, "550 5.7.1")
		if f := s.emls(t, "rest"); len(f) != 0 {
			t.Errorf("wrote %v", f)
		}
	})

	// The same message twice (a device that lost the 250 and retries): the same id twice,
	// one delivery.
	t.Run("resend deduplicated", func(t *testing.T) {
		t.Parallel()
		data := writeData(t, "dedup.eml", crlf(
			"From: dedup@contoso.com",
			"To: ops@fabrikam.test",
			"Subject: scan 0042",
			"Message-ID: <scan-0042@printer.contoso.com>",
			"Date: Tue, 24 Nov 2026 10:00:00 +0000",
			"",
			"Your scan is ready."))
		args := append(authArgs("LOGIN", "app", app.Key), "-f", "dedup@contoso.com", "-t", "ops@fabrikam.test", "--data", "@"+data)
		id1 := send(t, s.smtpAddr, args...)
		id2 := send(t, s.smtpAddr, args...)
		if id1 != id2 {
			t.Errorf("queued as %s, then as %s: want the same id for the same message", id1, id2)
		}
		if f := s.waitEMLs(t, "dedup", id1+".eml"); !slices.Equal(f, []string{id1 + ".eml"}) {
			t.Errorf("wrote %v, want only %s.eml", f, id1)
		}
	})

	// The same message without a Message-ID twice: the shim derives one from the message
	// (it has a Date), so the resend is still one delivery, and the .eml carries it.
	t.Run("resend without Message-ID deduplicated", func(t *testing.T) {
		t.Parallel()
		data := writeData(t, "nomsgid.eml", crlf(
			"From: nomsgid@contoso.com",
			"To: ops@fabrikam.test",
			"Subject: door 3 open",
			"Date: Tue, 24 Nov 2026 10:01:00 +0000",
			"",
			"Door 3 has been open for 5 minutes."))
		args := append(authArgs("PLAIN", "app", app.Key), "-f", "nomsgid@contoso.com", "-t", "ops@fabrikam.test", "--data", "@"+data)
		id1 := send(t, s.smtpAddr, args...)
		id2 := send(t, s.smtpAddr, args...)
		if id1 != id2 {
			t.Errorf("queued as %s, then as %s: want the same id for the same message", id1, id2)
		}
		if f := s.waitEMLs(t, "nomsgid", id1+".eml"); !slices.Equal(f, []string{id1 + ".eml"}) {
			t.Fatalf("wrote %v, want only %s.eml", f, id1)
		}
		b, err := os.ReadFile(filepath.Join(s.outbox("nomsgid"), id1+".eml"))
		if err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(`^Message-ID: <[0-9a-f]{32}\.shim@contoso\.com>\r\nFrom: nomsgid@contoso\.com\r\n`).Match(withoutReceived(t, b)) {
			t.Errorf("want the derived Message-ID prepended, below the Received field; the .eml starts %q", b[:min(len(b), 300)])
		}
	})

	// The .eml is the message as sent, byte for byte, below the shim's Received field:
	// 8-bit UTF-8, lines starting with a dot (swaks dot-stuffs them on the wire, go-smtp
	// unstuffs them), a lone dot inside.
	//
	// What is compared: msg is the message with CRLF line ends, ending with CRLF. The
	// --data file is msg without its final CRLF, because swaks always ends DATA with
	// CRLF "." CRLF (a file ending in a line end would gain an empty line). So the SMTP
	// content swaks sends is exactly msg, and the .eml must equal msg exactly.
	t.Run("body byte-identical", func(t *testing.T) {
		t.Parallel()
		msg := crlf(
			"From: Scanner <bytes@contoso.com>",
			"To: ops@fabrikam.test",
			"Subject: Scan complete",
			"Message-ID: <bytes-1@printer.contoso.com>",
			"Date: Tue, 24 Nov 2026 10:02:00 +0000",
			"MIME-Version: 1.0",
			"Content-Type: text/plain; charset=utf-8",
			"Content-Transfer-Encoding: 8bit",
			"",
			"Grüße aus dem Drucker: 3 Seiten, ½ A4, 5 € — ✓",
			".a line that starts with a dot",
			"..and one that starts with two",
			".",
			"trailing spaces   ",
			"\ttab-indented",
			"Ende.",
			"")
		data := writeData(t, "bytes.eml", strings.TrimSuffix(msg, "\r\n"))
		id := send(t, s.smtpAddr, append(authArgs("LOGIN", "app", app.Key),
			"-f", "bytes@contoso.com", "-t", "ops@fabrikam.test", "--data", "@"+data)...)
		s.waitEMLs(t, "bytes", id+".eml")
		got, err := os.ReadFile(filepath.Join(s.outbox("bytes"), id+".eml"))
		if err != nil {
			t.Fatal(err)
		}
		if got := withoutReceived(t, got); !bytes.Equal(got, []byte(msg)) {
			t.Errorf("the .eml differs from the message sent:\n got %q\nwant %q", got, msg)
		}
	})
}

// TestShimOldTLSDevicesThrottle runs a server with min_tls 1.0, devices on loopback
// sending as app, and a mailbox limit of one message a minute.
func TestShimOldTLSDevicesThrottle(t *testing.T) {
	t.Parallel()
	needSwaks(t)
	s := serveShim(t, "  min_tls: \"1.0\"\n  devices: [{cidr: 127.0.0.0/8, key: app}]\n",
		"limits:\n  mailbox: {messages_per_minute: 1}\n", "tls10", "tls10rsa", "device", "throttle")
	app := keys["app"]

	// A TLS 1.0-only client (OpenSSL 3 needs security level 0 for TLS 1.0's ciphers),
	// AUTH LOGIN: accepted, over TLS 1.0.
	t.Run("TLS 1.0 AUTH LOGIN", func(t *testing.T) {
		t.Parallel()
		out, ok := swaks(t, s.smtpAddr, append(authArgs("LOGIN", "app", app.Key),
			"--tls-protocol", "tlsv1", "--tls-cipher", "DEFAULT:@SECLEVEL=0",
			"-f", "tls10@contoso.com", "-t", "ops@fabrikam.test")...)
		id := queued(t, out, ok)
		if !strings.Contains(out, "TLS started with cipher TLSv1:") || !strings.Contains(out, "235 2.0.0") {
			t.Errorf("want TLS 1.0 and AUTH accepted:\n%s", out)
		}
		if f := s.waitEMLs(t, "tls10", id+".eml"); !slices.Equal(f, []string{id + ".eml"}) {
			t.Errorf("wrote %v, want %s.eml", f, id)
		}
	})

	// The oldest clients know only RSA key exchange, which Go leaves out by default.
	t.Run("TLS 1.0 with RSA key exchange", func(t *testing.T) {
		t.Parallel()
		out, ok := swaks(t, s.smtpAddr, append(authArgs("LOGIN", "app", app.Key),
			"--tls-protocol", "tlsv1", "--tls-cipher", "AES128-SHA:@SECLEVEL=0",
			"-f", "tls10rsa@contoso.com", "-t", "ops@fabrikam.test")...)
		id := queued(t, out, ok)
		if !strings.Contains(out, "TLS started with cipher TLSv1:AES128-SHA") {
			t.Errorf("want TLS 1.0 with AES128-SHA:\n%s", out)
		}
		if f := s.waitEMLs(t, "tls10rsa", id+".eml"); !slices.Equal(f, []string{id + ".eml"}) {
			t.Errorf("wrote %v, want %s.eml", f, id)
		}
	})

	// 127.0.0.1 is in a device range: no AUTH needed (nor offered, without STARTTLS),
	// and the message is sent as the device's key.
	t.Run("device without AUTH", func(t *testing.T) {
		t.Parallel()
		out, ok := swaks(t, s.smtpAddr, "-f", "device@contoso.com", "-t", "ops@fabrikam.test")
		id := queued(t, out, ok)
		if f := s.waitEMLs(t, "device", id+".eml"); !slices.Equal(f, []string{id + ".eml"}) {
			t.Errorf("wrote %v, want %s.eml", f, id)
		}
	})

	// The mailbox's second message within the minute: the shim queues (shim.delivery's
	// default), so the device gets 250 for both and the second waits for the budget
	// instead of coming back as 451, which most scanners never retry.
	t.Run("throttled message queued", func(t *testing.T) {
		t.Parallel()
		args := append(authArgs("PLAIN", "app", app.Key), "-f", "throttle@contoso.com", "-t", "ops@fabrikam.test")
		first := send(t, s.smtpAddr, args...)
		second := send(t, s.smtpAddr, args...)
		if f := s.waitEMLs(t, "throttle", first+".eml"); !slices.Equal(f, []string{first + ".eml"}) {
			t.Errorf("wrote %v, want only %s.eml", f, first)
		}
		// A worker may hold it for a moment (SENDING) before it finds no budget and puts
		// it back with the time the budget frees up.
		var r restResponse
		queued := false
		waitFor(t.Context(), 10*time.Second, func() bool {
			r = rest(t, "GET", s.baseURL+"/v1/messages/"+second, bearer(app.Key), nil)
			var m struct {
				Status          string `json:"status"`
				NextAttemptTime string `json:"nextAttemptTime"`
			}
			queued = r.Status == 200 && json.Unmarshal(r.Body, &m) == nil && m.Status == "QUEUED" && m.NextAttemptTime != ""
			return queued
		})
		if !queued {
			t.Errorf("second message within the minute: %s, want QUEUED with a nextAttemptTime", r.Body)
		}
	})
}

// TestShimProcess runs `mailgate shim` on its own, sending to a `mailgate serve` over
// gRPC with the key the client authenticated with.
func TestShimProcess(t *testing.T) {
	t.Parallel()
	needSwaks(t)
	s := serveShim(t, "", "", "remote")
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "shim.yaml")
	var shimAddr string
	var sp *proc
	for attempt := 0; ; attempt++ {
		shimAddr = freeAddr(t)
		cfg := fmt.Sprintf(`# written by the mailgate e2e shim test
shim:
  listen: %q
  hostname: shim.test
  upstream: {grpc: %q}
log: {format: json}
`, shimAddr, s.grpcAddr)
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		sp = start(t, dir, nil, "shim", "--config", cfgPath)
		err := waitFor(context.Background(), readyTimeout, func() bool {
			if sp.exited() {
				return true
			}
			c, err := net.DialTimeout("tcp", shimAddr, 200*time.Millisecond)
			if err == nil {
				c.Close()
			}
			return err == nil
		})
		if err == nil && !sp.exited() {
			break
		}
		if attempt < 4 && sp.exited() && strings.Contains(sp.logs(), "address already in use") {
			continue
		}
		t.Fatalf("mailgate shim did not listen on %s (%v):\n%s", shimAddr, err, sp.logs())
	}

	out, ok := swaks(t, shimAddr, append(authArgs("LOGIN", "app", keys["app"].Key),
		"-f", "remote@contoso.com", "-t", "ops@fabrikam.test")...)
	id := queued(t, out, ok)
	if f := s.waitEMLs(t, "remote", id+".eml"); !slices.Equal(f, []string{id + ".eml"}) {
		t.Errorf("the serving mailgate wrote %v, want %s.eml", f, id)
	}

	// The upstream checks the key: a wrong one is 535.
	out, ok = swaks(t, shimAddr, append(authArgs("PLAIN", "app", "mg_not_a_key_at_all"),
		"-f", "remote@contoso.com", "-t", "ops@fabrikam.test")...)
	refusedWith(t, out, ok, "535 5.7.8")

	sp.stop(t) // SIGTERM: the shim drains and exits 0
}
