// Package policy decides which From addresses an API key may use and which route (backend
// and mailbox) a From address takes.
package policy

import "github.com/mailgate/mailgate/mailaddr"

// Route sends the From addresses it matches through a backend.
type Route struct {
	// Name identifies the route in responses and logs.
	Name  string
	Match mailaddr.Pattern
	// Backend is the name of a configured backend.
	Backend string
	// Fallbacks are the backends, in order, that a queued message may go through when
	// Backend is paused, throttled or failing.
	Fallbacks []string
	// Mailbox is the mailbox to send as (the Graph user or SMTP AUTH login); empty means
	// the From address itself.
	Mailbox string
	// Queued: a request that does not say how to deliver is queued, not sent at once.
	Queued bool
}

// Backends are Backend then Fallbacks.
func (r Route) Backends() []string {
	return append([]string{r.Backend}, r.Fallbacks...)
}

// Router holds ordered routes; the first that matches wins.
type Router struct {
	routes []Route
}

// NewRouter returns a router over routes, in order.
func NewRouter(routes []Route) *Router {
	return &Router{routes: append([]Route(nil), routes...)}
}

// Route returns the first route matching from.
func (r *Router) Route(from string) (Route, bool) {
	for _, rt := range r.routes {
		if rt.Match.Match(from) {
			return rt, true
		}
	}
	return Route{}, false
}

// ByName returns the route called name.
func (r *Router) ByName(name string) (Route, bool) {
	for _, rt := range r.routes {
		if rt.Name == name {
			return rt, true
		}
	}
	return Route{}, false
}

// Routes returns the routes in order.
func (r *Router) Routes() []Route { return append([]Route(nil), r.routes...) }
