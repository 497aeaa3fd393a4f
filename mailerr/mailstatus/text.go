package mailstatus

import (
	"iter"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Error text quotes what callers and remote servers sent: addresses, header lines, JSON
// keys, URL paths, a server's reply. Before it leaves in a google.rpc.Status it is made
// fit to carry. Protobuf string fields must be UTF-8: gRPC drops the details of a status
// that is not, and protojson refuses to write it. And a status is no place for a whole
// oversized header line.
const (
	// MaxMessage bounds a status's message. It is longer than a detail's bound: the
	// message of an invalid request lists up to five violations.
	MaxMessage = 2 << 10
	// MaxDetail bounds each field path and description of a BadRequest, each ErrorInfo
	// metadata key and value, and a rejected recipient's reply.
	MaxDetail = 1 << 10
)

// Text returns s as an error may carry it: each byte that is not part of valid
// UTF-8 written as \xNN (so the caller can still tell which byte it was, as Go's %q
// shows it), and, past limit bytes, cut after a whole character and ended with
// "…(N bytes more)", the whole at most limit bytes. Text that is already fit comes back
// unchanged, so applying it twice is applying it once.
func Text(s string, limit int) string {
	if len(s) <= limit && utf8.ValidString(s) {
		return s
	}
	total := 0 // the length of the whole text once escaped
	for p := range pieces(s) {
		total += len(p)
	}
	keep := limit
	if total > limit {
		// The note for total is at least as long as the note for what is left out, so
		// leaving room for it keeps the whole within limit.
		keep = max(0, limit-len(moreNote(total)))
	}
	var b strings.Builder
	b.Grow(min(total, limit))
	for p := range pieces(s) {
		if b.Len()+len(p) > keep {
			break
		}
		b.WriteString(p)
	}
	if total > limit {
		b.WriteString(moreNote(total - b.Len()))
	}
	return b.String()
}

// pieces yields s a character at a time, a byte that is not part of valid UTF-8 as \xNN.
func pieces(s string) iter.Seq[string] {
	return func(yield func(string) bool) {
		for i := 0; i < len(s); {
			r, size := utf8.DecodeRuneInString(s[i:])
			p := s[i : i+size]
			if r == utf8.RuneError && size == 1 {
				const digits = "0123456789abcdef"
				p = `\x` + string([]byte{digits[s[i]>>4], digits[s[i]&0xf]})
			}
			if !yield(p) {
				return
			}
			i += size
		}
	}
}

func moreNote(n int) string { return "…(" + strconv.Itoa(n) + " bytes more)" }
