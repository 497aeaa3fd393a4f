package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mailgate/mailgate/config"
	"github.com/mailgate/mailgate/internal/app"
	"github.com/mailgate/mailgate/mailaddr"
	"github.com/mailgate/mailgate/server/queue"
	"github.com/mailgate/mailgate/server/queue/queuectl"
)

const queueUsage = `usage: mailgate queue COMMAND [--config FILE] [flags] [ID...]

Commands:
  list    list messages (--status QUEUED,FAILED... --key NAME --recipient ADDRESS --limit N --json)
  show    show messages with their attempts (--json)
  retry   send FAILED, UNKNOWN or CANCELED messages again, from now, for queue.max_lifetime
  cancel  cancel QUEUED messages
  purge   delete messages: the IDs given, or every message of --status (and --key)

It works on the configured queue: Redis when the configuration has one; else the local
queue in queue.dir, through the running mailgate serve when there is one. Without
--config, the embedded default's (./spool, the development key's messages).
`

func queueCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			fmt.Fprint(stdout, queueUsage)
			return nil
		}
		fmt.Fprint(stderr, queueUsage)
		return errUsage
	}
	sub := args[0]
	switch sub {
	case "list", "show", "retry", "cancel", "purge":
	default:
		fmt.Fprintf(stderr, "mailgate queue: unknown command %q\n\n%s", sub, queueUsage)
		return errUsage
	}
	fs := newFlagSet("queue "+sub, stderr)
	fs.Usage = func() { fmt.Fprint(stderr, queueUsage) }
	configPath := fs.String("config", "", "the configuration `FILE` (default: the embedded default)")
	status := fs.String("status", "", "only messages in these statuses, comma-separated (list, purge)")
	keyName := fs.String("key", "", "only messages of this API key (list, purge)")
	recipient := fs.String("recipient", "", "only messages to this `ADDRESS`, in To, Cc or Bcc (list)")
	limit := fs.Int("limit", 100, "at most this many messages (list)")
	asJSON := fs.Bool("json", false, "print JSON, one object per line (list, show)")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	ids := fs.Args()
	states, err := parseStates(*status)
	if err != nil {
		fmt.Fprintf(stderr, "mailgate queue %s: --status: %v\n", sub, err)
		return errUsage
	}
	switch {
	case (sub == "show" || sub == "retry" || sub == "cancel") && len(ids) == 0:
		fmt.Fprintf(stderr, "mailgate queue %s: give one or more message ids\n", sub)
		return errUsage
	case sub == "purge" && len(ids) == 0 && len(states) == 0:
		fmt.Fprintln(stderr, "mailgate queue purge: give message ids, or --status (e.g. --status FAILED) to purge every message in it")
		return errUsage
	case sub == "purge" && len(ids) > 0 && (len(states) > 0 || *keyName != ""):
		fmt.Fprintln(stderr, "mailgate queue purge: give ids or --status/--key, not both")
		return errUsage
	case *recipient != "" && sub != "list":
		fmt.Fprintf(stderr, "mailgate queue %s: --recipient is for list\n", sub)
		return errUsage
	case *recipient != "" && !validAddress(*recipient):
		fmt.Fprintf(stderr, "mailgate queue list: --recipient %q: not an address\n", *recipient)
		return errUsage
	case sub == "list" && len(ids) > 0:
		fmt.Fprintln(stderr, "mailgate queue list: takes no ids (mailgate queue show ID shows one)")
		return errUsage
	}

	cfg := app.Default()
	cfg.Keys = []config.Key{{Name: devKeyName}}
	if *configPath != "" {
		if cfg, err = loadConfig(*configPath, stderr, "configuration invalid"); err != nil {
			return err
		}
	}
	quietRedis()
	ops, closeOps, err := app.OpenQueueOps(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeOps()

	keys := []string{*keyName}
	if *keyName == "" {
		keys = keys[:0]
		for _, k := range cfg.Keys {
			keys = append(keys, k.Name)
		}
	}
	switch sub {
	case "list":
		items, err := listItems(ctx, ops, queue.ListQuery{States: states, Recipient: mailaddr.Key(*recipient)}, keys, *limit)
		if err != nil {
			return err
		}
		printItems(stdout, items, *asJSON)
		return nil
	case "show":
		return eachID(ids, stderr, func(id string) error {
			it, err := ops.Get(ctx, id)
			if err != nil {
				return err
			}
			showItem(stdout, it, *asJSON)
			return nil
		})
	case "retry":
		now := time.Now()
		return eachID(ids, stderr, func(id string) error {
			if err := ops.Requeue(ctx, id, now, now.Add(cfg.Queue.MaxLifetime)); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s QUEUED\n", id)
			return nil
		})
	case "cancel":
		return eachID(ids, stderr, func(id string) error {
			if err := ops.Cancel(ctx, id); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s CANCELED\n", id)
			return nil
		})
	}
	// purge
	if len(ids) == 0 {
		items, err := listItems(ctx, ops, queue.ListQuery{States: states}, keys, 0)
		if err != nil {
			return err
		}
		for _, it := range items {
			ids = append(ids, it.ID)
		}
	}
	n := 0
	err = eachID(ids, stderr, func(id string) error {
		if err := ops.Delete(ctx, id); err != nil {
			return err
		}
		n++
		return nil
	})
	fmt.Fprintf(stdout, "purged %d message(s)\n", n)
	return err
}

// eachID runs f for every id, reporting each failure on stderr; it fails if any did.
func eachID(ids []string, stderr io.Writer, f func(string) error) error {
	failed := 0
	for _, id := range ids {
		if err := f(id); err != nil {
			failed++
			switch {
			case errors.Is(err, queue.ErrNotFound):
				fmt.Fprintf(stderr, "%s: no such message in the queue\n", id)
			case errors.Is(err, queue.ErrNotCancelable):
				fmt.Fprintf(stderr, "%s: %v (only a QUEUED message can be canceled)\n", id, err)
			case errors.Is(err, queue.ErrNotRequeueable):
				fmt.Fprintf(stderr, "%s: %v (only FAILED, UNKNOWN or CANCELED messages are retried)\n", id, err)
			case errors.Is(err, queue.ErrLeased):
				fmt.Fprintf(stderr, "%s: %v (a worker is sending it; try again when it is done)\n", id, err)
			default:
				fmt.Fprintf(stderr, "%s: %v\n", id, err)
			}
		}
	}
	if failed > 0 {
		return exitStatus(1)
	}
	return nil
}

// listItems lists the messages of keys in states, newest first per key; limit 0 is all.
// listItems lists the items of each key that pass q (its Key, Limit and PageToken are
// set here), at most limit in all (0: no limit).
func listItems(ctx context.Context, ops queuectl.Ops, q queue.ListQuery, keys []string, limit int) ([]*queue.Item, error) {
	var out []*queue.Item
	for _, k := range keys {
		token := ""
		for {
			page := 1000
			if limit > 0 {
				page = min(page, limit-len(out))
				if page <= 0 {
					return out, nil
				}
			}
			q.Key, q.Limit, q.PageToken = k, page, token
			items, next, err := ops.List(ctx, q)
			if err != nil {
				return nil, fmt.Errorf("listing the messages of key %s: %w", k, err)
			}
			out = append(out, items...)
			if next == "" {
				break
			}
			token = next
		}
	}
	return out, nil
}

func parseStates(s string) ([]queue.State, error) {
	if s == "" {
		return nil, nil
	}
	var out []queue.State
	for _, name := range strings.Split(s, ",") {
		st, ok := stateByName[strings.ToUpper(strings.TrimSpace(name))]
		if !ok {
			return nil, fmt.Errorf("%q is not QUEUED, SENDING, SENT, FAILED, CANCELED or UNKNOWN", name)
		}
		out = append(out, st)
	}
	return out, nil
}

var stateByName = map[string]queue.State{
	"QUEUED": queue.Queued, "SENDING": queue.Sending, "SENT": queue.Sent,
	"FAILED": queue.Failed, "CANCELED": queue.Canceled, "UNKNOWN": queue.Unknown,
}

// itemJSON is what --json prints: the item without its body.
type itemJSON struct {
	ID        string            `json:"id"`
	Key       string            `json:"key"`
	Status    string            `json:"status"`
	MessageID string            `json:"messageId"`
	From      string            `json:"from"`
	Route     string            `json:"route"`
	Group     string            `json:"pacedBy"`
	Backends  []string          `json:"backends"`
	Accepted  time.Time         `json:"acceptTime"`
	NotBefore *time.Time        `json:"notBefore,omitempty"`
	Deadline  *time.Time        `json:"deadline,omitempty"`
	Finished  *time.Time        `json:"finishTime,omitempty"`
	Tags      map[string]string `json:"tags,omitempty"`
	Attempts  []attemptJSON     `json:"attempts,omitempty"`
	LastError string            `json:"lastError,omitempty"`
}

type attemptJSON struct {
	Time    time.Time `json:"time"`
	Backend string    `json:"backend"`
	Outcome string    `json:"outcome"`
	Reply   string    `json:"reply,omitempty"`
	Error   string    `json:"error,omitempty"`
}

func toJSON(it *queue.Item, attempts bool) itemJSON {
	opt := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		return &t
	}
	j := itemJSON{ID: it.ID, Key: it.Key, Status: it.State.String(), MessageID: it.MessageID, From: it.From,
		Route: it.Route, Group: it.Group.String(), Backends: it.Backends, Accepted: it.Accepted,
		NotBefore: opt(it.NotBefore), Deadline: opt(it.Deadline), Finished: opt(it.Finished), Tags: it.Tags,
		LastError: it.LastError}
	if attempts {
		for _, a := range it.Attempts {
			j.Attempts = append(j.Attempts, attemptJSON(a))
		}
	}
	return j
}

func printItems(w io.Writer, items []*queue.Item, asJSON bool) {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		for _, it := range items {
			enc.Encode(toJSON(it, false))
		}
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATUS\tKEY\tFROM\tACCEPTED\tATTEMPTS\tNEXT/FINISHED\tLAST ERROR")
	for _, it := range items {
		when := ""
		switch {
		case !it.Finished.IsZero():
			when = it.Finished.UTC().Format(time.RFC3339)
		case it.State == queue.Queued:
			when = later(it.NotBefore, it.Accepted).UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", it.ID, it.State, it.Key, it.From,
			it.Accepted.UTC().Format(time.RFC3339), len(it.Attempts), when, clip(it.LastError, 60))
	}
	tw.Flush()
	fmt.Fprintf(w, "%d message(s)\n", len(items))
}

func showItem(w io.Writer, it *queue.Item, asJSON bool) {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		enc.Encode(toJSON(it, true))
		return
	}
	j := toJSON(it, true)
	fmt.Fprintf(w, "id:         %s\nstatus:     %s\nkey:        %s\nmessage-id: %s\nfrom:       %s\nroute:      %s (backends %s)\npaced by:   %s\naccepted:   %s\n",
		j.ID, j.Status, j.Key, j.MessageID, j.From, j.Route, strings.Join(j.Backends, ", "), j.Group, j.Accepted.UTC().Format(time.RFC3339))
	if it.State == queue.Queued {
		fmt.Fprintf(w, "next:       %s\n", later(it.NotBefore, it.Accepted).UTC().Format(time.RFC3339))
	}
	if !it.Deadline.IsZero() && !it.State.Terminal() {
		fmt.Fprintf(w, "gives up:   %s\n", it.Deadline.UTC().Format(time.RFC3339))
	}
	if !it.Finished.IsZero() {
		fmt.Fprintf(w, "finished:   %s\n", it.Finished.UTC().Format(time.RFC3339))
	}
	if it.LastError != "" {
		fmt.Fprintf(w, "last error: %s\n", it.LastError)
	}
	for i, a := range it.Attempts {
		fmt.Fprintf(w, "attempt %d:  %s %s %s", i+1, a.Time.UTC().Format(time.RFC3339), a.Backend, a.Outcome)
		if a.Reply != "" {
			fmt.Fprintf(w, " (%s)", a.Reply)
		}
		if a.Error != "" {
			fmt.Fprintf(w, ": %s", a.Error)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func validAddress(s string) bool {
	_, err := mailaddr.Parse(s)
	return err == nil
}
