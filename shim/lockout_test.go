package shim_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"net/smtp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mailgate/mailgate/server"
	"github.com/mailgate/mailgate/shim"
)

// Every address in 127.0.0.0/8 is loopback on Linux, so a client bound to 127.0.0.2 is
// another source to the shim than one on 127.0.0.1.
const deviceAddr = "127.0.0.9"

var scanners = shim.Device{Prefix: netip.MustParsePrefix(deviceAddr + "/32"), Principal: shim.Principal{Name: "scanners"}}

const scan = "From: scanner@contoso.com\r\nTo: bob@fabrikam.com\r\nSubject: scan\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\n\r\nPage 1.\r\n"

// slowloris holds connections as the attack did: it never authenticates, and
// sends a byte (or, with lines, a NOOP) every interval, each well within read_timeout.
type slowloris struct {
	addr     string
	interval time.Duration
	lines    bool

	mu            sync.Mutex
	open, maxOpen int // connections the shim admitted, open now and at most
}

// hold makes one connection from local and holds it until ctx is done or the shim
// closes it. It returns whether the shim admitted it, and the shim's last line.
func (s *slowloris) hold(ctx context.Context, local string) (admitted bool, last string) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	c, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return false, err.Error()
	}
	defer c.Close()
	r := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if last, err = r.ReadString('\n'); err != nil || !strings.HasPrefix(last, "220") {
		return false, last
	}
	s.mu.Lock()
	s.open++
	s.maxOpen = max(s.maxOpen, s.open)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.open--
		s.mu.Unlock()
	}()
	c.SetReadDeadline(time.Time{})
	replies := make(chan string)
	go func() {
		defer close(replies)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			replies <- line
		}
	}()
	defer func() {
		c.Close()
		for range replies {
		}
	}()
	const drip = "EHLO slow.example\r\n"
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return true, last
		case line, ok := <-replies:
			if !ok {
				return true, last // the shim closed the connection
			}
			last = line
		case <-t.C:
			b := drip[i%len(drip) : i%len(drip)+1]
			if s.lines {
				b = "NOOP\r\n"
			}
			c.Write([]byte(b))
		}
	}
}

// waitFor polls cond for up to 20 s: long enough for any machine, and the wait ends as
// soon as cond holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("%s: not reached in 20 s", what)
}

// The lockout: slow clients that never authenticate, from one source, held every
// slot. With a per-source limit, legitimate clients still send, each at the first try,
// while the slow ones keep reconnecting.
func TestSlowlorisFromOneSourceLocksNobodyOut(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	f := start(t, func(o *shim.Options, _ *server.ServiceOptions) {
		o.MaxConnections = 20
		o.MaxConnectionsPerSource = 5
		o.ReadTimeout = time.Minute
		o.Metrics = shim.NewMetrics(reg)
	})
	attack := &slowloris{addr: f.addr, interval: 200 * time.Millisecond}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			for ctx.Err() == nil {
				if ok, _ := attack.hold(ctx, "127.0.0.2"); !ok {
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	t.Cleanup(func() { stop(); wg.Wait() })
	// Let the slow clients take what they can before the real ones come.
	waitFor(t, "slow clients refused", func() bool {
		return metricValue(t, reg, `mailgate_shim_connections_total{result="refused_source"}`) >= 100
	})

	for i := range 12 {
		c, err := f.dial(t, false, "app", appKey)
		if err != nil {
			t.Fatalf("submission %d: AUTH: %v", i, err)
		}
		m := strings.Replace(message, "scan-1", fmt.Sprintf("lockout-%d", i), 1)
		if err := send(c, "app@contoso.com", []string{"bob@fabrikam.com"}, m); err != nil {
			t.Fatalf("submission %d: %v", i, err)
		}
		c.Quit()
	}
	stop()
	wg.Wait()
	if n := len(f.box.sent()); n != 12 {
		t.Errorf("%d of 12 legitimate messages sent", n)
	}
	if attack.maxOpen != 5 {
		t.Errorf("%d slow connections from one source admitted at once, want the limit, 5", attack.maxOpen)
	}
}

// A client outside the devices' ranges has auth_timeout to authenticate, however busy it
// keeps each read; one that did, and a device, then go on under read_timeout alone.
func TestAuthTimeout(t *testing.T) {
	t.Parallel()
	const authTimeout = time.Second
	tests := []struct {
		name  string
		local string
		lines bool // NOOP lines, each within read_timeout; else a byte at a time
		// badAuth: AUTH lines that are not base64 instead of NOOP, each answered 501:
		// a client that tries is held to the deadline as one that does not.
		badAuth bool
		auth    bool
		tls     bool
		cutOff  bool
	}{
		{name: "a byte at a time", local: "127.0.0.1", cutOff: true},
		{name: "NOOP lines", local: "127.0.0.1", lines: true, cutOff: true},
		{name: "NOOP lines after STARTTLS", local: "127.0.0.1", lines: true, tls: true, cutOff: true},
		{name: "AUTH lines that are not base64", local: "127.0.0.1", lines: true, badAuth: true, cutOff: true},
		{name: "authenticated", local: "127.0.0.1", lines: true, auth: true},
		{name: "authenticated after STARTTLS", local: "127.0.0.1", lines: true, auth: true, tls: true},
		{name: "device", local: deviceAddr, lines: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			reg := prometheus.NewRegistry()
			f := start(t, func(o *shim.Options, _ *server.ServiceOptions) {
				o.AuthTimeout = authTimeout
				o.ReadTimeout = time.Minute
				o.AllowInsecureAuth = true
				o.Devices = []shim.Device{scanners}
				o.Metrics = shim.NewMetrics(reg)
			})
			r := dialRaw(t, f.addr, tt.local)
			if tt.tls {
				r.startTLS()
			} else {
				r.want(250, "EHLO client.test")
			}
			if tt.auth {
				r.want(235, "AUTH PLAIN %s", b64("\x00app\x00"+appKey))
			}
			connected := time.Now()
			if !tt.cutOff {
				// Three times the deadline, then a message: the session is still there.
				for time.Since(connected) < 3*authTimeout {
					r.want(250, "NOOP")
					time.Sleep(100 * time.Millisecond)
				}
				from := "app@contoso.com"
				if !tt.auth {
					from = "scanner@contoso.com"
				}
				r.want(250, "MAIL FROM:<%s>", from)
				r.want(250, "RCPT TO:<bob@fabrikam.com>")
				r.want(354, "DATA")
				r.want(250, "%s\r\n.", strings.TrimSuffix(strings.Replace(scan, "scanner@", strings.Split(from, "@")[0]+"@", 1), "\r\n"))
				if n := metricValue(t, reg, "mailgate_shim_auth_timeouts_total"); n != 0 {
					t.Errorf("auth timeouts %v, want 0", n)
				}
				return
			}
			// Drip until the shim closes the connection, or read_timeout would have.
			r.conn.SetDeadline(time.Time{})
			done := make(chan string, 1)
			go func() {
				line, _ := r.tp.ReadLine()
				for {
					next, err := r.tp.ReadLine()
					if err != nil {
						break
					}
					line = next
				}
				done <- line
			}()
			drip := "EHLO slow.example\r\n"
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case last := <-done:
					if !strings.HasPrefix(last, "421 4.4.2") {
						t.Errorf("last reply %q, want 421 4.4.2", last)
					}
					if n := metricValue(t, reg, "mailgate_shim_auth_timeouts_total"); n != 1 {
						t.Errorf("auth timeouts %v, want 1", n)
					}
					if n := metricValue(t, reg, `mailgate_shim_auth_total{mechanism="PLAIN",result="malformed"}`); tt.badAuth && n == 0 {
						t.Error("the malformed AUTH lines were not counted")
					}
					return
				case <-tick.C:
					if time.Since(connected) > 20*time.Second {
						t.Fatal("still connected after 20 s, with an auth_timeout of 1 s")
					}
					b := drip[i%len(drip) : i%len(drip)+1]
					if tt.lines {
						b = "NOOP\r\n"
					}
					if tt.badAuth {
						b = "AUTH PLAIN !!!\r\n"
					}
					r.conn.Write([]byte(b))
				}
			}
		})
	}
}

// greet connects from local and returns the greeting's code; the connection stays open
// for the test.
func greet(t *testing.T, addr, local string) (int, string) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("greeting from %s: %v", local, err)
	}
	var code int
	fmt.Sscanf(line, "%d", &code)
	return code, strings.TrimSpace(line)
}

// Slots kept for the devices: strangers cannot take the last ones, devices can.
func TestReservedDeviceConnections(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	f := start(t, func(o *shim.Options, _ *server.ServiceOptions) {
		o.MaxConnections = 6
		o.ReservedDeviceConnections = 2
		o.Devices = []shim.Device{scanners}
		o.Metrics = shim.NewMetrics(reg)
	})
	for i := range 4 {
		if code, line := greet(t, f.addr, fmt.Sprintf("127.0.0.%d", 20+i)); code != 220 {
			t.Fatalf("stranger %d: %s", i, line)
		}
	}
	if code, line := greet(t, f.addr, "127.0.0.30"); line != "421 4.7.0 Too many connections; try again later" {
		t.Errorf("a fifth stranger got %d %q, want 421: the last two slots are the devices'", code, line)
	}
	// A device gets in, and sends.
	c, err := smtp.Dial(f.addr) // from 127.0.0.1: not a device, and refused too
	if err == nil {
		c.Close()
		t.Error("a stranger on 127.0.0.1 was admitted into a reserved slot")
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(deviceAddr)}}
	conn, err := d.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := smtp.NewClient(conn, "127.0.0.1")
	if err != nil {
		t.Fatalf("device: %v", err)
	}
	defer dc.Close()
	if err := send(dc, "scanner@contoso.com", []string{"bob@fabrikam.com"}, scan); err != nil {
		t.Fatalf("device: %v", err)
	}
	if code, line := greet(t, f.addr, deviceAddr); code != 220 {
		t.Errorf("a second device connection: %s", line)
	}
	if code, line := greet(t, f.addr, deviceAddr); code != 421 {
		t.Errorf("a seventh connection: %s, want 421: max_connections is 6", line)
	}
	for series, want := range map[string]float64{
		`mailgate_shim_connections_total{result="accepted"}`:         6,
		`mailgate_shim_connections_total{result="refused_reserved"}`: 2,
		`mailgate_shim_connections_total{result="refused"}`:          1,
	} {
		if got := metricValue(t, reg, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
}

// Slow clients from many sources fill the strangers' slots; a device still sends at
// once, and a client that authenticates gets in as soon as auth_timeout frees a slot.
func TestSlowClientsFromManySources(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	f := start(t, func(o *shim.Options, _ *server.ServiceOptions) {
		o.MaxConnections = 10
		o.ReservedDeviceConnections = 2
		o.AuthTimeout = time.Second
		o.ReadTimeout = time.Minute
		o.Devices = []shim.Device{scanners}
		o.Metrics = shim.NewMetrics(reg)
	})
	attack := &slowloris{addr: f.addr, interval: 50 * time.Millisecond, lines: true}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() { attack.hold(ctx, fmt.Sprintf("127.0.0.%d", 40+i)) })
	}
	t.Cleanup(func() { stop(); wg.Wait() })
	waitFor(t, "the strangers' slots taken", func() bool {
		attack.mu.Lock()
		defer attack.mu.Unlock()
		return attack.open == 8
	})

	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(deviceAddr)}}
	conn, err := d.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := smtp.NewClient(conn, "127.0.0.1")
	if err != nil {
		t.Fatalf("device: %v", err)
	}
	defer dc.Close()
	if err := send(dc, "scanner@contoso.com", []string{"bob@fabrikam.com"}, scan); err != nil {
		t.Fatalf("device: %v", err)
	}

	// A real client retries after 421, as devices do.
	var c *smtp.Client
	waitFor(t, "an authenticating client admitted", func() bool {
		c, err = smtp.Dial(f.addr)
		return err == nil
	})
	defer c.Close()
	if err := c.StartTLS(&tls.Config{InsecureSkipVerify: true}); err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(smtp.PlainAuth("", "app", appKey, "127.0.0.1")); err != nil {
		t.Fatal(err)
	}
	if err := send(c, "app@contoso.com", []string{"bob@fabrikam.com"}, message); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every slow client cut off", func() bool {
		return metricValue(t, reg, "mailgate_shim_auth_timeouts_total") == 8
	})
}
