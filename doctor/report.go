package doctor

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// maxNameWidth bounds the name column: a longer name (a list of skipped checks) pushes
// its own detail right, not every line's.
const maxNameWidth = 28

// WriteText writes the report for a person: per backend, one line per check (status,
// name, detail), and the fix under each failure; then a summary line.
//
//	backend submission (smtp_auth)
//	  PASS  token        for https://outlook.office365.com/.default, valid until …
//	  FAIL  certificate  for fake.smtptest, …: x509: certificate signed by unknown authority
//	        fix: the certificate is not signed by a certificate authority this machine …
func (r Report) WriteText(w io.Writer) error {
	var b strings.Builder
	var backends, failedBackends, warnings int
	for i := 0; i < len(r.Checks); {
		j := i
		width := 0
		failed := false
		for ; j < len(r.Checks) && r.Checks[j].Backend == r.Checks[i].Backend; j++ {
			if n := len(r.Checks[j].Name); n <= maxNameWidth {
				width = max(width, n)
			}
			failed = failed || r.Checks[j].Status == Fail
			if r.Checks[j].Status == Warn {
				warnings++
			}
		}
		if i > 0 {
			b.WriteString("\n")
		}
		if r.Checks[i].Backend == "" {
			fmt.Fprintf(&b, "%s (shared store)\n", r.Checks[i].Type)
		} else {
			backends++
			if failed {
				failedBackends++
			}
			fmt.Fprintf(&b, "backend %s (%s)\n", r.Checks[i].Backend, r.Checks[i].Type)
		}
		for _, c := range r.Checks[i:j] {
			line := fmt.Sprintf("  %s  %-*s  %s", c.Status, width, c.Name, c.Detail)
			b.WriteString(strings.TrimRight(line, " ") + "\n")
			if c.Fix != "" {
				fmt.Fprintf(&b, "        fix: %s\n", c.Fix)
			}
		}
		i = j
	}
	if len(r.Checks) > 0 {
		b.WriteString("\n")
	}
	switch n, skipped := r.Failed(), r.Skipped(); {
	case n > 0 && failedBackends > 0:
		fmt.Fprintf(&b, "%d of %d backends failed (%d failed %s)", failedBackends, backends, n, plural(n, "check", "checks"))
	case n > 0:
		fmt.Fprintf(&b, "%d failed %s (all %d %s passed)", n, plural(n, "check", "checks"), backends, plural(backends, "backend", "backends"))
	case skipped > 0:
		// Not "passed": a skipped check was not verified, and its line says why.
		fmt.Fprintf(&b, "no check failed in %d %s; %d %s skipped (see SKIP)", backends, plural(backends, "backend", "backends"),
			skipped, plural(skipped, "check was", "checks were"))
	default:
		fmt.Fprintf(&b, "all %d %s passed", backends, plural(backends, "backend", "backends"))
	}
	if warnings > 0 {
		fmt.Fprintf(&b, "; %d %s", warnings, plural(warnings, "warning", "warnings"))
	}
	b.WriteString("\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes the report as one JSON object: {"ok": …, "failed": …, "skipped": …,
// "checks": […]}.
func (r Report) WriteJSON(w io.Writer) error {
	checks := r.Checks
	if checks == nil {
		checks = []Check{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		OK      bool    `json:"ok"`
		Failed  int     `json:"failed"`
		Skipped int     `json:"skipped"`
		Checks  []Check `json:"checks"`
	}{r.OK(), r.Failed(), r.Skipped(), checks})
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
