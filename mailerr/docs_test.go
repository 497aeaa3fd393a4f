package mailerr

import (
	"bufio"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"google.golang.org/grpc/codes"
)

// errorTableFiles are where the API's error table lives: docs/api.md.
var errorTableFiles = []string{"../docs/api.md"}

const errorTableHeader = "| HTTP | gRPC code | SMTP reply (shim) | reason | meaning |"

// docTable returns the rows of the first table in one of files whose header line is
// header, each row split into its cells, and the file it was found in.
func docTable(t *testing.T, files []string, header string) (rows [][]string, file string) {
	t.Helper()
	for _, file := range files {
		f, err := os.Open(file)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		in := false
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			switch {
			case line == header:
				in = true
			case in && strings.HasPrefix(line, "|---"):
			case in && strings.HasPrefix(line, "|"):
				cells := strings.Split(strings.Trim(line, "|"), "|")
				for i := range cells {
					cells[i] = strings.TrimSpace(cells[i])
				}
				rows = append(rows, cells)
			case in:
				return rows, file
			}
		}
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
		if in {
			return rows, file
		}
	}
	t.Fatalf("no file of %v holds the table %q", files, header)
	return nil, ""
}

var backticked = regexp.MustCompile("`([^`]*)`")

// codeName is a gRPC code as the docs write it: INVALID_ARGUMENT.
func codeName(c codes.Code) string {
	var b strings.Builder
	for i, r := range c.String() {
		if i > 0 && unicode.IsUpper(r) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	return b.String()
}

// wire is what the docs say a reason comes with.
type wire struct {
	grpc codes.Code
	http int
	smtp string // "" when the shim never gives it
}

// wireOf is the table's answer for a reason.
func wireOf(t *testing.T, r Reason) wire {
	if r == ReasonMethodNotAllowed {
		// No kind has UNIMPLEMENTED: the routing errors set it themselves.
		return wire{codes.Unimplemented, http.StatusMethodNotAllowed, ""}
	}
	k, ok := KindOfReason(r)
	if !ok {
		t.Errorf("the docs list the reason %s, which mailerr does not know", r)
		return wire{}
	}
	w := wire{k.GRPCCode(), k.HTTPStatus(), k.SMTPReply().String()}
	switch {
	case r == ReasonNoSuchEndpoint:
		w.smtp = "" // the REST listener's alone
	case k == Rejected:
		w.smtp = "the remote 5xx reply"
	}
	return w
}

// allReasons is every reason mailgate emits.
func allReasons() []Reason {
	var rs []Reason
	for k := range table {
		rs = append(rs, table[k].reason)
	}
	for _, row := range reasonTable {
		rs = append(rs, row.Reason)
	}
	return append(rs, ReasonMethodNotAllowed)
}

// TestDocsErrorTable checks the API's error table against mailerr's: every reason
// listed, each with its kind's gRPC code, HTTP status and SMTP reply.
func TestDocsErrorTable(t *testing.T) {
	t.Parallel()
	rows, file := docTable(t, errorTableFiles, errorTableHeader)
	listed := map[Reason]bool{}
	for _, row := range rows {
		if len(row) != 5 {
			t.Errorf("%s: row %q has %d cells, want 5", file, row, len(row))
			continue
		}
		var reasons []Reason
		for _, m := range backticked.FindAllStringSubmatch(row[3], -1) {
			reasons = append(reasons, Reason(m[1]))
		}
		grpcs := strings.Split(row[1], ", ")
		var https []string
		for _, h := range strings.Split(row[0], ", ") {
			h, _, _ = strings.Cut(h, " ") // "429 + `Retry-After`"
			https = append(https, h)
		}
		for i, r := range reasons {
			listed[r] = true
			want := wireOf(t, r)
			pick := func(list []string) string {
				if len(list) == len(reasons) {
					return list[i]
				}
				return list[0]
			}
			if got := pick(grpcs); got != codeName(want.grpc) {
				t.Errorf("%s: %s has gRPC code %s, mailerr says %s", file, r, got, codeName(want.grpc))
			}
			if got := pick(https); got != strconv.Itoa(want.http) {
				t.Errorf("%s: %s has HTTP %s, mailerr says %d", file, r, got, want.http)
			}
			if got := row[2]; got != want.smtp {
				t.Errorf("%s: %s has SMTP reply %q, mailerr says %q", file, r, got, want.smtp)
			}
		}
	}
	for _, r := range allReasons() {
		if !listed[r] {
			t.Errorf("%s: the error table does not list %s", file, r)
		}
	}
}

// TestDocsTroubleshootingTable checks docs/troubleshooting.md's reasons: "401 ·
// `UNAUTHENTICATED` · `535 5.7.8`" must be the reason's HTTP status, gRPC code and SMTP
// reply.
func TestDocsTroubleshootingTable(t *testing.T) {
	t.Parallel()
	rows, file := docTable(t, []string{"../docs/troubleshooting.md"}, "| reason | mailgate returns | when | what to do |")
	for _, row := range rows {
		m := backticked.FindStringSubmatch(row[0])
		if m == nil || len(row) < 2 {
			t.Errorf("%s: row %q names no reason", file, row)
			continue
		}
		r := Reason(m[1])
		want := wireOf(t, r)
		parts := strings.Split(row[1], " · ")
		http, _, _ := strings.Cut(parts[0], " ")
		var code, smtp string
		if len(parts) > 1 {
			code = strings.Trim(strings.Fields(parts[1])[0], "`,")
		}
		if len(parts) > 2 {
			smtp, _, _ = strings.Cut(parts[2], ",")
			smtp = strings.Trim(smtp, "`")
		}
		if http != strconv.Itoa(want.http) || code != codeName(want.grpc) || smtp != want.smtp && want.smtp != "the remote 5xx reply" {
			t.Errorf("%s: %s returns %q, mailerr says %d · %s · %s", file, r, row[1], want.http, codeName(want.grpc), want.smtp)
		}
	}
}
