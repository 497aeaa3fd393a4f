package senders

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"io"
)

// go-mail encodes each MIME part into a bytes.Buffer before writing it out, so a 30 MB
// attachment cost a growing 40 MB buffer (and its copies) on top of the content. To
// stream instead, compose gives go-mail a one-line stand-in for each large attachment,
// and splicer replaces that line, as the message is written, with the attachment's
// base64, encoded a few kilobytes at a time. go-mail still writes every header and
// boundary.

// spliceMin is the attachment size from which splicing pays for itself.
const spliceMin = 64 << 10

// standInLen is the raw size of a stand-in: 57 bytes are exactly one 76-character base64
// line, as go-mail writes it.
const standInLen = 57

// splice holds the stand-ins of one composition.
type splice struct {
	parts map[string][]byte // base64 stand-in line → content
}

// standIn returns random bytes to attach in content's place; their base64 line cannot
// occur elsewhere in the message.
func (s *splice) standIn(content []byte) []byte {
	b := make([]byte, standInLen)
	rand.Read(b)
	if s.parts == nil {
		s.parts = map[string][]byte{}
	}
	s.parts[base64.StdEncoding.EncodeToString(b)] = content
	return b
}

// splicer writes to w, replacing each stand-in line by its content's base64.
type splicer struct {
	w       io.Writer
	parts   map[string][]byte
	pending []byte // the start of a line not yet complete
	n       int64  // bytes written to w
	err     error
}

const b64Line = 76

func (s *splicer) Write(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	taken := len(p)
	if len(s.pending) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 && len(s.pending)+len(p) <= b64Line+2 {
			s.pending = append(s.pending, p...)
			return taken, nil
		}
		if i < 0 {
			i = len(p) - 1 // longer than a stand-in: cannot be one
		}
		s.pending = append(s.pending, p[:i+1]...)
		p = p[i+1:]
		s.line(s.pending)
		s.pending = s.pending[:0]
	}
	start := 0 // p[start:] is not written yet
	for s.err == nil {
		i := bytes.IndexByte(p[start:], '\n')
		if i < 0 {
			break
		}
		end := start + i + 1
		if i == b64Line+1 && p[start+i-1] == '\r' { // a CRLF line of 76 characters
			if content, ok := s.parts[string(p[start:start+b64Line])]; ok {
				s.write(p[:start])
				s.encode(content)
				p, start = p[end:], 0
				continue
			}
		}
		start = end
	}
	rest := p[start:]
	if len(rest) <= b64Line+1 {
		s.write(p[:start])
		s.pending = append(s.pending, rest...)
	} else {
		s.write(p) // the unfinished line is too long to be a stand-in
	}
	return taken, s.err
}

func (s *splicer) line(l []byte) {
	if len(l) == b64Line+2 && l[b64Line] == '\r' {
		if content, ok := s.parts[string(l[:b64Line])]; ok {
			s.encode(content)
			return
		}
	}
	s.write(l)
}

// Flush writes what is pending; call it after the message's last write.
func (s *splicer) Flush() error {
	if len(s.pending) > 0 {
		s.line(s.pending)
		s.pending = nil
	}
	return s.err
}

func (s *splicer) write(b []byte) {
	if s.err != nil || len(b) == 0 {
		return
	}
	n, err := s.w.Write(b)
	s.n += int64(n)
	s.err = err
}

// encode writes content as base64 in CRLF lines of 76 characters, as RFC 2045 asks,
// through a small buffer.
func (s *splicer) encode(content []byte) {
	const linesPerChunk = 256
	buf := make([]byte, 0, linesPerChunk*(b64Line+2))
	for len(content) > 0 && s.err == nil {
		buf = buf[:0]
		for range linesPerChunk {
			if len(content) == 0 {
				break
			}
			k := min(len(content), standInLen)
			buf = base64.StdEncoding.AppendEncode(buf, content[:k])
			buf = append(buf, '\r', '\n')
			content = content[k:]
		}
		s.write(buf)
	}
}
