package server

import (
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
)

// Requests no endpoint serves, inside /v1/ or outside it, get the API's error JSON
// naming what to use instead: 404 with reason NO_SUCH_ENDPOINT, 405 with
// METHOD_NOT_ALLOWED and an Allow header.
func TestRoutingErrorsJSON(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	tests := []struct {
		method, path string
		status       int
		allow        string
		contains     []string
	}{
		{"GET", "/nope", 404, "", []string{"no such endpoint: GET /nope", "the API lives under /v1/", "POST /v1/messages:send", "GET /healthz"}},
		{"POST", "/messages:send", 404, "", []string{"the API lives under /v1/: ", "POST /v1/messages:send"}},
		{"POST", "/healthz", 405, "GET, HEAD", []string{"POST is not allowed on /healthz: use GET or HEAD"}},
		{"DELETE", "/openapi.json", 405, "GET, HEAD", []string{"DELETE is not allowed on /openapi.json"}},
		{"PUT", "/metrics", 405, "GET, HEAD", []string{"PUT is not allowed on /metrics"}},
		{"GET", "/v1/nope", 404, "", []string{"no such endpoint: GET /v1/nope", "the API has ", "GET /v1/messages/{id}"}},
		{"GET", "/v1/%ff", 404, "", []string{"no such endpoint: GET /v1/%ff"}},
		{"GET", "/v1/messages:send", 405, "POST", []string{"GET is not allowed on /v1/messages:send: use POST"}},
		{"DELETE", "/v1/messages/01jabc", 405, "GET", []string{"DELETE is not allowed on /v1/messages/01jabc: use GET"}},
		{"POST", "/v1/whoami", 405, "GET", []string{"POST is not allowed on /v1/whoami: use GET"}},
		{"GET", "/v1/whoamI", 404, "", []string{"no such endpoint: GET /v1/whoamI", "GET /v1/whoami"}},
		{"GET", "/" + strings.Repeat("x", 52<<10), 404, "", []string{"no such endpoint: GET /xxx", "bytes more)"}},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path[:min(len(tt.path), 20)], func(t *testing.T) {
			t.Parallel()
			resp, e := restCall(t, tt.method, srv.url+tt.path, nil, "")
			if resp.StatusCode != tt.status || resp.Header.Get("Allow") != tt.allow {
				t.Errorf("%d Allow %q, want %d Allow %q", resp.StatusCode, resp.Header.Get("Allow"), tt.status, tt.allow)
			}
			checkFit(t, e)
			wantCode, wantReason := codes.NotFound, "NO_SUCH_ENDPOINT"
			if tt.status == 405 {
				wantCode, wantReason = codes.Unimplemented, "METHOD_NOT_ALLOWED"
			}
			if e.code != wantCode || e.reason != wantReason {
				t.Errorf("code %v reason %q, want %v %s", e.code, e.reason, wantCode, wantReason)
			}
			for _, s := range tt.contains {
				if !strings.Contains(e.message, s) {
					t.Errorf("message %.300q does not contain %q", e.message, s)
				}
			}
		})
	}
	// What is served stays as it was.
	for _, path := range []string{"/healthz", "/openapi.json"} {
		resp, err := http.Head(srv.url + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("HEAD %s = %d", path, resp.StatusCode)
		}
	}
}
