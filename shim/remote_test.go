package shim_test

import (
	"context"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/mailgate/mailgate/mailaddr"
	"github.com/mailgate/mailgate/senders"
	"github.com/mailgate/mailgate/server"
	"github.com/mailgate/mailgate/server/apikey"
	"github.com/mailgate/mailgate/server/policy"
	"github.com/mailgate/mailgate/shim"
)

// upstream runs a mailgate serving gRPC only, the remote of a separate shim, and
// returns its address and backend.
func upstream(t *testing.T) (string, *outbox) {
	t.Helper()
	keys := apikey.NewKeyring()
	keys.Add(&apikey.Key{Name: "app", Senders: []mailaddr.Pattern{mailaddr.MustParsePattern("*@contoso.com")}}, apikey.Hash(appKey))
	keys.Add(&apikey.Key{Name: "scanners", Senders: []mailaddr.Pattern{mailaddr.MustParsePattern("scanner@contoso.com")}}, apikey.Hash(otherKey))
	box := &outbox{}
	srv, err := server.New(server.Options{Keys: keys, Service: server.ServiceOptions{
		Router:   policy.NewRouter([]policy.Route{{Name: "all", Match: mailaddr.MustParsePattern("*"), Backend: "out"}}),
		Backends: map[string]senders.Sender{"out": box},
		Limits:   server.Limits{MaxMessageBytes: 1 << 20, MaxRecipients: 10},
	}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, nil, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("upstream Serve: %v", err)
		}
	})
	return ln.Addr().String(), box
}

// A separate shim checks each AUTH with the remote's WhoAmI: the remote's key names
// the principal, a key it does not know or a name that is not the key's is 535, and a
// remote that does not answer is 454.
func TestRemoteAuth(t *testing.T) {
	t.Parallel()
	addr, box := upstream(t)
	// Nothing listens here: the port was free when it was closed.
	gone, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	goneAddr := gone.Addr().String()
	gone.Close()
	tests := []struct {
		name, upstream, user, key string
		code                      int // 0: AUTH succeeds
		enhanced                  string
	}{
		{"the key and its name", addr, "app", appKey, 0, ""},
		{"another key and its name", addr, "scanners", otherKey, 0, ""},
		{"an unknown key", addr, "app", "mg_not_a_key_at_all", 535, "5.7.8"},
		{"a key under another key's name", addr, "scanners", appKey, 535, "5.7.8"},
		{"a key as its own name", addr, appKey, appKey, 535, "5.7.8"},
		{"the remote does not answer", goneAddr, "app", appKey, 454, "4.7.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cc, err := grpc.NewClient(tt.upstream, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cc.Close() })
			var logs logBuffer
			f := start(t, func(o *shim.Options, _ *server.ServiceOptions) {
				o.Submitter = shim.NewRemote(cc)
				o.Logger = logs.logger()
			})
			c, err := f.dial(t, false, tt.user, tt.key)
			if tt.code != 0 {
				wantReply(t, err, tt.code, tt.enhanced)
				return
			}
			if err != nil {
				t.Fatalf("AUTH: %v", err)
			}
			from := map[string]string{"app": "app@contoso.com", "scanners": "scanner@contoso.com"}[tt.user]
			msg := strings.Replace(message, "app@contoso.com", from, 1)
			msg = strings.Replace(msg, "scan-1@", "remote-"+tt.user+"@", 1)
			if err := send(c, from, []string{"bob@fabrikam.com"}, msg); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(logs.String(), `"key":"`+tt.user+`"`) {
				t.Errorf("the shim's log does not name the key %s:\n%s", tt.user, logs.String())
			}
		})
	}
	t.Cleanup(func() {
		if n := len(box.sent()); n != 2 {
			t.Errorf("the remote's backend has %d messages, want 2", n)
		}
	})
}
