package client_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	mailgatev1 "github.com/mailgate/mailgate/api/mailgate/v1"
	"github.com/mailgate/mailgate/client"
	"github.com/mailgate/mailgate/mailaddr"
	"github.com/mailgate/mailgate/mailerr"
	"github.com/mailgate/mailgate/senders"
	"github.com/mailgate/mailgate/senders/discard"
	"github.com/mailgate/mailgate/server"
	"github.com/mailgate/mailgate/server/apikey"
	"github.com/mailgate/mailgate/server/policy"
)

const testKey = "mg_client_test_key"

// startMailgate serves a mailgate whose one route discards every message, and returns
// its REST and gRPC endpoints.
func startMailgate() (restURL, grpcURL string, stop func(), err error) {
	keys := apikey.NewKeyring()
	keys.Add(&apikey.Key{Name: "app", Senders: []mailaddr.Pattern{mailaddr.MustParsePattern("*@example.com")}}, apikey.Hash(testKey))
	srv, err := server.New(server.Options{
		Keys: keys,
		Service: server.ServiceOptions{
			Router:   policy.NewRouter([]policy.Route{{Name: "all", Match: mailaddr.MustParsePattern("*"), Backend: "discard"}}),
			Backends: map[string]senders.Sender{"discard": discard.New(0)},
			Limits:   server.Limits{MaxMessageBytes: 1 << 20, MaxRecipients: 10},
		},
	})
	if err != nil {
		return "", "", nil, err
	}
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", "", nil, err
	}
	grpcLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		httpLn.Close()
		return "", "", nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, httpLn, grpcLn) }()
	stop = func() {
		cancel()
		<-done
	}
	return "http://" + httpLn.Addr().String(), "grpc://" + grpcLn.Addr().String(), stop, nil
}

func message(from string, to ...string) *mailgatev1.SendMailRequest {
	req := &mailgatev1.SendMailRequest{From: &mailgatev1.Address{Address: from}, Subject: "Test", Text: "Hello."}
	for _, a := range to {
		req.To = append(req.To, &mailgatev1.Address{Address: a})
	}
	return req
}

// TestClient runs the same calls over both transports: the answers, and the errors
// decoded into *mailerr.Error with their kind, reason and field violations.
func TestClient(t *testing.T) {
	t.Parallel()
	restURL, grpcURL, stop, err := startMailgate()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	for _, endpoint := range []string{restURL, grpcURL} {
		t.Run(endpoint[:4], func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			c, err := client.New(endpoint, testKey)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()

			resp, err := c.SendMail(ctx, message("app@example.com", "bob@example.net"))
			if err != nil || resp.GetId() == "" {
				t.Fatalf("SendMail = %v, %v", resp, err)
			}
			got, err := c.GetMessage(ctx, resp.GetId())
			if err != nil || got.GetId() != resp.GetId() || got.GetRoute() != "all" {
				t.Errorf("GetMessage = %v, %v; want the message sent, on route all", got, err)
			}

			for _, tt := range []struct {
				name   string
				call   func() error
				kind   mailerr.Kind
				reason mailerr.Reason
				field  string
			}{
				{"sender not allowed", func() error { _, err := c.SendMail(ctx, message("app@example.org", "bob@example.net")); return err },
					mailerr.PermissionDenied, mailerr.ReasonSenderNotAllowed, ""},
				{"invalid", func() error { _, err := c.SendMail(ctx, message("app@example.com", "not an address")); return err },
					mailerr.Invalid, mailerr.ReasonInvalid, "to[0].address"},
				{"no such message", func() error { _, err := c.GetMessage(ctx, "00000000000000000000000000"); return err },
					mailerr.NotFound, mailerr.ReasonNotFound, ""},
			} {
				err := tt.call()
				var e *mailerr.Error
				if !errors.As(err, &e) || e.Kind != tt.kind || e.Reason != tt.reason || e.Msg == "" {
					t.Errorf("%s: %#v, want a *mailerr.Error %v %s with a message", tt.name, err, tt.kind, tt.reason)
					continue
				}
				if tt.field != "" && (len(e.Fields) == 0 || e.Fields[0].Field != tt.field) {
					t.Errorf("%s: field violations %v, want %s first", tt.name, e.Fields, tt.field)
				}
				if errors.Is(err, client.ErrNotMailgate) {
					t.Errorf("%s: %v is mailgate's, not ErrNotMailgate", tt.name, err)
				}
			}

			bad, err := client.New(endpoint, "mg_unknown")
			if err != nil {
				t.Fatal(err)
			}
			defer bad.Close()
			_, err = bad.SendMail(ctx, message("app@example.com", "bob@example.net"))
			if e := (*mailerr.Error)(nil); !errors.As(err, &e) || e.Kind != mailerr.Unauthenticated {
				t.Errorf("unknown key: %v, want Unauthenticated", err)
			}
		})
	}
}

// TestClientNotMailgate: answers from something else than mailgate wrap ErrNotMailgate;
// a refused connection is Unavailable, and is not.
func TestClientNotMailgate(t *testing.T) {
	t.Parallel()
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "not here", http.StatusNotFound)
	}))
	t.Cleanup(web.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	for _, tt := range []struct {
		endpoint    string
		notMailgate bool
		kind        mailerr.Kind
	}{
		{web.URL, true, mailerr.Internal},
		{"grpc://" + web.Listener.Addr().String(), true, mailerr.Internal},
		{"http://" + closed, false, mailerr.Unavailable},
		{"grpc://" + closed, false, mailerr.Unavailable},
	} {
		c, err := client.New(tt.endpoint, testKey)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.SendMail(context.Background(), message("app@example.com", "bob@example.net"))
		c.Close()
		var e *mailerr.Error
		if !errors.As(err, &e) || e.Kind != tt.kind || errors.Is(err, client.ErrNotMailgate) != tt.notMailgate {
			t.Errorf("%s: %v, want kind %v, ErrNotMailgate %v", tt.endpoint, err, tt.kind, tt.notMailgate)
		}
	}
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ endpoint, key string }{
		{"localhost:8080", testKey},
		{"grpc://localhost", testKey},
		{"ftp://localhost:21", testKey},
		{"grpc://localhost:9090/v1", testKey},
		{"http://localhost:8080", ""},
		{"http://localhost:8080", "a\nb"},
	} {
		if c, err := client.New(tt.endpoint, tt.key); err == nil {
			c.Close()
			t.Errorf("New(%q, %q) succeeded", tt.endpoint, tt.key)
		}
	}
}
