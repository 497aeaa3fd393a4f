// Package queuectl lets an operator's command reach a local queue that a running
// server holds. The local queue is one bbolt file that only one process may open, so
// `mailgate serve` answers these operations on a unix socket next to it, and `mailgate
// queue` sends them there (as postqueue asks Postfix's showq): Handler is the server's
// side, Dial the command's. Who may use the socket is who may open the folder, the same
// people who could open the file.
package queuectl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/mailgate/mailgate/server/queue"
)

// Ops are the operations `mailgate queue` runs on a queue. A queue.Queue has them, and so
// has the client Dial returns. Their errors are the queue's: errors.Is matches
// queue.ErrNotFound, queue.ErrInvalid and the sentinels a *queue.StateError wraps.
type Ops interface {
	List(ctx context.Context, q queue.ListQuery) ([]*queue.Item, string, error)
	Get(ctx context.Context, id string) (*queue.Item, error)
	Requeue(ctx context.Context, id string, at, deadline time.Time) error
	Cancel(ctx context.Context, id string) error
	Delete(ctx context.Context, id string) error
}

var _ Ops = queue.Queue(nil)

// SocketName is the socket's file name in queue.dir.
const SocketName = "control.sock"

// Handler serves ops. Items come without their bodies.
func Handler(ops Ops) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /items", func(w http.ResponseWriter, r *http.Request) {
		var q queue.ListQuery
		if err := json.Unmarshal([]byte(r.URL.Query().Get("q")), &q); err != nil {
			reply(w, nil, fmt.Errorf("%w: query: %v", queue.ErrInvalid, err))
			return
		}
		items, next, err := ops.List(r.Context(), q)
		reply(w, listReply{Items: items, Next: next}, err)
	})
	mux.HandleFunc("GET /items/{id}", func(w http.ResponseWriter, r *http.Request) {
		it, err := ops.Get(r.Context(), r.PathValue("id"))
		if it != nil {
			it.Body = nil
		}
		reply(w, it, err)
	})
	mux.HandleFunc("POST /items/{id}/requeue", func(w http.ResponseWriter, r *http.Request) {
		var a requeueArgs
		if err := json.NewDecoder(r.Body).Decode(&a); err != nil {
			reply(w, nil, fmt.Errorf("%w: %v", queue.ErrInvalid, err))
			return
		}
		reply(w, nil, ops.Requeue(r.Context(), r.PathValue("id"), a.At, a.Deadline))
	})
	mux.HandleFunc("POST /items/{id}/cancel", func(w http.ResponseWriter, r *http.Request) {
		reply(w, nil, ops.Cancel(r.Context(), r.PathValue("id")))
	})
	mux.HandleFunc("DELETE /items/{id}", func(w http.ResponseWriter, r *http.Request) {
		reply(w, nil, ops.Delete(r.Context(), r.PathValue("id")))
	})
	return mux
}

type listReply struct {
	Items []*queue.Item
	Next  string
}

type requeueArgs struct{ At, Deadline time.Time }

// errorReply carries a queue error across the socket: the sentinel by name, the
// state of a *queue.StateError, and the text.
type errorReply struct {
	Sentinel string
	ID       string
	State    queue.State
	Text     string
}

var sentinels = map[string]error{
	"invalid":       queue.ErrInvalid,
	"not_found":     queue.ErrNotFound,
	"stale":         queue.ErrStaleLease,
	"not_cancel":    queue.ErrNotCancelable,
	"not_requeue":   queue.ErrNotRequeueable,
	"leased":        queue.ErrLeased,
	"exists":        queue.ErrExists,
	"empty":         queue.ErrEmpty,
	"storage_error": nil,
}

func reply(w http.ResponseWriter, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		e := errorReply{Sentinel: "storage_error", Text: err.Error()}
		for name, s := range sentinels {
			if s != nil && errors.Is(err, s) {
				e.Sentinel = name
			}
		}
		if se, ok := errors.AsType[*queue.StateError](err); ok {
			e.ID, e.State, e.Text = se.ID, se.State, se.Err.Error()
		}
		w.WriteHeader(http.StatusConflict)
		json.NewEncoder(w).Encode(e)
		return
	}
	json.NewEncoder(w).Encode(v)
}

// Dial returns Ops that a server on the socket at path carries out. It connects only
// when an operation runs; Ping says whether anyone answers.
func Dial(path string) *Client {
	return &Client{hc: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}}
}

// Client is the command's side of the socket.
type Client struct{ hc *http.Client }

var _ Ops = (*Client)(nil)

// Ping reports whether a server answers on the socket.
func (c *Client) Ping(ctx context.Context) error {
	_, err := c.Get(ctx, "-")
	if errors.Is(err, queue.ErrNotFound) || errors.Is(err, queue.ErrInvalid) {
		return nil
	}
	return err
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://queue"+path, rd)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusConflict {
		var e errorReply
		if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
			return fmt.Errorf("queue control socket: unreadable error: %w", err)
		}
		s := sentinels[e.Sentinel]
		switch {
		case e.State != 0 && s != nil:
			return &queue.StateError{ID: e.ID, State: e.State, Err: s}
		case s != nil:
			return fmt.Errorf("%w: %s", s, strings.TrimPrefix(e.Text, s.Error()+": "))
		}
		return errors.New(e.Text)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("queue control socket: HTTP %s", resp.Status)
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// List implements Ops.
func (c *Client) List(ctx context.Context, q queue.ListQuery) ([]*queue.Item, string, error) {
	b, err := json.Marshal(q)
	if err != nil {
		return nil, "", err
	}
	var r listReply
	err = c.do(ctx, http.MethodGet, "/items?q="+url.QueryEscape(string(b)), nil, &r)
	return r.Items, r.Next, err
}

// Get implements Ops; the item comes without its body.
func (c *Client) Get(ctx context.Context, id string) (*queue.Item, error) {
	var it queue.Item
	if err := c.do(ctx, http.MethodGet, "/items/"+url.PathEscape(id), nil, &it); err != nil {
		return nil, err
	}
	return &it, nil
}

// Requeue implements Ops.
func (c *Client) Requeue(ctx context.Context, id string, at, deadline time.Time) error {
	return c.do(ctx, http.MethodPost, "/items/"+url.PathEscape(id)+"/requeue", requeueArgs{at, deadline}, nil)
}

// Cancel implements Ops.
func (c *Client) Cancel(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodPost, "/items/"+url.PathEscape(id)+"/cancel", nil, nil)
}

// Delete implements Ops.
func (c *Client) Delete(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/items/"+url.PathEscape(id), nil, nil)
}

// Serve answers ops on a unix socket at path until ctx is done. A socket file left by a
// process that died is replaced; one that a live server answers on is an error.
func Serve(ctx context.Context, path string, ops Ops) (stop func() error, err error) {
	if c := Dial(path); c.Ping(ctx) == nil {
		return nil, fmt.Errorf("%s: another mailgate answers on it", path)
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: Handler(ops), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(ctx)
	}, nil
}

func removeStale(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
