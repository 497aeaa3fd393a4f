package senders

import (
	"bytes"
	"crypto/rand"
	"io"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// A spliced message is the message go-mail writes on its own, byte for byte (but for
// the random MIME boundaries), however its writes are cut.
func TestSplicedAttachmentsMatchGoMail(t *testing.T) {
	t.Parallel()
	c := testContent()
	big := make([]byte, 200_000) // not a multiple of 57: the last line is short
	rand.Read(big)
	exact := make([]byte, spliceMin/57*57+57*3)
	rand.Read(exact)
	c.Attachments = append(c.Attachments,
		Attachment{Filename: "scan.pdf", ContentType: "application/pdf", Content: big},
		Attachment{Filename: "exact.bin", ContentType: "application/octet-stream", Content: exact})
	m := NewMessage("01jx0000000000000000000000", c, time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC))

	plain, err := m.compose(nil)
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	if _, err := plain.WriteTo(&want); err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	n, err := m.WriteTo(&got)
	if err != nil || n != int64(got.Len()) {
		t.Fatalf("WriteTo = %d, %v; wrote %d", n, err, got.Len())
	}
	if g, w := sameBoundaries(got.Bytes()), sameBoundaries(want.Bytes()); !bytes.Equal(g, w) {
		t.Fatalf("spliced message differs from go-mail's (%d and %d bytes)", len(g), len(w))
	}

	// The splicer itself, fed in pieces of every small size.
	var sp splice
	standIn := sp.standIn(big)
	var line bytes.Buffer
	(&splicer{w: &line, parts: sp.parts}).encode(standIn)
	input := "header: x\r\n\r\n" + line.String() + "--b--\r\n"
	var whole bytes.Buffer
	s := &splicer{w: &whole, parts: sp.parts}
	io.WriteString(s, input)
	s.Flush()
	for size := 1; size < 90; size++ {
		var out bytes.Buffer
		s := &splicer{w: &out, parts: sp.parts}
		for in := input; in != ""; {
			k := min(size, len(in))
			io.WriteString(s, in[:k])
			in = in[k:]
		}
		if err := s.Flush(); err != nil || !bytes.Equal(out.Bytes(), whole.Bytes()) || s.n != int64(out.Len()) {
			t.Fatalf("writes of %d bytes: output differs (%v)", size, err)
		}
	}
	if bytes.Contains(whole.Bytes(), line.Bytes()[:76]) || whole.Len() < len(big)*4/3 {
		t.Errorf("stand-in not replaced: %d bytes", whole.Len())
	}
}

var boundary = regexp.MustCompile(`[0-9a-f]{30,}`)

// sameBoundaries renames MIME boundaries (go-mail's random hex) in order of appearance.
func sameBoundaries(b []byte) []byte {
	names := map[string]string{}
	return boundary.ReplaceAllFunc(b, func(m []byte) []byte {
		if _, ok := names[string(m)]; !ok {
			names[string(m)] = "boundary" + strconv.Itoa(len(names))
		}
		return []byte(names[string(m)])
	})
}
