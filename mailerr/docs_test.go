package mailerr

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
)

// docRow is one reason as docs/api.md's error table gives it.
type docRow struct {
	line   int
	reason string
	grpc   string // e.g. "INVALID_ARGUMENT"
	http   int
	smtp   string // "554 5.6.0", or "" where the table gives none or the remote server's
}

var (
	docReason = regexp.MustCompile("`([A-Z_]+)`")
	docHTTP   = regexp.MustCompile(`\b[1-5][0-9][0-9]\b`)
	docSMTP   = regexp.MustCompile(`^[245][0-9][0-9] [245]\.[0-9]{1,3}\.[0-9]{1,3}$`)
)

// apiErrorTable reads the rows of the table in docs/api.md's "## Errors" section:
// HTTP | gRPC code | SMTP reply | reason | meaning. A row may list several reasons; when it
// lists as many gRPC codes (and HTTP statuses), they pair up in order.
func apiErrorTable(t *testing.T) []docRow {
	t.Helper()
	b, err := os.ReadFile("../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	var rows []docRow
	in := false
	for i, l := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(l, "## "):
			in = l == "## Errors"
			continue
		case !in || !strings.HasPrefix(l, "| ") || strings.HasPrefix(l, "| HTTP |"):
			continue
		}
		cells := strings.Split(strings.Trim(l, "|"), "|")
		if len(cells) != 5 {
			t.Fatalf("docs/api.md:%d: want 5 cells (HTTP, gRPC code, SMTP reply, reason, meaning), got %d", i+1, len(cells))
		}
		statuses := docHTTP.FindAllString(cells[0], -1)
		grpcCodes := strings.Split(strings.TrimSpace(cells[1]), ", ")
		smtp := strings.TrimSpace(cells[2])
		switch {
		case docSMTP.MatchString(smtp):
		case smtp == "", smtp == "the remote 5xx reply":
			smtp = "" // the shim answers with the remote server's reply, or never
		default:
			t.Fatalf("docs/api.md:%d: SMTP reply %q: want a code such as 554 5.6.0", i+1, smtp)
		}
		reasons := docReason.FindAllStringSubmatch(cells[3], -1)
		if len(reasons) == 0 || len(statuses) != len(grpcCodes) || (len(grpcCodes) != 1 && len(grpcCodes) != len(reasons)) {
			t.Fatalf("docs/api.md:%d: %d reasons, %d gRPC codes and %d HTTP statuses do not pair up", i+1, len(reasons), len(grpcCodes), len(statuses))
		}
		for j, r := range reasons {
			k := min(j, len(grpcCodes)-1)
			status, _ := strconv.Atoi(statuses[k])
			rows = append(rows, docRow{line: i + 1, reason: r[1], grpc: grpcCodes[k], http: status, smtp: smtp})
		}
	}
	if len(rows) == 0 {
		t.Fatal(`docs/api.md: no rows in the "## Errors" table`)
	}
	return rows
}

// codeName is a gRPC code as the docs spell it: INVALID_ARGUMENT for InvalidArgument.
func codeName(c codes.Code) string {
	var b strings.Builder
	s := c.String()
	for i, r := range s {
		if i > 0 && r >= 'A' && r <= 'Z' && s[i-1] >= 'a' && s[i-1] <= 'z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String())
}

// docs/api.md's error table is this package's: every reason mailgate emits is in it, with
// its kind's gRPC code, HTTP status and SMTP reply, and it lists no reason, and no code,
// that mailerr does not have. The one exception is a reason whose gRPC code no kind has
// (METHOD_NOT_ALLOWED, UNIMPLEMENTED: the REST listener's answer to a wrong method).
func TestAPIDocErrorTable(t *testing.T) {
	t.Parallel()
	kindCodes := map[string]bool{}
	for k := range table {
		kindCodes[codeName(Kind(k).GRPCCode())] = true
	}
	documented := map[string]bool{}
	for _, row := range apiErrorTable(t) {
		documented[row.reason] = true
		kind, ok := reasons[row.reason]
		if !ok {
			if kindCodes[row.grpc] {
				t.Errorf("docs/api.md:%d: reason %s is not one mailerr knows", row.line, row.reason)
			}
			continue
		}
		if got := codeName(kind.GRPCCode()); got != row.grpc {
			t.Errorf("docs/api.md:%d: %s: gRPC code %s, mailerr has %s", row.line, row.reason, row.grpc, got)
		}
		if got := kind.HTTPStatus(); got != row.http {
			t.Errorf("docs/api.md:%d: %s: HTTP %d, mailerr has %d", row.line, row.reason, row.http, got)
		}
		if got := kind.SMTPReply().String(); row.smtp != "" && got != row.smtp {
			t.Errorf("docs/api.md:%d: %s: SMTP reply %s, mailerr has %s", row.line, row.reason, row.smtp, got)
		}
		if KindOf(kind.GRPCCode(), row.reason) != kind {
			t.Errorf("docs/api.md:%d: %s: KindOf does not recover its kind %v", row.line, row.reason, kind)
		}
	}
	for reason := range reasons {
		if !documented[reason] {
			t.Errorf("docs/api.md's error table does not list the reason %s", reason)
		}
	}
}
