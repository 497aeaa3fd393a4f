package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"net/mail"
	"net/textproto"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	mailgatev1 "github.com/mailgate/mailgate/api/mailgate/v1"
	"github.com/mailgate/mailgate/client"
	"github.com/mailgate/mailgate/mailerr"
	"github.com/mailgate/mailgate/senders"
)

// The exit statuses of `mailgate send`, from sysexits.h where one fits, so that a script
// can tell "fix the request" from "fix the credentials" from "try again later".
const (
	exitOK          = 0
	exitUsage       = 2  // a command-line mistake, as for every mailgate command
	exitDataErr     = 65 // EX_DATAERR: the request is invalid or too large
	exitNoInput     = 66 // EX_NOINPUT: a file or stdin could not be read
	exitUnavailable = 69 // EX_UNAVAILABLE: refused for good (sendmail bounces on it)
	exitSoftware    = 70 // EX_SOFTWARE: an internal error in mailgate
	exitTempFail    = 75 // EX_TEMPFAIL: try again later (sendmail defers on it)
	exitProtocol    = 76 // EX_PROTOCOL: the answer is not mailgate's
	exitNoPerm      = 77 // EX_NOPERM: no key, an unknown key, or not allowed to send
)

const sendUsage = `usage: mailgate send [flags] [< BODY]

Send one message through a mailgate service, over REST or gRPC. On success, print
"ID MESSAGE-ID STATUS" on one line (with --json, the whole response as JSON).

Connection:
  --server URL              http://HOST:PORT or https://... for REST, grpc://HOST:PORT or
                            grpcs://HOST[:PORT] for gRPC
                            (default: $MAILGATE_URL, else http://127.0.0.1:8080)
  --key KEY                 the API key (default: $MAILGATE_API_KEY). Other users can see
                            arguments in ps: prefer $MAILGATE_API_KEY or --key-file
  --key-file FILE           read the API key from FILE
  --ca-file FILE            also trust this PEM CA, for https:// and grpcs://
  --timeout DURATION        give up waiting after DURATION (default 2m30s: the service's
                            default limits.send_timeout and a margin; 0: never)

Message (the service checks it, and reports every problem at once):
  --from ADDR               the author: user@example.com or "Name <user@example.com>"
  --from-name NAME          the author's display name
  --to ADDR, --cc ADDR, --bcc ADDR, --reply-to ADDR
                            repeat the flag, or separate addresses with commas
  --subject TEXT
  --text TEXT|-             the plain-text body; - reads it from stdin
  --html HTML|-             the HTML body; - reads it from stdin
                            Without --text, --html and --raw, the text body is read from
                            stdin, unless stdin is a terminal.
  --raw FILE|-              send FILE, a complete RFC 5322 message, as it is
  --attach FILE             attach FILE; its type comes from its extension, else from its
                            content (repeatable)
  --inline FILE:CID         an inline part, for <img src="cid:CID"> in the HTML (repeatable)
  --header 'X-NAME: VALUE'  a custom header field (repeatable)
  --tag NAME=VALUE          a tag for logs and GetMessage (repeatable)
  --save-to-sent-items true|false
                            keep a copy in the mailbox's Sent Items (Graph only)
  --queued                  queue the message: mailgate answers QUEUED once it is stored,
                            and delivers it at the pace Microsoft 365 allows
  --sync                    send it now, whatever the route's delivery setting
  --send-at TIME            deliver no earlier than TIME (RFC 3339, 2026-12-24T08:00:00Z,
                            or a duration from now, such as 2h); queues the message
  --idempotency-key KEY     send the message once for KEY, however often the command
                            runs (within the service's idempotency.ttl, 24h by default).
                            auto: a key derived from the message itself, so that running
                            the same command again does not send the same message again
                            (within that time, even on purpose: add a date to the subject)
  --json                    print the response as JSON

Exit status:
   0  sent or queued
   2  usage mistake
  65  the request is invalid or too large, or its idempotency key was used before
      for another message (EX_DATAERR): fix the request
  66  a file or stdin could not be read (EX_NOINPUT)
  69  the backend refused the message permanently (EX_UNAVAILABLE): do not retry
  70  an internal error in mailgate (EX_SOFTWARE)
  75  temporary: throttled, a retry still in flight, the service or its backend
      unavailable, the server unreachable (connection refused or reset, no answer
      in time), a proxy in front of it answering 502, 503 or 504, or the outcome
      unknown (EX_TEMPFAIL): retry later, with the same --idempotency-key
  76  --server is not a mailgate endpoint for its scheme: another protocol answered
      (the gRPC port over http://, an SMTP port, TLS where none was asked for or
      the reverse), or an HTTP answer without mailgate's JSON error body (another
      web server, a wrong path, a redirect) (EX_PROTOCOL): fix --server, do not retry
  77  no API key, an unknown key, or the key may not send as --from (EX_NOPERM)
`

// sendCommand runs `mailgate send`. Its exit status says what a script should do next;
// the command has printed why by the time it returns.
func sendCommand(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	switch code := runSend(ctx, args, stdin, stdout, stderr, os.Getenv); code {
	case exitOK:
		return nil
	case exitUsage:
		return errUsage
	default:
		return exitStatus(code)
	}
}

// sendFailure is why a send did not succeed, with the exit status it gets.
type sendFailure struct {
	code   int
	kind   mailerr.Kind
	msg    string
	reason string // the service's ErrorInfo reason; "" when it gave none
	fields []mailerr.FieldViolation
	retry  time.Duration
	// mayHaveSent: the message may have gone out although the command failed.
	mayHaveSent bool
	// notMailgate: the answer did not come from a mailgate service (exit 76); msg says
	// what came instead.
	notMailgate bool
}

func localFailure(code int, format string, args ...any) *sendFailure {
	return &sendFailure{code: code, msg: fmt.Sprintf(format, args...)}
}

// failureOf is what the client's error means for the command.
func failureOf(e *mailerr.Error) *sendFailure {
	f := kindFailure(e.Kind, string(e.Reason), e.Msg)
	f.fields, f.retry = e.Fields, e.RetryAfter
	if errors.Is(e, client.ErrNotMailgate) {
		f.code, f.notMailgate = exitProtocol, true
	}
	return f
}

// kindFailure classifies a failure by mailerr's classes, the service's own: the one place
// where a kind becomes an exit status.
func kindFailure(kind mailerr.Kind, reason, msg string) *sendFailure {
	f := &sendFailure{kind: kind, reason: reason, msg: msg}
	switch kind {
	case mailerr.Invalid, mailerr.TooLarge, mailerr.KeyReused:
		f.code = exitDataErr
	case mailerr.Unauthenticated, mailerr.PermissionDenied:
		f.code = exitNoPerm
	case mailerr.Throttled, mailerr.InFlight, mailerr.Unavailable:
		f.code = exitTempFail
	case mailerr.OutcomeUnknown, mailerr.DeadlineExceeded, mailerr.Canceled:
		f.code, f.mayHaveSent = exitTempFail, true
	case mailerr.Rejected:
		f.code = exitUnavailable
	case mailerr.NotFound:
		// SendMail never answers NOT_FOUND: this is a path that is not mailgate's.
		f.code, f.notMailgate = exitProtocol, true
	default:
		f.code = exitSoftware
	}
	return f
}

// print writes the failure to stderr: the service's message, or its field violations,
// one a line; the retry delay when throttled; and what a retry must keep.
func (f *sendFailure) print(w io.Writer, idempotencyKey bool) {
	reason := ""
	if f.reason != "" {
		reason = " (" + f.reason + ")"
	}
	if len(f.fields) > 0 {
		// The message lists the same violations (the first few): show them all instead.
		headline := "request refused"
		switch f.kind {
		case mailerr.Invalid:
			headline = "invalid request"
		case mailerr.TooLarge:
			headline = "message too large"
		}
		fmt.Fprintf(w, "mailgate send: %s%s:\n", headline, reason)
		for _, v := range f.fields {
			fmt.Fprintf(w, "  %s: %s\n", v.Field, v.Description)
		}
	} else {
		fmt.Fprintf(w, "mailgate send: %s%s\n", f.msg, reason)
	}
	if f.retry > 0 {
		fmt.Fprintf(w, "mailgate send: retry after %s\n", time.Duration(math.Ceil(f.retry.Seconds()))*time.Second)
	}
	if f.mayHaveSent && !idempotencyKey {
		fmt.Fprintln(w, "mailgate send: the message may have been sent; to retry without sending it twice, use --idempotency-key (auto derives one from the message)")
	}
}

func runSend(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	o, err := parseSendFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK // the usage was asked for and printed
	}
	if err != nil {
		return exitUsage
	}
	fail := func(f *sendFailure) int {
		f.print(stderr, o.idempotencyKey != "")
		return f.code
	}
	serverFrom := "--server"
	if o.serverURL == "" {
		o.serverURL, serverFrom = getenv("MAILGATE_URL"), "MAILGATE_URL"
	}
	if o.serverURL == "" {
		o.serverURL = "http://127.0.0.1:8080"
	}
	ep, err := client.ParseEndpoint(o.serverURL)
	if err != nil {
		fmt.Fprintf(stderr, "mailgate send: %s: %v\n", serverFrom, err)
		return exitUsage
	}
	if o.caFile != "" && !ep.TLS {
		fmt.Fprintf(stderr, "mailgate send: --ca-file is for https:// and grpcs:// servers, not %s\n", o.serverURL)
		return exitUsage
	}
	key, f := sendAPIKey(o, getenv)
	if f != nil {
		return fail(f)
	}
	req, f := buildRequest(o, stdin)
	if f != nil {
		return fail(f)
	}
	if f := checkUTF8(req.ProtoReflect(), ""); f != nil {
		return fail(f)
	}
	if o.idempotencyKey == "auto" {
		req.IdempotencyKey = autoIdempotencyKey(req)
	}
	opts := []client.Option{client.WithUserAgent("mailgate-send/" + version)}
	if ep.TLS {
		roots, err := senders.RootCAs(o.caFile)
		if err != nil {
			return fail(localFailure(exitNoInput, "--ca-file: %v", err))
		}
		opts = append(opts, client.WithTLSConfig(&tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots}))
	}
	c, err := client.New(o.serverURL, key, opts...)
	if err != nil {
		return fail(localFailure(exitUsage, "--server: %v", err))
	}
	defer c.Close()

	if o.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}
	resp, err := c.SendMail(ctx, req)
	if err != nil {
		f := failureOf(mailerr.Classify(err, mailerr.Internal))
		if ctxErr := ctx.Err(); ctxErr != nil && !f.notMailgate {
			// Our own deadline or an interrupt, not the service's: say which.
			if errors.Is(ctxErr, context.DeadlineExceeded) {
				f = kindFailure(mailerr.DeadlineExceeded, "", fmt.Sprintf("no answer within --timeout %s", o.timeout))
			} else {
				f = kindFailure(mailerr.Canceled, "", "interrupted before the service answered")
			}
		}
		if f.notMailgate {
			f.msg = fmt.Sprintf("this is not a mailgate %s endpoint; check %s (%s): %s", ep.API(), serverFrom, o.serverURL, f.msg)
		}
		return fail(f)
	}

	for _, r := range resp.GetRejectedRecipients() {
		fmt.Fprintf(stderr, "mailgate send: warning: %s was refused: %s\n", r.GetAddress(), r.GetReply())
	}
	if o.json {
		b, err := protojson.MarshalOptions{EmitUnpopulated: true}.Marshal(resp)
		var out bytes.Buffer
		if err == nil {
			// protojson varies its spacing on purpose; print one stable line.
			err = json.Compact(&out, b)
		}
		if err != nil {
			return fail(localFailure(exitSoftware, "encoding the response: %v", err))
		}
		fmt.Fprintln(stdout, out.String())
	} else {
		fmt.Fprintln(stdout, resp.GetId(), resp.GetMessageId(), resp.GetStatus())
	}
	return exitOK
}

// sendOptions are the command line of `mailgate send`.
type sendOptions struct {
	serverURL, key, keyFile, caFile string
	timeout                         time.Duration

	from, fromName       string
	to, cc, bcc, replyTo []string // as given: each may hold several addresses
	subject              string
	text, html           *string
	raw                  string
	parts                []partSpec
	headers              [][2]string
	tags                 [][2]string
	saveToSentItems      *wrapperspb.BoolValue
	delivery             mailgatev1.SendMailRequest_Delivery
	sendAt               *timestamppb.Timestamp
	sendAtRelative       bool // given as a duration from now
	idempotencyKey       string
	json                 bool
}

// partSpec is an --attach FILE or --inline FILE:CID.
type partSpec struct {
	path, contentID string
}

func parseSendFlags(args []string, stderr io.Writer) (*sendOptions, error) {
	o := &sendOptions{}
	fs := newFlagSet("send", stderr)
	fs.Usage = func() { fmt.Fprint(fs.Output(), sendUsage) }
	fs.StringVar(&o.serverURL, "server", "", "")
	fs.StringVar(&o.key, "key", "", "")
	fs.StringVar(&o.keyFile, "key-file", "", "")
	fs.StringVar(&o.caFile, "ca-file", "", "")
	// limits.send_timeout's default, and the margin the shim gives it: a send the service
	// is still working on is not abandoned (an outcome the caller would not know).
	fs.DurationVar(&o.timeout, "timeout", 2*time.Minute+30*time.Second, "")
	fs.StringVar(&o.from, "from", "", "")
	fs.StringVar(&o.fromName, "from-name", "", "")
	for name, list := range map[string]*[]string{"to": &o.to, "cc": &o.cc, "bcc": &o.bcc, "reply-to": &o.replyTo} {
		fs.Func(name, "", func(v string) error { *list = append(*list, v); return nil })
	}
	fs.StringVar(&o.subject, "subject", "", "")
	fs.Func("text", "", func(v string) error { o.text = &v; return nil })
	fs.Func("html", "", func(v string) error { o.html = &v; return nil })
	fs.StringVar(&o.raw, "raw", "", "")
	fs.Func("attach", "", func(v string) error {
		if v == "" {
			return errors.New("give a file name")
		}
		o.parts = append(o.parts, partSpec{path: v})
		return nil
	})
	fs.Func("inline", "", func(v string) error {
		i := strings.LastIndexByte(v, ':')
		if i <= 0 || i == len(v)-1 {
			return errors.New("give FILE:CID, as in logo.png:logo@example.com")
		}
		o.parts = append(o.parts, partSpec{path: v[:i], contentID: v[i+1:]})
		return nil
	})
	fs.Func("header", "", func(v string) error {
		name, value, ok := strings.Cut(v, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			return errors.New("give 'X-NAME: VALUE'")
		}
		for _, h := range o.headers {
			if textproto.CanonicalMIMEHeaderKey(h[0]) == textproto.CanonicalMIMEHeaderKey(name) {
				return fmt.Errorf("%s given twice", name)
			}
		}
		o.headers = append(o.headers, [2]string{name, strings.TrimSpace(value)})
		return nil
	})
	fs.Func("tag", "", func(v string) error {
		name, value, ok := strings.Cut(v, "=")
		if !ok {
			return errors.New("give NAME=VALUE")
		}
		for _, t := range o.tags {
			if t[0] == name {
				return fmt.Errorf("%s given twice", name)
			}
		}
		o.tags = append(o.tags, [2]string{name, value})
		return nil
	})
	fs.Func("save-to-sent-items", "", func(v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return errors.New("give true or false")
		}
		o.saveToSentItems = wrapperspb.Bool(b)
		return nil
	})
	queued := fs.Bool("queued", false, "")
	sync := fs.Bool("sync", false, "")
	fs.Func("send-at", "", func(v string) error {
		if d, err := time.ParseDuration(v); err == nil {
			o.sendAt, o.sendAtRelative = timestamppb.New(time.Now().Add(d)), true
			return nil
		}
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return errors.New("give an RFC 3339 time such as 2026-12-24T08:00:00Z, or a duration such as 2h")
		}
		o.sendAt = timestamppb.New(t)
		return nil
	})
	fs.StringVar(&o.idempotencyKey, "idempotency-key", "", "")
	fs.BoolVar(&o.json, "json", false, "")
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	switch {
	case *queued && *sync:
		fmt.Fprintln(stderr, "mailgate send: give --queued or --sync, not both")
		return nil, errUsage
	case *sync && o.sendAt != nil:
		fmt.Fprintln(stderr, "mailgate send: --send-at queues the message: it cannot be --sync")
		return nil, errUsage
	case o.sendAtRelative && o.idempotencyKey == "auto":
		// The time would differ at each run, and so would the key: a rerun would send again.
		fmt.Fprintln(stderr, "mailgate send: with --idempotency-key auto, give --send-at as a time (2026-12-24T08:00:00Z), not a duration")
		return nil, errUsage
	case *queued:
		o.delivery = mailgatev1.SendMailRequest_QUEUED
	case *sync:
		o.delivery = mailgatev1.SendMailRequest_SYNC
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "mailgate send: unexpected argument %q (recipients go in --to, --cc or --bcc)\n", fs.Arg(0))
		return nil, errUsage
	}
	if o.timeout < 0 {
		fmt.Fprintln(stderr, "mailgate send: --timeout must not be negative")
		return nil, errUsage
	}
	if o.key != "" && o.keyFile != "" {
		fmt.Fprintln(stderr, "mailgate send: give --key or --key-file, not both")
		return nil, errUsage
	}
	stdinUsers := 0
	for _, v := range []*string{o.text, o.html, &o.raw} {
		if v != nil && *v == "-" {
			stdinUsers++
		}
	}
	if stdinUsers > 1 {
		fmt.Fprintln(stderr, "mailgate send: stdin can be read once: only one of --text, --html and --raw may be -")
		return nil, errUsage
	}
	return o, nil
}

// sendAPIKey finds the key: --key, --key-file, or $MAILGATE_API_KEY.
func sendAPIKey(o *sendOptions, getenv func(string) string) (string, *sendFailure) {
	key := o.key
	if o.keyFile != "" {
		b, err := os.ReadFile(o.keyFile)
		if err != nil {
			return "", localFailure(exitNoInput, "--key-file: %v", err)
		}
		key = strings.TrimSpace(string(b))
		if key == "" {
			return "", localFailure(exitNoPerm, "--key-file %s is empty", o.keyFile)
		}
	}
	if key == "" {
		key = getenv("MAILGATE_API_KEY")
	}
	if key == "" {
		return "", localFailure(exitNoPerm, "no API key: set MAILGATE_API_KEY, or give --key-file FILE")
	}
	if strings.ContainsAny(key, "\r\n") {
		return "", localFailure(exitNoPerm, "the API key holds a line break")
	}
	return key, nil
}

// buildRequest turns the command line into the one request both transports send. It
// reads the files and stdin, and leaves every rule about the message to the service.
func buildRequest(o *sendOptions, stdin io.Reader) (*mailgatev1.SendMailRequest, *sendFailure) {
	req := &mailgatev1.SendMailRequest{
		Subject:         o.subject,
		SaveToSentItems: o.saveToSentItems,
		IdempotencyKey:  o.idempotencyKey,
		Delivery:        o.delivery,
		SendAt:          o.sendAt,
	}
	if o.from != "" || o.fromName != "" {
		req.From = parseAddress(o.from)
		if o.fromName != "" {
			req.From.Name = o.fromName
		}
	}
	req.To, req.Cc, req.Bcc, req.ReplyTo = addressList(o.to), addressList(o.cc), addressList(o.bcc), addressList(o.replyTo)

	readStdin := func(what string) ([]byte, *sendFailure) {
		if stdin == nil {
			return nil, localFailure(exitNoInput, "%s: no stdin", what)
		}
		b, err := io.ReadAll(stdin)
		if err != nil {
			return nil, localFailure(exitNoInput, "%s: reading stdin: %v", what, err)
		}
		return b, nil
	}
	body := func(flag string, v *string) (string, *sendFailure) {
		if v == nil || *v != "-" {
			if v == nil {
				return "", nil
			}
			return *v, nil
		}
		b, f := readStdin(flag + " -")
		return string(b), f
	}
	var f *sendFailure
	if req.Text, f = body("--text", o.text); f != nil {
		return nil, f
	}
	if req.Html, f = body("--html", o.html); f != nil {
		return nil, f
	}
	switch {
	case o.raw == "-":
		if req.RawMime, f = readStdin("--raw -"); f != nil {
			return nil, f
		}
	case o.raw != "":
		b, err := os.ReadFile(o.raw)
		if err != nil {
			return nil, localFailure(exitNoInput, "--raw: %v", err)
		}
		req.RawMime = b
	case o.text == nil && o.html == nil && stdinIsData(stdin):
		b, f := readStdin("the text body")
		if f != nil {
			return nil, f
		}
		req.Text = string(b)
	}

	for _, p := range o.parts {
		b, err := os.ReadFile(p.path)
		if err != nil {
			flag := "--attach"
			if p.contentID != "" {
				flag = "--inline"
			}
			return nil, localFailure(exitNoInput, "%s: %v", flag, err)
		}
		ctype := mime.TypeByExtension(filepath.Ext(p.path))
		if ctype == "" {
			ctype = http.DetectContentType(b)
		}
		// The service takes a plain type/subtype and writes the parameters itself.
		ctype, _, _ = strings.Cut(ctype, ";")
		req.Attachments = append(req.Attachments, &mailgatev1.Attachment{
			Filename: filepath.Base(p.path), ContentType: ctype, Content: b, ContentId: p.contentID,
		})
	}
	if len(o.headers) > 0 {
		req.Headers = map[string]string{}
		for _, h := range o.headers {
			req.Headers[h[0]] = h[1]
		}
	}
	if len(o.tags) > 0 {
		req.Tags = map[string]string{}
		for _, t := range o.tags {
			req.Tags[t[0]] = t[1]
		}
	}
	return req, nil
}

// stdinIsData reports whether stdin holds data to read: a pipe or a file, not a
// terminal (nor /dev/null, which is a character device too).
func stdinIsData(stdin io.Reader) bool {
	if stdin == nil {
		return false
	}
	f, ok := stdin.(*os.File)
	if !ok {
		return true
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice == 0
}

// addressList parses repeated flags that may each hold a comma-separated list.
func addressList(values []string) []*mailgatev1.Address {
	var out []*mailgatev1.Address
	for _, v := range values {
		for _, s := range splitAddresses(v) {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, parseAddress(s))
			}
		}
	}
	return out
}

// splitAddresses splits at the commas outside quotes and angle brackets, so that
// `"Doe, Jane" <jane@example.com>, bob@example.com` is two addresses.
func splitAddresses(s string) []string {
	var out []string
	quoted, escaped, angle, start := false, false, 0, 0
	for i, c := range s {
		switch {
		case escaped:
			escaped = false
		case quoted && c == '\\':
			escaped = true
		case c == '"':
			quoted = !quoted
		case quoted:
		case c == '<':
			angle++
		case c == '>' && angle > 0:
			angle--
		case c == ',' && angle == 0:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// parseAddress takes "Name <user@example.com>" apart. Anything else goes to the service
// as the bare address, to be judged there.
func parseAddress(s string) *mailgatev1.Address {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "<") {
		if a, err := mail.ParseAddress(s); err == nil {
			return &mailgatev1.Address{Address: a.Address, Name: a.Name}
		}
	}
	return &mailgatev1.Address{Address: s}
}

// checkUTF8 finds a string field that is not UTF-8 (a body or subject in another
// charset): protobuf cannot carry it, so the service never could say so.
func checkUTF8(m protoreflect.Message, prefix string) *sendFailure {
	bad := func(field string) *sendFailure {
		return localFailure(exitDataErr, "%s is not UTF-8 text: convert it (iconv -t UTF-8), or send it with --attach", field)
	}
	var f *sendFailure
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		name := prefix + fd.JSONName()
		switch {
		case fd.IsMap():
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				if !utf8.ValidString(k.String()) || fd.MapValue().Kind() == protoreflect.StringKind && !utf8.ValidString(mv.String()) {
					f = bad(name)
				}
				return f == nil
			})
		case fd.IsList() && fd.Kind() == protoreflect.MessageKind:
			for i := 0; i < v.List().Len() && f == nil; i++ {
				f = checkUTF8(v.List().Get(i).Message(), fmt.Sprintf("%s[%d].", name, i))
			}
		case fd.Kind() == protoreflect.MessageKind:
			f = checkUTF8(v.Message(), name+".")
		case fd.Kind() == protoreflect.StringKind && !fd.IsList():
			if !utf8.ValidString(v.String()) {
				f = bad(name)
			}
		}
		return f == nil
	})
	return f
}

// autoIdempotencyKey derives a key from the whole request, so that running the same
// command again (a retry of a script) sends the message once.
func autoIdempotencyKey(req *mailgatev1.SendMailRequest) string {
	r := proto.Clone(req).(*mailgatev1.SendMailRequest)
	r.IdempotencyKey = ""
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(r)
	sum := sha256.Sum256(b)
	return "auto-" + hex.EncodeToString(sum[:])
}
