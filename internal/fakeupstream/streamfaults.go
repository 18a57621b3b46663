package fakeupstream

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/module"
)

// The faults in this file answer through Handle on an exact path (a
// module's file, or any prefix the caller names), so they are switched
// off with Handle(path, nil) or by calling them again with "off".

// TruncateMode is how SetZipTruncated cuts a zip.
type TruncateMode int

// The ways of truncating a zip.
const (
	// TruncateOff serves the real zip.
	TruncateOff TruncateMode = iota
	// TruncateAbort declares the zip's real length, sends half of it and
	// closes the connection: the client sees an unexpected EOF.
	TruncateAbort
	// TruncateShort declares and sends half of the zip, a well-formed
	// answer whose body is not a valid zip.
	TruncateShort
)

// ZipPath returns the URL path of m's zip on the proxy.
func ZipPath(m module.Version) string {
	p, _ := module.EscapePath(m.Path)
	v, _ := module.EscapeVersion(m.Version)
	return "/" + p + "/@v/" + v + ".zip"
}

// SetZipTruncated makes m's zip be served truncated as mode says.
func (s *Server) SetZipTruncated(m module.Version, mode TruncateMode) {
	mv := s.lookup(m)
	if mode == TruncateOff || mv == nil {
		s.Handle(ZipPath(m), nil)
		return
	}
	half := mv.zip[:len(mv.zip)/2]
	s.Handle(ZipPath(m), func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/zip")
		if mode == TruncateShort {
			writeBody(w, "application/zip", half)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(mv.zip)))
		w.WriteHeader(http.StatusOK)
		w.Write(half)
		abort(w)
	})
}

// abort flushes what was written and closes the connection under it.
func abort(w http.ResponseWriter) {
	http.NewResponseController(w).Flush()
	if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
		c.Close()
		return
	}
	panic(http.ErrAbortHandler)
}

// ServeHugeZip makes m's zip an answer of size bytes, generated while it
// is sent (never held in memory): with a Content-Length when declared,
// else streamed without one (chunked). The bytes start like a zip and are
// not one. size 0 restores the real zip. The handler stops when the
// client goes away.
func (s *Server) ServeHugeZip(m module.Version, size int64, declared bool) {
	if size == 0 {
		s.Handle(ZipPath(m), nil)
		return
	}
	s.Handle(ZipPath(m), func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/zip")
		if declared {
			w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		}
		w.WriteHeader(http.StatusOK)
		buf := make([]byte, 1<<20)
		copy(buf, "PK\x03\x04")
		for sent := int64(0); sent < size; {
			n := min(int64(len(buf)), size-sent)
			if _, err := w.Write(buf[:n]); err != nil || r.Context().Err() != nil {
				return
			}
			sent += n
			buf[0] = 0 // only the first chunk looks like a zip
		}
	})
}

// StallPoint is where SetStall stops sending.
type StallPoint int

// Where SetStall stops sending.
const (
	// StallBeforeHeaders sends nothing at all.
	StallBeforeHeaders StallPoint = iota
	// StallInBody sends the headers (declaring the real length) and half
	// of the body.
	StallInBody
)

// SetStall makes m's zip stall at the given point until the client gives
// up, for at most limit; limit 0 restores the real zip.
func (s *Server) SetStall(m module.Version, at StallPoint, limit time.Duration) {
	mv := s.lookup(m)
	if limit == 0 || mv == nil {
		s.Handle(ZipPath(m), nil)
		return
	}
	s.Handle(ZipPath(m), func(w http.ResponseWriter, r *http.Request) {
		if at == StallInBody {
			w.Header().Set("Content-Type", "application/zip")
			w.Header().Set("Content-Length", strconv.Itoa(len(mv.zip)))
			w.WriteHeader(http.StatusOK)
			w.Write(mv.zip[:len(mv.zip)/2])
			http.NewResponseController(w).Flush()
		}
		select {
		case <-r.Context().Done():
		case <-time.After(limit):
		}
	})
}

// SetHugeHeaders makes every request under pathPrefix be answered 200
// with response headers of about size bytes; size 0 removes the fault.
func (s *Server) SetHugeHeaders(pathPrefix string, size int) {
	if size == 0 {
		s.Handle(pathPrefix, nil)
		return
	}
	s.Handle(pathPrefix, func(w http.ResponseWriter, r *http.Request) {
		chunk := strings.Repeat("x", 4000)
		for i := 0; i*len(chunk) < size; i++ {
			w.Header().Set(fmt.Sprintf("X-Fakeupstream-Padding-%d", i), chunk)
		}
		writeBody(w, "text/plain; charset=utf-8", []byte("huge headers\n"))
	})
}
