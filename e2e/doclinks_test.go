package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// docFiles are the Markdown files whose links must resolve: the README and docs/.
func docFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	return append([]string{"../README.md"}, files...)
}

var (
	mdLink     = regexp.MustCompile(`\[[^\]]*\]\(([^)\s]+)\)`)
	codeSpan   = regexp.MustCompile("`[^`]*`")
	urlPattern = regexp.MustCompile(`^[a-z][a-z0-9+.-]*:`)
)

// mdLines returns the lines of a Markdown file, with the lines of code blocks blanked:
// fenced ones, and indented ones (four spaces after a blank line or another such line).
// Line n of the file is element n-1.
func mdLines(t *testing.T, file string) []string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	fenced, indented, prevBlank := false, false, true
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		l := sc.Text()
		blank := strings.TrimSpace(l) == ""
		switch {
		case strings.HasPrefix(strings.TrimSpace(l), "```"):
			fenced = !fenced
			out = append(out, "")
		case fenced:
			out = append(out, "")
		case strings.HasPrefix(l, "    ") && (prevBlank || indented):
			indented = true
			out = append(out, "")
		case blank:
			out = append(out, "")
		default:
			indented = false
			out = append(out, l)
		}
		prevBlank = blank
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// anchors returns the fragment ids GitHub gives the headings of a Markdown file: the
// heading's text in lower case, without code marks and punctuation, spaces as '-', and
// "-1", "-2" ... after ids already taken.
func anchors(t *testing.T, file string) map[string]bool {
	t.Helper()
	ids := map[string]bool{}
	for _, l := range mdLines(t, file) {
		level := len(l) - len(strings.TrimLeft(l, "#"))
		if level == 0 || level > 6 || !strings.HasPrefix(l[level:], " ") {
			continue
		}
		text := strings.TrimSpace(l[level:])
		text = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`).ReplaceAllString(text, "$1")
		var b strings.Builder
		for _, r := range strings.ToLower(text) {
			switch {
			case unicode.IsLetter(r), unicode.IsDigit(r), r == '-', r == '_':
				b.WriteRune(r)
			case r == ' ':
				b.WriteByte('-')
			}
		}
		id := b.String()
		for n, base := 1, id; ids[id]; n++ {
			id = base + "-" + strconv.Itoa(n)
		}
		ids[id] = true
	}
	return ids
}

// Every relative link in README.md and docs/*.md names a file or directory of the
// repository, and every #fragment a heading of the Markdown file it points into.
func TestDocLinks(t *testing.T) {
	t.Parallel()
	cache := map[string]map[string]bool{}
	checked := 0
	for _, file := range docFiles(t) {
		for i, l := range mdLines(t, file) {
			for _, m := range mdLink.FindAllStringSubmatch(codeSpan.ReplaceAllString(l, ""), -1) {
				target := m[1]
				if urlPattern.MatchString(target) {
					continue // http:, https:, mailto:
				}
				checked++
				where := fmt.Sprintf("%s:%d: %s", filepath.Base(file), i+1, target)
				path, frag, _ := strings.Cut(target, "#")
				dest := file
				if path != "" {
					dest = filepath.Join(filepath.Dir(file), path)
					if _, err := os.Stat(dest); err != nil {
						t.Errorf("%s: %v", where, err)
						continue
					}
				}
				if frag == "" {
					continue
				}
				if !strings.HasSuffix(dest, ".md") {
					t.Errorf("%s: a #fragment into a file that is not Markdown", where)
					continue
				}
				if cache[dest] == nil {
					cache[dest] = anchors(t, dest)
				}
				if !cache[dest][frag] {
					t.Errorf("%s: %s has no heading with the id %q", where, filepath.Base(dest), frag)
				}
			}
		}
	}
	if checked < 100 {
		t.Fatalf("checked only %d relative links; the parser or the docs changed", checked)
	}
}

// The package map of docs/architecture.md is what `go list` says: each of mailgate's
// packages (but the generated api/ and the test-only ones here) with the packages of the
// module it imports.
func TestArchitecturePackageMap(t *testing.T) {
	t.Parallel()
	const module = "github.com/mailgate/mailgate/"
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}|{{join .Imports " "}}`, "../...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	want := map[string][]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, imports, _ := strings.Cut(l, "|")
		pkg = strings.TrimPrefix(pkg, module)
		if strings.HasPrefix(pkg, "api/") || slices.Contains([]string{"e2e", "bench", "deploy", "tools"}, strings.Split(pkg, "/")[0]) {
			continue
		}
		var own []string
		for _, imp := range strings.Fields(imports) {
			if strings.HasPrefix(imp, module) {
				own = append(own, strings.TrimPrefix(imp, module))
			}
		}
		want[pkg] = own
	}
	section := mdSection(t, "../docs/architecture.md", "## Package map")
	got := map[string][]string{}
	for _, l := range strings.Split(section, "\n") {
		if !strings.HasPrefix(l, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(l, "|"), "|")
		if len(cells) != 2 {
			t.Fatalf("docs/architecture.md: package map row %q: want two cells", l)
		}
		var imports []string
		for _, f := range strings.Fields(cells[1]) {
			imports = append(imports, strings.Trim(f, "`"))
		}
		for _, pkg := range strings.Split(cells[0], ",") {
			got[strings.Trim(strings.TrimSpace(pkg), "`")] = imports
		}
	}
	for pkg, imports := range want {
		doc, ok := got[pkg]
		switch {
		case !ok:
			t.Errorf("docs/architecture.md: the package map has no row for %s (imports %v)", pkg, imports)
		case !slices.Equal(doc, imports):
			t.Errorf("docs/architecture.md: %s imports %v, go list says %v", pkg, doc, imports)
		}
	}
	for pkg := range got {
		if _, ok := want[pkg]; !ok {
			t.Errorf("docs/architecture.md: the package map lists %s, which go list does not", pkg)
		}
	}
}

var docPointer = regexp.MustCompile(`\bdocs/([a-z0-9-]+\.md)(#[a-z0-9_-]+)?`)

// The pointers into docs/ in the Go code's comments ("docs/api.md#errors") name a file
// and a heading that exist.
func TestCodeDocPointers(t *testing.T) {
	t.Parallel()
	cache := map[string]map[string]bool{}
	checked := 0
	err := filepath.WalkDir("..", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", ".cache", "bin", "third_party", "api", "node_modules":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for i, l := range strings.Split(string(b), "\n") {
			for _, m := range docPointer.FindAllStringSubmatch(l, -1) {
				checked++
				doc := filepath.Join("..", "docs", m[1])
				if _, err := os.Stat(doc); err != nil {
					t.Errorf("%s:%d: %s: %v", path, i+1, m[0], err)
					continue
				}
				if m[2] == "" {
					continue
				}
				if cache[doc] == nil {
					cache[doc] = anchors(t, doc)
				}
				if !cache[doc][m[2][1:]] {
					t.Errorf("%s:%d: %s: docs/%s has no heading with the id %q", path, i+1, m[0], m[1], m[2][1:])
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 10 {
		t.Fatalf("found only %d pointers into docs/ in the code; the pattern or the code changed", checked)
	}
}
