package main

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/mailgate/mailgate/config"
	"github.com/mailgate/mailgate/senders"
	"github.com/mailgate/mailgate/server/apikey"
)

func keys(args []string, stdout, stderr io.Writer) error {
	if len(args) != 2 || args[0] != "new" {
		fmt.Fprintln(stderr, "usage: mailgate keys new NAME")
		return errUsage
	}
	name := args[1]
	if !config.ValidKeyName(name) {
		fmt.Fprintf(stderr, "keys new: %q: a key name is up to 64 letters, digits, '.', '_' or '-'\n", name)
		return errUsage
	}
	key, hash := apikey.Generate()
	fmt.Fprintf(stdout, `# API key %q. It is shown only this once: give it to the client now.
%s

# Add this to the keys: list of the configuration (only the hash is stored):
  - name: %s
    hash: %s
    senders: ["*"]   # narrow this to the From addresses %s may use
`, name, key, name, hash, name)
	return nil
}

func checkConfig(args []string, stdout, stderr io.Writer) error {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: mailgate check-config FILE")
		return errUsage
	}
	cfg, err := config.Load(args[0])
	if err != nil {
		fmt.Fprintf(stderr, "%s: invalid configuration:\n", args[0])
		for _, e := range flatten(err) {
			fmt.Fprintln(stderr, "  "+e.Error())
		}
		return errors.New("configuration check failed")
	}
	fmt.Fprintf(stdout, "%s: OK\n\n", args[0])
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROUTE\tMATCH\tBACKEND\tTYPE\tSENDS AS")
	for i, r := range cfg.Routes {
		mailbox := r.Mailbox
		sc, scoped := cfg.Backends[r.Backend].Settings.(senders.Scoped)
		switch {
		case scoped && sc.Scope() == senders.ScopeBackend:
			mailbox = "(no mailbox: relays)"
		case mailbox == "":
			mailbox = "(the From address)"
		}
		fmt.Fprintf(tw, "%d. %s\t%s\t%s\t%s\t%s\n", i+1, r.RouteName(), r.Match, r.Backend, cfg.Backends[r.Backend].Type, mailbox)
	}
	tw.Flush()
	fmt.Fprintln(stdout)
	tw = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tMAY SEND AS")
	for _, k := range cfg.Keys {
		fmt.Fprintf(tw, "%s\t%s\n", k.Name, strings.Join(k.Senders, ", "))
	}
	tw.Flush()
	var unused []string
	for name := range cfg.Backends {
		used := false
		for _, r := range cfg.Routes {
			used = used || r.Backend == name
		}
		if !used {
			unused = append(unused, name)
		}
	}
	if len(unused) > 0 {
		sort.Strings(unused)
		fmt.Fprintf(stdout, "\nnote: no route uses backend(s) %s\n", strings.Join(unused, ", "))
	}
	fmt.Fprintln(stdout, "\nRoutes are tried in order; the first whose match fits the From address wins.")
	return nil
}

// flatten lists the errors joined in err.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}
