package fakeupstream

import (
	"net/http"
	"slices"

	"golang.org/x/mod/module"
)

// faults returns the faults set for m.
func (s *Server) faults(m module.Version) (zipBad, modBad bool, infoVer string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.zipBad[m], s.modBad[m], s.infoVer[m]
}

// SetZipMismatch makes the proxy serve, for m's .zip, a different but
// valid module zip (it has one more file), so its hash no longer matches
// the checksum database; false restores the real zip.
func (s *Server) SetZipMismatch(m module.Version, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	setOrDelete(s.zipBad, m, on, on)
}

// SetModMismatch makes the proxy serve, for m's .mod, a different but
// valid go.mod file (it has one more comment line), so its hash no longer
// matches the checksum database; false restores the real one.
func (s *Server) SetModMismatch(m module.Version, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	setOrDelete(s.modBad, m, on, on)
}

// SetInfoVersion makes m's .info (and @latest, when it resolves to m)
// claim the version other; "" restores the real one.
func (s *Server) SetInfoVersion(m module.Version, other string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	setOrDelete(s.infoVer, m, other, other != "")
}

// SetStatus makes the server answer every request whose URL path starts
// with pathPrefix with the status code and a text/plain body; 0 removes
// it. The longest matching prefix wins. Handlers set with Handle take
// precedence.
func (s *Server) SetStatus(pathPrefix string, code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	setOrDelete(s.status, pathPrefix, code, code != 0)
}

// Handle makes h answer every request whose URL path starts with
// pathPrefix, before any other fault or endpoint; nil removes it. The
// longest matching prefix wins. Requests are counted before h runs.
func (s *Server) Handle(pathPrefix string, h http.HandlerFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	setOrDelete(s.handlers, pathPrefix, h, h != nil)
}

// setOrDelete sets m[k] = v if set, or deletes k.
func setOrDelete[K comparable, V any](m map[K]V, k K, v V, set bool) {
	if set {
		m[k] = v
	} else {
		delete(m, k)
	}
}

// Requests returns how many requests reached exactly the URL path p (as
// in r.URL.Path, e.g. "/example.com/lib/@v/list" or
// "/sumdb/sum.golang.org/lookup/example.com/lib@v1.2.0") since the
// start or the last ResetCounts, whatever they were answered with.
func (s *Server) Requests(p string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[p]
}

// RequestLog returns the URL paths of the requests since the start or the
// last ResetCounts, in order of arrival.
func (s *Server) RequestLog() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.log)
}

// ResetCounts forgets the requests counted so far.
func (s *Server) ResetCounts() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.counts)
	s.log = nil
}
