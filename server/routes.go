package server

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"

	"github.com/mailgate/mailgate/mailerr"
	"github.com/mailgate/mailgate/mailerr/mailstatus"
)

// endpoint is a method and a path template of the HTTP listener, such as
// GET /v1/messages/{id}.
type endpoint struct{ method, path string }

func (e endpoint) String() string { return e.method + " " + e.path }

// routes are what the HTTP listener serves, for the errors that tell a caller who got the
// path or the method wrong what to use instead.
type routes struct {
	api []endpoint // the REST API's, from the OpenAPI document generated with the gateway
	ops []endpoint // health, readiness, metrics, the OpenAPI document
}

// apiEndpoints reads the REST API's endpoints from its OpenAPI document.
func apiEndpoints(doc []byte) ([]endpoint, error) {
	var d struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		return nil, fmt.Errorf("the OpenAPI document: %w", err)
	}
	var eps []endpoint
	for path, methods := range d.Paths {
		for m := range methods {
			eps = append(eps, endpoint{strings.ToUpper(m), path})
		}
	}
	if len(eps) == 0 {
		return nil, fmt.Errorf("the OpenAPI document has no paths")
	}
	slices.SortFunc(eps, func(a, b endpoint) int {
		return cmp.Or(strings.Compare(a.path, b.path), strings.Compare(a.method, b.method))
	})
	return eps, nil
}

// allowed lists the methods of the API endpoints whose template matches path.
func (rt *routes) allowed(path string) []string {
	var methods []string
	for _, e := range rt.api {
		if templateMatches(e.path, path) && !slices.Contains(methods, e.method) {
			methods = append(methods, e.method)
		}
	}
	slices.Sort(methods)
	return methods
}

// templateMatches reports whether path fits an OpenAPI path template, in which {name}
// stands for one segment.
func templateMatches(template, path string) bool {
	ts, ps := strings.Split(template, "/"), strings.Split(path, "/")
	if len(ts) != len(ps) {
		return false
	}
	for i, t := range ts {
		if strings.HasPrefix(t, "{") && strings.HasSuffix(t, "}") {
			if ps[i] == "" {
				return false
			}
			continue
		}
		if t != ps[i] {
			return false
		}
	}
	return true
}

func joinEndpoints(eps []endpoint) string {
	s := make([]string, len(eps))
	for i, e := range eps {
		s[i] = e.String()
	}
	return strings.Join(s, ", ")
}

// notFound says what the listener does serve.
func (rt *routes) notFound(r *http.Request) string {
	msg := "no such endpoint: " + r.Method + " " + r.URL.EscapedPath()
	if strings.HasPrefix(r.URL.Path, "/v1/") {
		return msg + "; the API has " + joinEndpoints(rt.api) + " (GET /openapi.json describes them)"
	}
	return msg + "; the API lives under /v1/: " + joinEndpoints(rt.api) +
		" (GET /openapi.json describes them); the server also answers " + joinEndpoints(rt.ops)
}

// writeRoutingError answers a request no endpoint serves in the API's error body: 404
// naming what exists, or 405 (with Allow) naming the methods the path takes.
func (rt *routes) writeRoutingError(w http.ResponseWriter, r *http.Request, httpStatus int, allow []string) {
	code, reason, msg := codes.InvalidArgument, mailerr.ReasonInvalid, "malformed request path"
	switch httpStatus {
	case http.StatusNotFound:
		code, reason, msg = codes.NotFound, mailerr.ReasonNoSuchEndpoint, rt.notFound(r)
	case http.StatusMethodNotAllowed:
		code, reason = codes.Unimplemented, mailerr.ReasonMethodNotAllowed
		msg = r.Method + " is not allowed on " + r.URL.EscapedPath()
		if len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			msg += ": use " + strings.Join(allow, " or ")
		}
	}
	kind, _ := mailerr.KindOfReason(reason)
	st := mailstatus.WithCode(code, &mailerr.Error{Kind: kind, Reason: reason, Msg: msg})
	writeStatus(w, httpStatus, st)
}

// gatewayRoutingError is the gateway's routing error handler: the gateway has no route
// for the request's path, or none for its method.
func (rt *routes) gatewayRoutingError(_ context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, r *http.Request, httpStatus int) {
	var allow []string
	if httpStatus == http.StatusMethodNotAllowed {
		allow = rt.allowed(r.URL.Path)
	}
	rt.writeRoutingError(w, r, httpStatus, allow)
}

// jsonRoutingErrors answers the requests mux has no handler for (404, and 405 where the
// path takes other methods) in the API's error body instead of net/http's plain text;
// mux still decides which it is and which methods the Allow header lists.
func (rt *routes) jsonRoutingErrors(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.RequestURI == "*" { // OPTIONS *: mux's own 400
			mux.ServeHTTP(w, r)
			return
		}
		// One lookup per request: h is the route's handler (or mux's redirect to the
		// cleaned path) when pattern is set, mux's 404/405 handler when it is not.
		h, pattern := mux.Handler(r)
		if pattern != "" {
			h.ServeHTTP(w, r)
			return
		}
		h.ServeHTTP(&routingErrorWriter{ResponseWriter: w, r: r, routes: rt}, r)
	})
}

// routingErrorWriter replaces net/http's 404 and 405 answers; anything else (a redirect
// to the cleaned path) goes through.
type routingErrorWriter struct {
	http.ResponseWriter
	r        *http.Request
	routes   *routes
	replaced bool
}

func (w *routingErrorWriter) WriteHeader(code int) {
	if code != http.StatusNotFound && code != http.StatusMethodNotAllowed {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.replaced = true
	var allow []string
	if a := w.Header().Get("Allow"); a != "" {
		allow = strings.Split(a, ", ")
	}
	w.routes.writeRoutingError(w.ResponseWriter, w.r, code, allow)
}

func (w *routingErrorWriter) Write(b []byte) (int, error) {
	if w.replaced {
		return len(b), nil // net/http's text, replaced
	}
	return w.ResponseWriter.Write(b)
}
