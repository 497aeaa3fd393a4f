package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	mailgatev1 "github.com/mailgate/mailgate/api/mailgate/v1"
)

// WhoAmI names the key a call was made with, over gRPC and REST alike, and refuses a
// call without a known key as every other method does.
func TestWhoAmI(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	tests := []struct {
		name    string
		header  string // Authorization, or X-API-Key when it holds no space
		code    codes.Code
		who     string
		senders []string
	}{
		{"app", "Bearer " + appKey, codes.OK, "app", []string{"*@example.com"}},
		{"other", "Bearer " + otherKey, codes.OK, "other", []string{"*"}},
		{"X-API-Key", appKey, codes.OK, "app", []string{"*@example.com"}},
		{"unknown key", "Bearer mg_not-a-key", codes.Unauthenticated, "", nil},
		{"no key", "", codes.Unauthenticated, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			t.Run("gRPC", func(t *testing.T) {
				ctx := t.Context()
				if tt.header != "" {
					name, value := "x-api-key", tt.header
					if strings.Contains(tt.header, " ") {
						name = "authorization"
					}
					ctx = withMetadata(ctx, name, value)
				}
				got, err := srv.mail.WhoAmI(ctx, &mailgatev1.WhoAmIRequest{})
				if status.Code(err) != tt.code {
					t.Fatalf("WhoAmI = %v, want %v", err, tt.code)
				}
				if err != nil {
					if code, ei, _ := errorInfo(t, err); code != codes.Unauthenticated || ei.GetReason() != "UNAUTHENTICATED" {
						t.Errorf("refused with %v %s, want UNAUTHENTICATED", code, ei.GetReason())
					}
					return
				}
				if got.GetName() != tt.who || !slices.Equal(got.GetSenders(), tt.senders) {
					t.Errorf("WhoAmI = %v, want %s %v", got, tt.who, tt.senders)
				}
			})
			t.Run("REST", func(t *testing.T) {
				req, _ := http.NewRequestWithContext(t.Context(), "GET", srv.url+"/v1/whoami", nil)
				switch {
				case strings.Contains(tt.header, " "):
					req.Header.Set("Authorization", tt.header)
				case tt.header != "":
					req.Header.Set("X-API-Key", tt.header)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				if tt.code != codes.OK {
					var e restError
					if err := json.Unmarshal(b, &e); err != nil || resp.StatusCode != 401 || e.reason() != "UNAUTHENTICATED" {
						t.Errorf("GET /v1/whoami = %d %s, want 401 UNAUTHENTICATED", resp.StatusCode, b)
					}
					return
				}
				var got struct {
					Name    string   `json:"name"`
					Senders []string `json:"senders"`
				}
				if err := json.Unmarshal(b, &got); err != nil || resp.StatusCode != 200 {
					t.Fatalf("GET /v1/whoami = %d %s", resp.StatusCode, b)
				}
				if got.Name != tt.who || !slices.Equal(got.Senders, tt.senders) {
					t.Errorf("GET /v1/whoami = %s, want %s %v", b, tt.who, tt.senders)
				}
				if strings.Contains(string(b), "mg_") {
					t.Errorf("the answer holds a key: %s", b)
				}
			})
		})
	}
}

func withMetadata(ctx context.Context, name, value string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, name, value)
}

// WhoAmI is counted in /metrics as the other methods are.
func TestWhoAmIMetered(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	if _, err := srv.mail.WhoAmI(withAPIKey(appKey), &mailgatev1.WhoAmIRequest{}); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(srv.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	want := `grpc_server_handled_total{grpc_code="OK",grpc_method="WhoAmI",grpc_service="mailgate.v1.MailService",grpc_type="unary"} 1`
	if !strings.Contains(string(b), want) {
		t.Errorf("/metrics lacks %s", want)
	}
}
