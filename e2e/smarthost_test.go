package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A Postfix in front of the shim, as a site that already runs one has it: the devices
// send to Postfix, and Postfix relays everything to the shim as its smart host
// (scripts/postfix-relay.sh --relayhost). The messages are the ones Postfix and Exchange
// carry every day and the shim used to refuse: To fields that are not address lists,
// Latin-1 display names, Message-IDs without angle brackets, LF-only files, an IDN From
// domain, the null sender.

// smarthostMessages is how many of each case the test sends through Postfix.
const smarthostMessages = 20

// smarthostShim runs `mailgate serve` with the shim on a free loopback port, 127.0.0.1
// admitted as a device sending as the key app, and one file backend for every message.
func smarthostShim(t *testing.T) (p *proc, smtpAddr, outbox string) {
	t.Helper()
	dir := t.TempDir()
	outbox = filepath.Join(dir, "outbox")
	p = serveConfigFunc(t, dir, func(httpAddr, grpcAddr string) string {
		smtpAddr = freeAddr(t)
		// max_connections_per_source: Postfix delivers to its relay host over up to
		// default_destination_concurrency_limit (20) connections at once; the shim's
		// default of 10 from one address would make it defer the rest.
		return fmt.Sprintf(`# written by the mailgate e2e smart host test
listen: {http: %q, grpc: %q, shutdown_timeout: %s}
keys:
  - {name: app, hash: %q, senders: ["*@contoso.com", "*@bücher.example"]}
routes:
  - {name: all, match: "*", backend: outbox}
backends:
  outbox: {type: file, dir: %q}
shim:
  listen: %q
  hostname: shim.test
  max_connections_per_source: 40
  devices: [{cidr: 127.0.0.1/32, key: app}]
limits:
  mailbox: {messages_per_minute: 0}       # Exchange's 30 a minute; off for a file backend
log: {format: json}
`, httpAddr, grpcAddr, shutdownTimeout, keys["app"].Hash, outbox, smtpAddr)
	})
	return p, smtpAddr, outbox
}

// smtpConn is a plain SMTP client that writes the message's bytes exactly as given
// (net/smtp turns every LF into CRLF, which would hide the LF-only case).
type smtpConn struct {
	conn net.Conn
	r    *bufio.Reader
	// lfLines: the server takes a bare LF for a line end, as Postfix does, so a dot
	// after one is doubled too. The shim's lines end in CRLF only; curl doubles a dot
	// only after CRLF.
	lfLines bool
}

func dialSMTP(addr, helo string) (*smtpConn, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c := &smtpConn{conn: conn, r: bufio.NewReader(conn)}
	if code, text, err := c.reply(); err != nil || code != 220 {
		conn.Close()
		return nil, fmt.Errorf("greeting: %d %s %v", code, text, err)
	}
	if _, err := c.expect(250, "EHLO "+helo); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// reply reads one (possibly multi-line) reply.
func (c *smtpConn) reply() (int, string, error) {
	c.conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	var text []string
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			return 0, strings.Join(text, "\n"), err
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 3 {
			return 0, line, fmt.Errorf("malformed reply %q", line)
		}
		text = append(text, line)
		if len(line) == 3 || line[3] == ' ' {
			code, err := strconv.Atoi(line[:3])
			return code, strings.Join(text, "\n"), err
		}
	}
}

// expect sends a command and wants the reply code.
func (c *smtpConn) expect(code int, cmd string) (string, error) {
	if _, err := io.WriteString(c.conn, cmd+"\r\n"); err != nil {
		return "", err
	}
	got, text, err := c.reply()
	if err == nil && got != code {
		err = fmt.Errorf("%s: got %s, want %d", cmd, text, code)
	}
	return text, err
}

// send runs one transaction and returns the reply to the end of DATA (2xx or not).
// content is what the client sends between DATA and the final dot, before
// dot-stuffing; like curl --upload-file, a content that does not end in CRLF is
// followed by CRLF "." CRLF, so the SMTP content is content+CRLF then.
func (c *smtpConn) send(from string, rcpts []string, content []byte, smtputf8 bool) (int, string, error) {
	mail := "MAIL FROM:<" + from + ">"
	if smtputf8 {
		mail += " SMTPUTF8"
	}
	if _, err := c.expect(250, mail); err != nil {
		return 0, "", err
	}
	for _, r := range rcpts {
		if _, err := c.expect(250, "RCPT TO:<"+r+">"); err != nil {
			return 0, "", err
		}
	}
	if _, err := c.expect(354, "DATA"); err != nil {
		return 0, "", err
	}
	if _, err := c.conn.Write(dotStuff(content, c.lfLines)); err != nil {
		return 0, "", err
	}
	return c.reply()
}

func (c *smtpConn) close() {
	c.expect(221, "QUIT")
	c.conn.Close()
}

// dotStuff is content on the wire after DATA: a dot doubled at the start of each line,
// then the end-of-data line. A line ends in CRLF, or with lfLines in LF alone.
func dotStuff(content []byte, lfLines bool) []byte {
	var b bytes.Buffer
	lineStart := true
	for _, c := range content {
		if lineStart && c == '.' {
			b.WriteByte('.')
		}
		b.WriteByte(c)
		lineStart = c == '\n' && (lfLines || bytes.HasSuffix(b.Bytes(), []byte("\r\n")))
	}
	if !bytes.HasSuffix(content, []byte("\r\n")) {
		b.WriteString("\r\n")
	}
	b.WriteString(".\r\n")
	return b.Bytes()
}

// smtpContent is what the server receives for content (see send).
func smtpContent(content []byte) []byte {
	if bytes.HasSuffix(content, []byte("\r\n")) {
		return content
	}
	return append(slices.Clip(content), "\r\n"...)
}

// toCRLF turns every LF not after a CR into CRLF.
func toCRLF(b []byte) []byte {
	var out bytes.Buffer
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out.WriteByte('\r')
		}
		out.WriteByte(c)
	}
	return out.Bytes()
}

// smarthostCase is one kind of message. Message i of the case is marked X-Test-Id:
// NAME-i, and has its own Message-ID when the case gives one.
type smarthostCase struct {
	name     string
	from     string   // MAIL FROM, "" for the null sender
	rcpts    []string // RCPT TO
	smtputf8 bool
	eol      string // line ending of the file: "\r\n", or "\n" for an LF-only file
	// header is the case's header lines before X-Test-Id, with a verb such as %d for i.
	header []string
	// msgIDDomain: the message has no Message-ID, and the shim adds
	// <32 hex digits.shim@msgIDDomain>.
	msgIDDomain string
	// fix turns the header lines as sent into the header lines as delivered: the changes
	// docs/shim.md lists under "What a raw message may hold"; nil: none.
	fix func(lines []string) []string
}

func (c smarthostCase) testID(i int) string { return fmt.Sprintf("%s-%d", c.name, i) }

func (c smarthostCase) lines(i int, fix bool) []string {
	var h []string
	for _, l := range c.header {
		if strings.Contains(l, "%") {
			l = fmt.Sprintf(l, i)
		}
		h = append(h, l)
	}
	if fix && c.fix != nil {
		h = c.fix(h)
	}
	return append(h, "X-Test-Id: "+c.testID(i), "", "Message "+c.testID(i)+".", ".a line that starts with a dot", "Ende.", "")
}

// content is the message as the client sends it.
func (c smarthostCase) content(i int) []byte {
	return []byte(strings.Join(c.lines(i, false), c.eol))
}

// want is the delivered message below the fields Postfix and the shim add in front.
func (c smarthostCase) want(i int) []byte {
	return toCRLF(smtpContent([]byte(strings.Join(c.lines(i, true), c.eol))))
}

// replaceLine replaces the line old by new.
func replaceLine(old, new string) func([]string) []string {
	return func(lines []string) []string {
		out := slices.Clone(lines)
		for j, l := range out {
			if l == old {
				out[j] = new
			}
		}
		return out
	}
}

// The Message-ID the raw message rules give a message whose Message-ID has no angle
// brackets: the same id, bracketed, in the same place.
func bracketed(line string) string {
	v := strings.TrimPrefix(line, "Message-ID: ")
	return "Message-ID: <" + v + ">"
}

func smarthostCases() []smarthostCase {
	date := "Date: Thu, 03 Dec 2026 10:00:00 +0100"
	return []smarthostCase{
		{
			name: "to-comma", from: "app@contoso.com", rcpts: []string{"bob@example.com"}, eol: "\r\n",
			header: []string{"From: app@contoso.com", "To: Mueller, Hans <bob@example.com>", "Subject: Scan %d",
				"Message-ID: <to-comma-%d@mfp.contoso.com>", date},
		},
		{
			name: "to-semicolons", from: "app@contoso.com", rcpts: []string{"bob@example.com", "carol@example.com"}, eol: "\r\n",
			header: []string{"From: app@contoso.com", "To: bob@example.com;carol@example.com", "Subject: Report %d",
				"Message-ID: <to-semicolons-%d@outlook.contoso.com>", date},
		},
		{
			name: "to-undisclosed", from: "app@contoso.com", rcpts: []string{"bob@example.com"}, eol: "\r\n",
			header: []string{"From: app@contoso.com", "To: undisclosed recipients", "Subject: Alarm %d",
				"Message-ID: <to-undisclosed-%d@panel.contoso.com>", date},
		},
		{
			name: "to-latin1", from: "app@contoso.com", rcpts: []string{"bob@example.com"}, eol: "\r\n",
			header: []string{"From: app@contoso.com", "To: J\xfcrgen Wei\xdf <bob@example.com>", "Subject: Scan %d",
				"Message-ID: <to-latin1-%d@mfp.contoso.com>", date},
			fix: replaceLine("To: J\xfcrgen Wei\xdf <bob@example.com>", "To: =?utf-8?q?J=C3=BCrgen_Wei=C3=9F?=\r\n <bob@example.com>"),
		},
		{
			name: "from-latin1", from: "app@contoso.com", rcpts: []string{"bob@example.com"}, eol: "\r\n",
			header: []string{"From: J\xf6rg M\xfcller <app@contoso.com>", "To: bob@example.com", "Subject: Invoice %d",
				"Message-ID: <from-latin1-%d@erp.contoso.com>", date},
			fix: replaceLine("From: J\xf6rg M\xfcller <app@contoso.com>", "From: =?utf-8?q?J=C3=B6rg_M=C3=BCller?=\r\n <app@contoso.com>"),
		},
		{
			name: "msgid-bare", from: "app@contoso.com", rcpts: []string{"bob@example.com"}, eol: "\r\n",
			header: []string{"From: app@contoso.com", "To: bob@example.com", "Subject: Scan %d",
				"Message-ID: 20261203.%04d@mfp", date},
			fix: func(lines []string) []string {
				out := slices.Clone(lines)
				for j, l := range out {
					if strings.HasPrefix(l, "Message-ID: ") {
						out[j] = bracketed(l)
					}
				}
				return out
			},
		},
		{
			name: "lf-only", from: "app@contoso.com", rcpts: []string{"bob@example.com"}, eol: "\n",
			header: []string{"From: app@contoso.com", "To: bob@example.com", "Subject: Log %d",
				"Message-ID: <lf-only-%d@cron.contoso.com>", date},
		},
		{
			name: "idn", from: "alerts@bücher.example", rcpts: []string{"bob@example.com"}, smtputf8: true, eol: "\r\n",
			header:      []string{"From: Bücher-Alarm <alerts@bücher.example>", "To: bob@example.com", "Subject: Lager %d", date},
			msgIDDomain: "xn--bcher-kva.example",
		},
		{
			name: "null-sender", from: "", rcpts: []string{"bob@example.com"}, eol: "\r\n",
			header:      []string{"From: Scanner <scanner@contoso.com>", "To: bob@example.com", "Subject: Scan %d", date},
			msgIDDomain: "contoso.com",
		},
		{
			name: "no-date", from: "app@contoso.com", rcpts: []string{"bob@example.com"}, eol: "\r\n",
			header:      []string{"From: Door panel <app@contoso.com>", "To: bob@example.com", "Subject: Door %d open"},
			msgIDDomain: "contoso.com",
		},
		{
			name: "plain", from: "app@contoso.com", rcpts: []string{"bob@example.com", "audit@contoso.com"}, eol: "\r\n",
			header: []string{"From: Scanner <app@contoso.com>", "To: Bob <bob@example.com>", "Bcc: audit@contoso.com",
				"Subject: Scan %d", "Message-ID: <plain-%d@mfp.contoso.com>", date},
			fix: func(lines []string) []string {
				return slices.DeleteFunc(slices.Clone(lines), func(l string) bool { return strings.HasPrefix(l, "Bcc: ") })
			},
		},
	}
}

// submission is one message handed to Postfix (or to the shim directly).
type submission struct {
	c     smarthostCase
	i     int
	queue string // Postfix's queue id; "" sent to the shim directly
}

var (
	postfixQueuedRE = regexp.MustCompile(`^250 2\.0\.0 Ok: queued as ([0-9A-Za-z]+)$`)
	// Postfix's own Received field, at the top of what it relays (smtpd_peername_lookup
	// = no: the client's name is unknown). "for <recipient>" is there for a single one.
	postfixReceivedRE = regexp.MustCompile(`^Received: from device\.test \(unknown \[127\.0\.0\.1\]\)\r\n` +
		`\tby mx\.contoso\.test \(Postfix\) with (?:ESMTP|UTF8SMTP) id ([0-9A-Za-z]+)` +
		`(?:\r\n\tfor <[^>\r\n]+>; |;\r\n\t)[A-Z][a-z]{2}, [ 0-9]{2} [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4} \([A-Z]+\)\r\n$`)
	// The shim's Received field (docs/shim.md): from the client's EHLO name and address
	// literal, by the shim's host name, the protocol, the id the shim logs beside
	// mailgate's id as received_id, and the time. No "for": it would show a Bcc
	// recipient.
	shimReceivedRE = regexp.MustCompile(`^Received: from (\S+) \(\[127\.0\.0\.1\]\)\r\n` +
		`\tby shim\.test \(mailgate\) with ESMTP id ([0-9a-f]{16});\r\n` +
		`\t([A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4})\r\n$`)
	derivedMsgIDRE = regexp.MustCompile(`^Message-ID: <[0-9a-f]{32}\.shim@([^>\r\n]+)>\r\n$`)
)

// nextField splits off the first header field of msg, with its continuation lines and
// CRLF; rest is what follows it.
func nextField(msg []byte) (field, rest []byte) {
	end := 0
	for {
		i := bytes.Index(msg[end:], []byte("\r\n"))
		if i < 0 {
			return msg, nil
		}
		end += i + 2
		if end >= len(msg) || (msg[end] != ' ' && msg[end] != '\t') {
			return msg[:end], msg[end:]
		}
	}
}

// checkDelivered compares a delivered file with the message as sent. The file must be,
// in this order: the shim's Received field (trace fields go on top, RFC 5321 §4.4),
// naming the id the shim logged for this message; Postfix's Received field, when the
// message came through Postfix; below the trace fields, the Date mailgate adds and the
// Message-ID the shim adds when the message has none; then exactly the message's bytes
// with the documented changes (CRLF line endings, a bracketed Message-ID, display names
// that are not UTF-8 re-encoded, no Bcc).
func checkDelivered(got emlFile, s submission, receivedIDs map[string][]string) error {
	if i := bareLF(got.b); i >= 0 {
		return fmt.Errorf("an LF without CR at byte %d: the delivered message must have CRLF line endings only", i)
	}
	rest := got.b
	next := func() string {
		f, r := nextField(rest)
		rest = r
		return string(f)
	}
	f := next()
	m := shimReceivedRE.FindStringSubmatch(f)
	switch {
	case m == nil:
		return fmt.Errorf("the first field is not the shim's Received field: %q", f)
	case m[1] != s.helo():
		return fmt.Errorf("the shim's Received names the client %q, want its EHLO name %q: %q", m[1], s.helo(), f)
	case !slices.Contains(receivedIDs[got.id], m[2]):
		return fmt.Errorf("the shim's Received has id %s; the shim logged %q for mailgate's id %s", m[2], receivedIDs[got.id], got.id)
	case !recent(m[3], time.RFC1123Z):
		return fmt.Errorf("the shim's Received is not dated now: %q", f)
	}
	if s.queue != "" {
		f = next()
		m = postfixReceivedRE.FindStringSubmatch(f)
		switch {
		case m == nil:
			return fmt.Errorf("the second field is not Postfix's Received field: %q", f)
		case m[1] != s.queue:
			return fmt.Errorf("Postfix's Received names queue id %s, want %s", m[1], s.queue)
		}
	}
	if !s.c.dated() {
		f = next()
		if !strings.HasPrefix(f, "Date: ") || !recent(strings.TrimSuffix(f[len("Date: "):], "\r\n"), time.RFC1123Z) {
			return fmt.Errorf("below the trace fields, want the Date mailgate adds, the time it was sent; got %q", f)
		}
	}
	if s.c.msgIDDomain != "" {
		f = next()
		m = derivedMsgIDRE.FindStringSubmatch(f)
		switch {
		case m == nil:
			return fmt.Errorf("below the trace fields, want the Message-ID the shim adds, <32 hex digits.shim@%s>; got %q", s.c.msgIDDomain, f)
		case m[1] != s.c.msgIDDomain:
			return fmt.Errorf("the Message-ID the shim added is in %q, want %q: %q", m[1], s.c.msgIDDomain, f)
		}
	}
	if want := s.c.want(s.i); !bytes.Equal(rest, want) {
		return fmt.Errorf("below the fields added, the message differs from what was sent (with the documented changes):\n got %q\nwant %q", rest, want)
	}
	return nil
}

// recent reports whether date, in layout, is within ten minutes of now.
func recent(date, layout string) bool {
	d, err := time.Parse(layout, date)
	return err == nil && time.Since(d).Abs() < 10*time.Minute
}

// helo is the name the shim's client gave in EHLO: Postfix's host name, or the
// device's.
func (s submission) helo() string {
	if s.queue != "" {
		return "mx.contoso.test"
	}
	return "device.test"
}

// dated reports whether the case's messages have a Date field.
func (c smarthostCase) dated() bool {
	return slices.ContainsFunc(c.header, func(l string) bool { return strings.HasPrefix(l, "Date: ") })
}

// bareLF is the index of the first LF not after a CR, or -1.
func bareLF(b []byte) int {
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			return i
		}
	}
	return -1
}

var testIDRE = regexp.MustCompile(`(?m)^X-Test-Id: (\S+)\r?$`)

// emlFile is one file the file backend wrote: mailgate's id (the file is ID.eml) and
// its bytes.
type emlFile struct {
	id string
	b  []byte
}

// deliveredByTestID reads the outbox: the files by X-Test-Id; files without one under "".
func deliveredByTestID(t *testing.T, outbox string) map[string][]emlFile {
	t.Helper()
	entries, err := os.ReadDir(outbox)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	out := map[string][]emlFile{}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".eml") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(outbox, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		id := ""
		if m := testIDRE.FindSubmatch(b); m != nil {
			id = string(m[1])
		}
		out[id] = append(out[id], emlFile{id: strings.TrimSuffix(e.Name(), ".eml"), b: b})
	}
	return out
}

// waitDelivered reads the outbox until every one of subs has been delivered at least
// once, or until timeout; it returns the last reading either way.
func waitDelivered(t *testing.T, outbox string, subs []submission, timeout time.Duration) map[string][]emlFile {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := deliveredByTestID(t, outbox)
		missing := 0
		for _, s := range subs {
			if len(got[s.c.testID(s.i)]) == 0 {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			return got
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// shimReceivedIDs are the received_id values the shim logged, by mailgate's id, for
// the messages it answered 250.
func shimReceivedIDs(t *testing.T, p *proc) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, l := range logLines(t, p.logs()) {
		if l["msg"] != "smtp message accepted" {
			continue
		}
		id, _ := l["id"].(string)
		rid, _ := l["received_id"].(string)
		out[id] = append(out[id], rid)
	}
	return out
}

// postfixStatus counts the delivery attempts in Postfix's log by status (sent, bounced,
// deferred), and gives the replies of those with status sent by queue id.
func postfixStatus(t *testing.T, dir string) (counts map[string]int, sent map[string][]string) {
	t.Helper()
	log, err := os.ReadFile(filepath.Join(dir, "postfix.log"))
	if err != nil {
		t.Fatal(err)
	}
	counts, sent = map[string]int{}, map[string][]string{}
	for _, m := range postfixStatusRE.FindAllStringSubmatch(string(log), -1) {
		counts[m[2]]++
		if m[2] == "sent" {
			sent[m[1]] = append(sent[m[1]], m[3])
		}
	}
	return counts, sent
}

var postfixStatusRE = regexp.MustCompile(`(?m) postfix/(?:smtp|error|bounce)\[\d+\]: ([0-9A-Za-z]+): to=<[^>]*>.*? status=(\w+) \((.*)\)$`)

// postfixQueue lists the mail still in the queue; "" when it is empty.
func postfixQueue(t *testing.T, dir string) string {
	t.Helper()
	out, err := exec.Command("/usr/sbin/postqueue", "-c", filepath.Join(dir, "conf"), "-p").CombinedOutput()
	if err != nil {
		t.Fatalf("postqueue -p: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "Mail queue is empty") {
		return ""
	}
	return string(out)
}

// waitPostfix waits until Postfix's queue is empty and its log has at least n delivery
// results, and fails the test with the queue and the log's end if that takes too long.
func waitPostfix(t *testing.T, dir string, n int) {
	t.Helper()
	var queue string
	err := waitFor(context.Background(), 30*time.Second, func() bool {
		counts, _ := postfixStatus(t, dir)
		if counts["sent"]+counts["bounced"]+counts["deferred"] < n {
			return false
		}
		queue = postfixQueue(t, dir)
		return queue == ""
	})
	if err != nil {
		counts, _ := postfixStatus(t, dir)
		log, _ := os.ReadFile(filepath.Join(dir, "postfix.log"))
		t.Fatalf("Postfix did not finish: %v; results %v; queue:\n%s\nend of its log:\n%s", err, counts, queue, lastLines(string(log), 20))
	}
}

// submitAll sends the messages to addr over conns connections at once, and records
// each message's Postfix queue id in it. A refusal fails the test.
func submitAll(t *testing.T, addr string, subs []submission, conns int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	var next atomic.Int64
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := dialSMTP(addr, "device.test")
			if err != nil {
				errs <- err
				return
			}
			c.lfLines = true
			defer c.close()
			for {
				k := int(next.Add(1)) - 1
				if k >= len(subs) {
					return
				}
				s := &subs[k]
				code, text, err := c.send(s.c.from, s.c.rcpts, s.c.content(s.i), s.c.smtputf8)
				m := postfixQueuedRE.FindStringSubmatch(text)
				if err != nil || code != 250 || m == nil {
					errs <- fmt.Errorf("%s: %d %s %v", s.c.testID(s.i), code, text, err)
					return
				}
				s.queue = m[1]
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Postfix refused a message: %v", err)
	}
}

// checkOnce checks that each of check was delivered exactly once, as checkDelivered
// wants it, and that nothing but the known submissions was delivered.
//
// The shim queues by default (shim.delivery: queued): its 250 means the message is
// spooled, and the dispatcher writes the file a moment later. checkOnce waits until
// each of check is in the outbox, or 20 seconds have passed, before it counts.
func checkOnce(t *testing.T, p *proc, outbox string, known, check []submission) {
	t.Helper()
	got := waitDelivered(t, outbox, check, 20*time.Second)
	receivedIDs := shimReceivedIDs(t, p)
	want := map[string]bool{}
	for _, s := range known {
		want[s.c.testID(s.i)] = true
	}
	// One error per case: its first failing message, and how many failed.
	type failure struct {
		n     int
		first string
	}
	failed := map[string]*failure{}
	var order []string
	for _, s := range check {
		id := s.c.testID(s.i)
		var err error
		if files := got[id]; len(files) != 1 {
			err = fmt.Errorf("delivered %d times, want once", len(files))
		} else if err = checkDelivered(files[0], s, receivedIDs); err != nil {
			err = fmt.Errorf("%w\nthe delivered file: %q", err, files[0].b)
		}
		if err == nil {
			continue
		}
		f := failed[s.c.name]
		if f == nil {
			f = &failure{first: id + ": " + err.Error()}
			failed[s.c.name] = f
			order = append(order, s.c.name)
		}
		f.n++
	}
	for _, name := range order {
		t.Errorf("%s: %d messages not delivered once as sent; the first: %s", name, failed[name].n, failed[name].first)
	}
	for id, files := range got {
		if !want[id] {
			t.Errorf("%d delivered files that were not sent (X-Test-Id %q), the first:\n%s", len(files), id, files[0].b)
		}
	}
}

func TestPostfixSmarthostIntoShim(t *testing.T) {
	t.Parallel()
	started := time.Now()
	p, shimAddr, outbox := smarthostShim(t)
	// Postfix relays through a proxy that can lose the shim's 250 once (see below).
	px := newReplyCutter(t, shimAddr)
	pdir, paddr := postfixRelay(t, "--relayhost", px.addr, "--no-client-cert", "--no-tls")
	t.Logf("mailgate and Postfix ready after %s", time.Since(started).Round(time.Millisecond))

	var subs []submission
	rcpts := 0
	for _, c := range smarthostCases() {
		for i := range smarthostMessages {
			subs = append(subs, submission{c: c, i: i})
			rcpts += len(c.rcpts)
		}
	}
	// Interleave the cases, as devices send them.
	slices.SortStableFunc(subs, func(a, b submission) int { return a.i - b.i })

	t.Run("every case once through Postfix", func(t *testing.T) {
		begun := time.Now()
		submitAll(t, paddr, subs, 4)
		waitPostfix(t, pdir, rcpts)
		t.Logf("%d messages (%d recipients) through Postfix into the shim in %s", len(subs), rcpts, time.Since(begun).Round(time.Millisecond))
		counts, sent := postfixStatus(t, pdir)
		if counts["bounced"] != 0 || counts["deferred"] != 0 || counts["sent"] != rcpts {
			log, _ := os.ReadFile(filepath.Join(pdir, "postfix.log"))
			t.Errorf("Postfix's results: %v; want %d sent, 0 bounced, 0 deferred; its log, the first bounces:\n%s",
				counts, rcpts, firstMatching(string(log), "status=bounced", 10))
		}
		notSent := map[string][]string{}
		for _, s := range subs {
			if len(sent[s.queue]) != len(s.c.rcpts) {
				notSent[s.c.name] = append(notSent[s.c.name], s.queue)
			}
		}
		for name, queue := range notSent {
			t.Errorf("%s: Postfix did not relay %d of %d messages to every recipient (queue ids %s ...)", name, len(queue), smarthostMessages, queue[0])
		}
		checkOnce(t, p, outbox, subs, subs)
	})

	// Postfix writes CRLF whatever its client sent; a device talking to the shim
	// directly sends an LF-only file as it is, as curl --upload-file does without
	// --crlf. The shim turns it into CRLF once, before it adds a field.
	t.Run("LF-only file straight to the shim", func(t *testing.T) {
		lf := smarthostCase{name: "direct-lf", from: "app@contoso.com", rcpts: []string{"bob@example.com"}, eol: "\n",
			header:      []string{"From: app@contoso.com", "To: bob@example.com", "Subject: Log %d", "Date: Thu, 03 Dec 2026 10:00:00 +0100"},
			msgIDDomain: "contoso.com"}
		var direct []submission
		c, err := dialSMTP(shimAddr, "device.test")
		if err != nil {
			t.Fatal(err)
		}
		code, text, err := c.send(lf.from, lf.rcpts, lf.content(0), false)
		c.close()
		if err != nil || code != 250 {
			t.Fatalf("the shim refused the LF-only message: %d %s %v", code, text, err)
		}
		direct = append(direct, submission{c: lf, i: 0})
		if curl, err := exec.LookPath("curl"); err == nil {
			file := filepath.Join(t.TempDir(), "scan.eml")
			if err := os.WriteFile(file, lf.content(1), 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(curl, "-sS", "--url", "smtp://"+shimAddr+"/device.test",
				"--mail-from", lf.from, "--mail-rcpt", lf.rcpts[0], "--upload-file", file).CombinedOutput()
			if err != nil {
				t.Fatalf("curl --upload-file (LF-only) to the shim: %v\n%s", err, out)
			}
			direct = append(direct, submission{c: lf, i: 1})
		} else {
			t.Logf("curl is not on PATH: the LF-only file went over a plain connection only")
		}
		subs = append(subs, direct...)
		checkOnce(t, p, outbox, subs, direct)
	})

	// A device that lost Postfix's 250 sends the message again: Postfix takes it twice,
	// and relays it twice, each time under a Received line of its own. The shim delivers
	// it once: same principal, Message-ID and envelope.
	t.Run("resend through Postfix delivered once", func(t *testing.T) {
		c := smarthostCase{name: "resend", from: "app@contoso.com", rcpts: []string{"bob@example.com"}, eol: "\r\n",
			header: []string{"From: app@contoso.com", "To: bob@example.com", "Subject: Scan %d",
				"Message-ID: <resend-%d@mfp.contoso.com>", "Date: Thu, 03 Dec 2026 10:00:00 +0100"}}
		first := resendTwice(t, pdir, paddr, submission{c: c}, submission{c: c})
		subs = append(subs, first)
		checkOnce(t, p, outbox, subs, subs[len(subs)-1:])
	})

	// The bracketless Message-ID is keyed as its bracketed form: the device's resend
	// with brackets (a firmware update between the two) is the same message.
	t.Run("bracketless and bracketed Message-ID delivered once", func(t *testing.T) {
		header := func(id string) []string {
			return []string{"From: app@contoso.com", "To: bob@example.com", "Subject: Scan %d",
				"Message-ID: " + id, "Date: Thu, 03 Dec 2026 10:00:00 +0100"}
		}
		bare := smarthostCase{name: "bare-then-bracketed", from: "app@contoso.com", rcpts: []string{"bob@example.com"}, eol: "\r\n",
			header: header("20261203.9000@mfp"), fix: replaceLine("Message-ID: 20261203.9000@mfp", "Message-ID: <20261203.9000@mfp>")}
		withBrackets := bare
		withBrackets.header, withBrackets.fix = header("<20261203.9000@mfp>"), nil
		first := resendTwice(t, pdir, paddr, submission{c: bare}, submission{c: withBrackets})
		subs = append(subs, first)
		checkOnce(t, p, outbox, subs, subs[len(subs)-1:])
	})

	// Postfix's own retry: the connection breaks after the shim took the message and
	// before Postfix read the 250. Postfix defers the message and sends the same bytes
	// again; the shim answers with the id it gave the first time, and delivers nothing
	// more.
	t.Run("Postfix retry after a lost 250 delivered once", func(t *testing.T) {
		c := smarthostCase{name: "lost250", from: "app@contoso.com", rcpts: []string{"bob@example.com"}, eol: "\r\n",
			header: []string{"From: app@contoso.com", "To: bob@example.com", "Subject: Scan %d",
				"Message-ID: <lost250-%d@mfp.contoso.com>", "Date: Thu, 03 Dec 2026 10:00:00 +0100"}}
		before, _ := postfixStatus(t, pdir)
		px.arm("X-Test-Id: " + c.testID(0) + "\r\n")
		s := []submission{{c: c}}
		submitAll(t, paddr, s, 1)
		if err := waitFor(context.Background(), 20*time.Second, func() bool {
			counts, _ := postfixStatus(t, pdir)
			return counts["deferred"] > before["deferred"]
		}); err != nil {
			log, _ := os.ReadFile(filepath.Join(pdir, "postfix.log"))
			t.Fatalf("Postfix did not defer the message whose 250 was lost (%d connections cut): %v\n%s", px.cuts.Load(), err, lastLines(string(log), 10))
		}
		// Now, not after Postfix's backoff (minutes): postqueue -i schedules one message.
		if out, err := exec.Command("/usr/sbin/postqueue", "-c", filepath.Join(pdir, "conf"), "-i", s[0].queue).CombinedOutput(); err != nil {
			t.Fatalf("postqueue -i %s: %v\n%s", s[0].queue, err, out)
		}
		waitPostfix(t, pdir, before["sent"]+before["bounced"]+before["deferred"]+2)
		counts, sent := postfixStatus(t, pdir)
		if counts["sent"] != before["sent"]+1 || counts["deferred"] != before["deferred"]+1 || counts["bounced"] != before["bounced"] {
			t.Errorf("Postfix's results went from %v to %v; want one deferred, then one sent", before, counts)
		}
		subs = append(subs, s...)
		checkOnce(t, p, outbox, subs, s)
		files := deliveredByTestID(t, outbox)[c.testID(0)]
		if len(files) == 1 && len(sent[s[0].queue]) == 1 {
			id := files[0].id
			if want := "250 2.0.0 Ok: queued as " + id; !strings.HasPrefix(sent[s[0].queue][0], want) {
				t.Errorf("Postfix's retry got %q, want the first attempt's id: %q", sent[s[0].queue][0], want)
			}
		}
	})
}

// resendTwice hands first to Postfix, waits until Postfix has relayed it, then hands it
// again. It checks that the shim answered both with the same mailgate id, and returns
// first with its Postfix queue id: the one whose Received line the delivered file has.
func resendTwice(t *testing.T, pdir, paddr string, first, second submission) submission {
	t.Helper()
	var ids []string
	for _, s := range []*submission{&first, &second} {
		before, _ := postfixStatus(t, pdir)
		subs := []submission{*s}
		submitAll(t, paddr, subs, 1)
		*s = subs[0]
		waitPostfix(t, pdir, before["sent"]+before["bounced"]+before["deferred"]+1)
		_, sent := postfixStatus(t, pdir)
		if len(sent[s.queue]) != 1 {
			log, _ := os.ReadFile(filepath.Join(pdir, "postfix.log"))
			t.Fatalf("Postfix did not relay %s (queue id %s):\n%s", s.c.testID(s.i), s.queue, firstMatching(string(log), s.queue, 5))
		}
		ids = append(ids, strings.TrimPrefix(sent[s.queue][0], "250 2.0.0 Ok: queued as "))
	}
	if ids[0] != ids[1] {
		t.Errorf("the shim answered the message with %q, its resend with %q: want the same id", ids[0], ids[1])
	}
	return first
}

// firstMatching returns the first n lines of s that contain sub.
func firstMatching(s, sub string, n int) string {
	var out []string
	for line := range strings.Lines(s) {
		if strings.Contains(line, sub) {
			out = append(out, strings.TrimRight(line, "\n"))
			if len(out) == n {
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

// replyCutter is a TCP proxy in front of the shim. Armed with a marker, it closes the
// connection that carried the marker instead of passing on the shim's next reply (the
// answer to the end of DATA): the client never learns that the shim took the message,
// as when a connection breaks at the worst moment.
type replyCutter struct {
	addr   string
	target string
	marker atomic.Pointer[[]byte]
	cuts   atomic.Int64
}

func newReplyCutter(t *testing.T, target string) *replyCutter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	p := &replyCutter{addr: ln.Addr().String(), target: target}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

// arm makes the proxy cut the next connection that sends marker, once.
func (p *replyCutter) arm(marker string) {
	m := []byte(marker)
	p.marker.Store(&m)
}

func (p *replyCutter) serve(client net.Conn) {
	defer client.Close()
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		return
	}
	defer server.Close()
	var seen atomic.Bool
	done := make(chan struct{})
	go func() { // client to server, watching for the marker
		defer close(done)
		var tail []byte
		buf := make([]byte, 32<<10)
		for {
			n, err := client.Read(buf)
			if n > 0 {
				if m := p.marker.Load(); m != nil && !seen.Load() {
					window := append(tail, buf[:n]...)
					if bytes.Contains(window, *m) && p.marker.CompareAndSwap(m, nil) {
						seen.Store(true)
					}
					tail = window[max(0, len(window)-len(*m)):]
				}
				if _, err := server.Write(buf[:n]); err != nil {
					return
				}
			}
			if err != nil {
				server.(*net.TCPConn).CloseWrite()
				return
			}
		}
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := server.Read(buf)
		if n > 0 {
			if seen.Load() {
				p.cuts.Add(1)
				return // the reply to the end of DATA, lost
			}
			if _, err := client.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			break
		}
	}
	<-done
}
