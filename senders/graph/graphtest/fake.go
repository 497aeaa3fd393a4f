// Package graphtest is an in-process fake of the Microsoft Entra ID token endpoint and of
// the Microsoft Graph mail endpoints mailgate uses (sendMail, drafts, attachments, upload
// sessions, send). It is meant for tests in other packages: it starts two TLS servers with
// httptest, one for Entra and one for Graph, and records what it received.
//
// The behaviour follows Microsoft's documentation as summarised in the project's M365
// reference (status codes, error bodies, limits, Retry-After). Where that reference leaves
// room, the choice made here is documented on the relevant constant or function.
//
// Typical use:
//
//	f := graphtest.New(t)
//	// point azidentity at f.AuthorityURL() (DisableInstanceDiscovery: true) with
//	// graphtest.TenantID / ClientID / ClientSecret, trust f.CAFile(t) or use f.Client(),
//	// and send to f.GraphURL() + "/users/{mailbox}/sendMail".
//	f.Script("noreply@contoso.com", graphtest.Throttle("2.128"))
//	...
//	sent := f.Sent()
//
// There is no directory: every mailbox exists and every app token carries Mail.Send and
// Mail.ReadWrite. Mailbox names are matched case-insensitively.
package graphtest

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The one app registration the fake Entra knows, in the one tenant it serves.
const (
	TenantID     = "5f1c2a9e-7b3d-4c8a-9e21-0d6b4f8a3c17"
	ClientID     = "b2e4c6a8-1d3f-4a5b-8c7e-9f0a1b2c3d4e"
	ClientSecret = "gT8Q~fake.Secret_for-graphtest0123456789abc"
)

// GraphScope is the scope a Graph token must have been issued for.
const GraphScope = "https://graph.microsoft.com/.default"

// Limits enforced by the fake.
const (
	// MaxRequestBytes is the largest Graph request body accepted, measured after gzip
	// decompression ("4MB limit on the size of a request"). Larger → 413 RequestEntityTooLarge.
	MaxRequestBytes = 4 * 1024 * 1024
	// MaxRecipients is the most recipients (To+Cc+Bcc) one message may have.
	MaxRecipients = 500
	// MaxAttachmentPostBytes: POST .../attachments takes attachments "under 3 MB" (decoded
	// size). In practice the 4 MB request limit (base64 inflates by 4/3) is hit first.
	MaxAttachmentPostBytes = 3 * 1024 * 1024
	// MinUploadSessionBytes is the smallest size createUploadSession accepts. Microsoft
	// says "between 3 MB and 150 MB"; the decimal 3 MB is used so that there is no size an
	// attachment can have that fits neither a 4 MiB JSON POST (≈3,145,600 bytes at most)
	// nor an upload session. (A third-party observation puts the real minimum at 2 MiB.)
	MinUploadSessionBytes = 3 * 1000 * 1000
	// MaxUploadSessionBytes is the largest attachment an upload session accepts.
	MaxUploadSessionBytes = 150 * 1024 * 1024
	// MaxUploadSliceBytes is the largest body one upload PUT may carry.
	MaxUploadSliceBytes = 4 * 1024 * 1024
)

// Fake is a running fake Entra + Graph pair. All methods are safe for concurrent use.
type Fake struct {
	entra *httptest.Server
	graph *httptest.Server
	cert  *x509.Certificate

	clientOnce sync.Once
	client     *http.Client

	mu               sync.Mutex
	certs            []*x509.Certificate
	sendAs           map[string]map[string]bool // mailbox (lower) → from (lower)
	scripts          map[string][]Response      // mailbox (lower) → pending answers
	sent             []Sent
	requests         []Request
	inFlight         map[string]int
	maxInFlight      map[string]int
	tokens           map[string]*token
	issued           map[string]int
	latency          time.Duration
	concurrencyLimit int
	maxSendSize      int64
	drafts           map[string]*draft
	sessions         map[string]*uploadSession
}

type token struct {
	scope   string
	expired bool
}

// New starts the fake Entra and Graph TLS servers; both are closed on t.Cleanup.
func New(t testing.TB) *Fake {
	t.Helper()
	f := &Fake{
		sendAs:      map[string]map[string]bool{},
		scripts:     map[string][]Response{},
		inFlight:    map[string]int{},
		maxInFlight: map[string]int{},
		tokens:      map[string]*token{},
		issued:      map[string]int{},
		drafts:      map[string]*draft{},
		sessions:    map[string]*uploadSession{},
	}
	f.entra = httptest.NewTLSServer(http.HandlerFunc(f.serveEntra))
	f.graph = httptest.NewTLSServer(http.HandlerFunc(f.serveGraph))
	f.cert = f.graph.Certificate()
	t.Cleanup(func() {
		f.mu.Lock()
		c := f.client
		f.mu.Unlock()
		if c != nil {
			c.CloseIdleConnections()
		}
		f.graph.Close()
		f.entra.Close()
	})
	return f
}

// AuthorityURL is the Entra authority host, "https://127.0.0.1:PORT/", in the form
// azidentity's ClientOptions.Cloud.ActiveDirectoryAuthorityHost expects (trailing slash).
func (f *Fake) AuthorityURL() string { return f.entra.URL + "/" }

// TokenURL is the token endpoint of the fake tenant:
// "https://127.0.0.1:PORT/{TenantID}/oauth2/v2.0/token".
func (f *Fake) TokenURL() string { return f.entra.URL + "/" + TenantID + "/oauth2/v2.0/token" }

// GraphURL is the Graph base URL, "https://127.0.0.1:PORT/v1.0".
func (f *Fake) GraphURL() string { return f.graph.URL + "/v1.0" }

// Certificate is the TLS certificate both servers present (httptest's built-in one).
func (f *Fake) Certificate() *x509.Certificate { return f.cert }

// CAFile writes the servers' certificate as PEM into t.TempDir() and returns its path,
// for a `ca_file` setting.
func (f *Fake) CAFile(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "graphtest-ca.pem")
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.cert.Raw})
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatalf("graphtest: writing CA file: %v", err)
	}
	return p
}

// Client returns an HTTP client that trusts the servers' certificate (and nothing else).
// It does not follow redirects differently from http.DefaultClient and adds no headers.
func (f *Fake) Client() *http.Client {
	f.clientOnce.Do(func() {
		pool := x509.NewCertPool()
		pool.AddCert(f.cert)
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.Proxy = nil
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		f.mu.Lock()
		f.client = &http.Client{Transport: tr}
		f.mu.Unlock()
	})
	return f.client
}

// RegisterCertificate adds a certificate credential to the app: token requests may then
// authenticate with a client_assertion JWT signed by the certificate's (RSA) key.
func (f *Fake) RegisterCertificate(cert *x509.Certificate) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.certs = append(f.certs, cert)
}

// GrantSendAs lets mailbox send as from (Send-As). Without it a message whose from
// differs from the URL mailbox is refused with 403 ErrorSendAsDenied. The fake has no
// directory: if you address a mailbox by object id, grant that id the addresses it uses.
func (f *Fake) GrantSendAs(mailbox, from string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := key(mailbox)
	if f.sendAs[k] == nil {
		f.sendAs[k] = map[string]bool{}
	}
	f.sendAs[k][key(from)] = true
}

// Script queues canned answers for the next sendMail or messages/{id}/send requests to
// mailbox, consumed one per request in order; afterwards the fake behaves normally.
// Scripts apply after authentication and the request-size check, so a request refused
// with 401 or 413 does not consume one.
func (f *Fake) Script(mailbox string, rs ...Response) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := key(mailbox)
	f.scripts[k] = append(f.scripts[k], rs...)
}

// SetLatency delays every Graph response (including upload PUTs) by d, while the request
// counts as in flight. Useful for concurrency tests. A cancelled request stops waiting
// and is not processed.
func (f *Fake) SetLatency(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.latency = d
}

// SetConcurrencyLimit makes the fake answer like Outlook when more than n Graph requests
// for one mailbox are in flight: 429 ApplicationThrottled "Application is over its
// MailboxConcurrency limit." with Retry-After 1. Microsoft's limit is 4 per app and
// mailbox; the fake does not enforce it unless asked (n <= 0 turns it off, the default),
// because whether requests overlap in a test depends on scheduling. MaxInFlight gives a
// deterministic assertion instead.
func (f *Fake) SetConcurrencyLimit(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.concurrencyLimit = n
}

// SetMaxSendSize makes sends of messages larger than n bytes (sum of body and attachment
// sizes, or the MIME size) fail with 400 ErrorMessageSizeExceeded, like a mailbox's
// MaxSendSize (Exchange default 35 MB, at most 150 MB). 0, the default, means no limit.
func (f *Fake) SetMaxSendSize(n int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.maxSendSize = n
}

// ExpireTokens marks every token issued so far as expired: Graph then answers 401
// InvalidAuthenticationToken "Lifetime validation failed, the token is expired." until
// the client fetches a new one.
func (f *Fake) ExpireTokens() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, tk := range f.tokens {
		tk.expired = true
	}
}

// IssuedTokens returns every access token the fake Entra has issued, so that a test can
// look for them where they must not be (a log).
func (f *Fake) IssuedTokens() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]string, 0, len(f.tokens))
	for tok := range f.tokens {
		out = append(out, tok)
	}
	return out
}

// TokenScope reports the scope a token from the fake Entra was issued for, and whether
// it is one Entra issued and has not expired: what another fake resource server (an
// SMTP endpoint checking XOAUTH2) needs to know.
func (f *Fake) TokenScope(tok string) (scope string, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	tk, found := f.tokens[tok]
	if !found {
		return "", false
	}
	return tk.scope, !tk.expired
}

// Sent returns the messages accepted so far, in order.
func (f *Fake) Sent() []Sent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Sent(nil), f.sent...)
}

// Requests returns every request received on either server, in arrival order.
func (f *Fake) Requests() []Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Request, len(f.requests))
	for i, r := range f.requests {
		r.Headers = r.Headers.Clone()
		r.Query = cloneValues(r.Query)
		out[i] = r
	}
	return out
}

// MaxInFlight is the largest number of Graph requests for mailbox (including upload
// requests for its drafts) that were being served at the same time.
func (f *Fake) MaxInFlight(mailbox string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.maxInFlight[key(mailbox)]
}

// TokensIssued is how many access tokens the token endpoint issued for scope: the
// "<resource>/.default" value exactly as requested (e.g. GraphScope), without the OpenID
// scopes MSAL adds.
func (f *Fake) TokensIssued(scope string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.issued[scope]
}

// Drafts is the number of drafts in mailbox that were neither sent nor deleted.
func (f *Fake) Drafts(mailbox string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, d := range f.drafts {
		if d.mailboxKey == key(mailbox) {
			n++
		}
	}
	return n
}

// Sent is one message the fake accepted for delivery.
type Sent struct {
	Mailbox string  // the {id|upn} of the request URL, as given
	Via     string  // "json", "mime" or "draft"
	Message Message // parsed message (for "mime", parsed from the MIME)
	MIME    []byte  // the decoded MIME for Via "mime" (and for drafts created from MIME)
	// SaveToSentItems is the saveToSentItems parameter as given (nil if absent; always
	// nil for MIME and drafts, which have no such parameter).
	SaveToSentItems *bool
	// Gzip: the request body came with Content-Encoding: gzip. For drafts this is the
	// draft-creating POST.
	Gzip bool
}

// Message is a parsed message.
type Message struct {
	Subject string
	// BodyType is "text" or "html" (normalised to lower case; "text" when absent).
	BodyType string
	Body     string
	From     *Address
	To       []Address
	Cc       []Address
	Bcc      []Address
	ReplyTo  []Address
	// Headers holds internetMessageHeaders by name, as given. For MIME messages it holds
	// every top-level header field by its name as written (e.g. "Message-ID"), value
	// decoded from RFC 2047 where possible. Use Header for a case-insensitive lookup.
	Headers     map[string]string
	Attachments []Attachment
}

// Header returns the value of the header named name (case-insensitive), or "".
func (m Message) Header(name string) string {
	if v, ok := m.Headers[name]; ok {
		return v
	}
	for k, v := range m.Headers {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return ""
}

// Address is an email address with an optional display name.
type Address struct{ Address, Name string }

// Attachment is a file attachment.
type Attachment struct {
	Name        string
	ContentType string
	ContentID   string
	IsInline    bool
	Content     []byte
	// ViaUploadSession: the attachment arrived through createUploadSession + PUTs.
	ViaUploadSession bool
}

// Request is one HTTP request either server received.
type Request struct {
	Server  string // "entra" or "graph"
	Method  string
	Path    string // URL path, decoded
	Query   url.Values
	Headers http.Header // copy of the request headers (Authorization included)
	// BodyLen is the number of body bytes received on the wire (before decompression).
	BodyLen int64
	// Mailbox is the {id|upn} the request addressed (for uploads: the draft's mailbox).
	Mailbox string
	// Status is the response status code (0 if the handler has not finished or the
	// client went away first).
	Status int
	At     time.Time
}

func key(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

func cloneValues(v url.Values) url.Values {
	if v == nil {
		return nil
	}
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// exchange tracks one request from arrival to answer.
type exchange struct {
	f     *Fake
	idx   int
	body  *countingReader
	w     *statusWriter
	reqID string
}

type countingReader struct {
	r io.ReadCloser
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (c *countingReader) Close() error { return c.r.Close() }

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// begin records the request and wraps its body and writer.
func (f *Fake) begin(server string, w http.ResponseWriter, r *http.Request) (*exchange, http.ResponseWriter, *http.Request) {
	cr := &countingReader{r: r.Body}
	r.Body = cr
	sw := &statusWriter{ResponseWriter: w}
	f.mu.Lock()
	f.requests = append(f.requests, Request{
		Server:  server,
		Method:  r.Method,
		Path:    r.URL.Path,
		Query:   r.URL.Query(),
		Headers: r.Header.Clone(),
		At:      time.Now(),
	})
	idx := len(f.requests) - 1
	f.mu.Unlock()
	return &exchange{f: f, idx: idx, body: cr, w: sw, reqID: newGUID()}, sw, r
}

func (e *exchange) setMailbox(mb string) {
	e.f.mu.Lock()
	e.f.requests[e.idx].Mailbox = mb
	e.f.mu.Unlock()
}

// end drains the body (bounded) and stores the final byte count and status.
func (e *exchange) end() {
	_, _ = io.Copy(io.Discard, io.LimitReader(e.body, MaxUploadSessionBytes+MaxRequestBytes))
	e.f.mu.Lock()
	e.f.requests[e.idx].BodyLen = e.body.n
	e.f.requests[e.idx].Status = e.w.status
	e.f.mu.Unlock()
}
