package webhook_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/svixtest"
	"github.com/mailgate/mailgate/webhook"
)

// The example of the Standard Webhooks and svix documentation, which svix's own sign
// reproduces (checked with svix 2.5.0).
const (
	exampleSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	exampleID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	exampleTS     = 1614265330
	exampleBody   = `{"test": 2432232314}`
	exampleSig    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func mustSecret(t *testing.T, s string) webhook.Secret {
	t.Helper()
	sec, err := webhook.ParseSecret(s)
	if err != nil {
		t.Fatal(err)
	}
	return sec
}

func TestSignMatchesTheStandardsExample(t *testing.T) {
	t.Parallel()
	got := webhook.Sign(exampleID, time.Unix(exampleTS, 0), []byte(exampleBody), mustSecret(t, exampleSecret))
	if got != exampleSig {
		t.Errorf("Sign = %q, want %q", got, exampleSig)
	}
}

func TestParseSecret(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, err string
	}{
		{exampleSecret, ""},
		{"  " + exampleSecret + "\n", ""},
		{webhook.NewSecret(), ""},
		{"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", `starts with "whsec_"`},
		{"whsec_not*base64", "not base64"},
		{"whsec_c2hvcnQ=", "24 to 64 bytes; this one holds 5"},
	} {
		_, err := webhook.ParseSecret(tc.in)
		if (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ParseSecret(%q) = %v, want an error with %q", tc.in, err, tc.err)
		}
	}
	if _, err := webhook.ParseSecrets(exampleSecret + "\nwhsec_bad"); err == nil || !strings.Contains(err.Error(), "secret 2 of 2") {
		t.Errorf("ParseSecrets with a bad second secret: %v", err)
	}
	if _, err := webhook.ParseSecrets(" \n"); err == nil {
		t.Error("ParseSecrets of white space: no error")
	}
}

func TestVerify(t *testing.T) {
	t.Parallel()
	sec := mustSecret(t, exampleSecret)
	other := mustSecret(t, webhook.NewSecret())
	now := time.Unix(exampleTS, 0)
	body := []byte(exampleBody)
	headers := func(mod func(http.Header)) http.Header {
		h := http.Header{}
		webhook.SetHeaders(h, exampleID, now, body, sec)
		if mod != nil {
			mod(h)
		}
		return h
	}
	for _, tc := range []struct {
		name    string
		h       http.Header
		body    string
		now     time.Time
		secrets []webhook.Secret
		want    error
	}{
		{"good", headers(nil), exampleBody, now, []webhook.Secret{sec}, nil},
		{"one of several secrets", headers(nil), exampleBody, now, []webhook.Secret{other, sec}, nil},
		{"rotation: several signatures", headers(func(h http.Header) {
			h.Set(webhook.HeaderSignature, webhook.Sign(exampleID, now, body, other, sec))
		}), exampleBody, now, []webhook.Secret{sec}, nil},
		{"body changed", headers(nil), exampleBody + " ", now, []webhook.Secret{sec}, webhook.ErrSignature},
		{"id changed", headers(func(h http.Header) { h.Set(webhook.HeaderID, "msg_other") }), exampleBody, now, []webhook.Secret{sec}, webhook.ErrSignature},
		{"wrong secret", headers(nil), exampleBody, now, []webhook.Secret{other}, webhook.ErrSignature},
		{"old", headers(nil), exampleBody, now.Add(6 * time.Minute), []webhook.Secret{sec}, webhook.ErrTimestamp},
		{"from the future", headers(nil), exampleBody, now.Add(-6 * time.Minute), []webhook.Secret{sec}, webhook.ErrTimestamp},
		{"no signature", headers(func(h http.Header) { h.Del(webhook.HeaderSignature) }), exampleBody, now, []webhook.Secret{sec}, webhook.ErrMissingHeaders},
		{"v2 only", headers(func(h http.Header) {
			h.Set(webhook.HeaderSignature, strings.Replace(h.Get(webhook.HeaderSignature), "v1,", "v2,", 1))
		}), exampleBody, now, []webhook.Secret{sec}, webhook.ErrSignature},
	} {
		err := webhook.Verify(tc.h, []byte(tc.body), tc.now, 5*time.Minute, tc.secrets...)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: Verify = %v, want %v", tc.name, err, tc.want)
		}
	}
}

// receiver is an HTTPS endpoint that records what it receives and answers with status.
type receiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	got    []svixtest.Notification
	status int
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{status: 204}
	r.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.got = append(r.got, svixtest.Notification{ID: req.Header.Get(webhook.HeaderID),
			Timestamp: req.Header.Get(webhook.HeaderTimestamp), Signature: req.Header.Get(webhook.HeaderSignature), Body: body})
		status := r.status
		r.mu.Unlock()
		if status == 429 {
			w.Header().Set("Retry-After", "7")
		}
		w.WriteHeader(status)
		io.WriteString(w, "answer body")
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) endpoint(t *testing.T, secrets ...webhook.Secret) webhook.Endpoint {
	u, _ := url.Parse(r.srv.URL + "/hooks/mailgate")
	return webhook.Endpoint{Name: "test", URL: u, Secrets: secrets, AllowPrivate: true,
		RootCAs: r.srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
}

// What the client posts is accepted by an independent verifier, svix, including during
// a rotation (signed with the new and the old secret, verified with either); a changed
// body or a wrong secret is refused by it.
func TestSvixAcceptsPostedNotifications(t *testing.T) {
	t.Parallel()
	r := newReceiver(t)
	current, old := webhook.NewSecret(), webhook.NewSecret()
	c := webhook.NewClient(r.endpoint(t, mustSecret(t, current), mustSecret(t, old)), nil)
	bodies := []string{`{"type":"message.sent","data":{"id":"01abc"}}`, `{"type":"webhook.test","data":{"text":"é ✓"}}`}
	for i, b := range bodies {
		if err := c.Post(context.Background(), "evt_"+string(rune('a'+i)), []byte(b)); err != nil {
			t.Fatalf("Post: %v", err)
		}
	}
	r.mu.Lock()
	got := append([]svixtest.Notification(nil), r.got...)
	r.mu.Unlock()
	if len(got) != 2 || string(got[0].Body) != bodies[0] || got[0].ID != "evt_a" || strings.Count(got[0].Signature, "v1,") != 2 {
		t.Fatalf("received %+v", got)
	}
	for name, secret := range map[string]string{"current": current, "old": old} {
		for i, err := range svixtest.Verify(t, secret, got...) {
			if err != nil {
				t.Errorf("svix refused notification %d with the %s secret: %v", i, name, err)
			}
		}
	}
	tampered := got[0]
	tampered.Body = []byte(strings.Replace(bodies[0], "sent", "failed", 1))
	errs := svixtest.Verify(t, current, tampered)
	errs = append(errs, svixtest.Verify(t, webhook.NewSecret(), got[0])...)
	for i, err := range errs {
		if err == nil {
			t.Errorf("svix accepted bad notification %d", i)
		}
	}
}

func TestPostOutcomes(t *testing.T) {
	t.Parallel()
	r := newReceiver(t)
	c := webhook.NewClient(r.endpoint(t, mustSecret(t, webhook.NewSecret())), nil)
	for _, tc := range []struct {
		status int
		check  func(error) bool
	}{
		{200, func(err error) bool { return err == nil }},
		{410, func(err error) bool { return errors.Is(err, webhook.ErrGone) }},
		{429, func(err error) bool {
			var se *webhook.StatusError
			return errors.As(err, &se) && se.Status == 429 && se.RetryAfter == 7*time.Second && se.Body == "answer body"
		}},
		{500, func(err error) bool {
			var se *webhook.StatusError
			return errors.As(err, &se) && se.Status == 500 && strings.Contains(err.Error(), "500 Internal Server Error")
		}},
	} {
		r.mu.Lock()
		r.status = tc.status
		r.mu.Unlock()
		if err := c.Post(context.Background(), "evt", []byte(`{}`)); !tc.check(err) {
			t.Errorf("answer %d: Post = %v", tc.status, err)
		}
	}
}

// Off by default: a loopback endpoint is refused when connecting, whatever its name.
func TestPrivateAddressesRefused(t *testing.T) {
	t.Parallel()
	r := newReceiver(t)
	ep := r.endpoint(t, mustSecret(t, webhook.NewSecret()))
	ep.AllowPrivate = false
	ep.URL.Host = strings.Replace(ep.URL.Host, "127.0.0.1", "localhost", 1)
	err := webhook.NewClient(ep, nil).Post(context.Background(), "evt", []byte(`{}`))
	if !errors.Is(err, webhook.ErrPrivateAddress) {
		t.Errorf("Post to %s = %v, want ErrPrivateAddress", ep.URL, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.got) != 0 {
		t.Errorf("the receiver got %d requests", len(r.got))
	}
	for addr, public := range map[string]bool{
		"8.8.8.8": true, "2606:4700::1111": true, "127.0.0.1": false, "10.1.2.3": false, "172.16.0.1": false,
		"192.168.1.1": false, "169.254.169.254": false, "100.64.0.1": false, "::1": false, "fd00::1": false,
		"fe80::1": false, "::ffff:127.0.0.1": false, "0.0.0.0": false, "64:ff9b::a00:1": false, "224.0.0.1": false,
	} {
		if got := webhook.Public(netip.MustParseAddr(addr)); got != public {
			t.Errorf("Public(%s) = %v, want %v", addr, got, public)
		}
	}
}

// A redirect to another host is refused; one on the same host is followed.
func TestRedirects(t *testing.T) {
	t.Parallel()
	other := newReceiver(t)
	r := newReceiver(t)
	mux := http.NewServeMux()
	mux.HandleFunc("/away", func(w http.ResponseWriter, req *http.Request) {
		http.Redirect(w, req, other.srv.URL+"/hooks", http.StatusTemporaryRedirect)
	})
	mux.HandleFunc("/here", func(w http.ResponseWriter, req *http.Request) {
		http.Redirect(w, req, "/hooks/mailgate", http.StatusPermanentRedirect)
	})
	mux.Handle("/hooks/mailgate", r.srv.Config.Handler)
	r.srv.Config.Handler = mux
	ep := r.endpoint(t, mustSecret(t, webhook.NewSecret()))
	c := func(path string) error {
		e := ep
		u := *ep.URL
		u.Path = path
		e.URL = &u
		return webhook.NewClient(e, nil).Post(context.Background(), "evt", []byte(`{}`))
	}
	if err := c("/away"); !errors.Is(err, webhook.ErrRedirect) {
		t.Errorf("redirect to another host: %v, want ErrRedirect", err)
	}
	if err := c("/here"); err != nil {
		t.Errorf("redirect on the same host: %v", err)
	}
	other.mu.Lock()
	defer other.mu.Unlock()
	if len(other.got) != 0 {
		t.Errorf("the other host got %d requests", len(other.got))
	}
}
