package fakeupstream

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
)

// ServeHTTP answers the GOPROXY protocol and the checksum database at
// /sumdb/<name>/. Every request is counted first. Then a handler set with
// Handle answers it if one matches its path, else a status set with
// SetStatus does, else the fake proxy or checksum database does.
// Only GET and HEAD are served (405 otherwise). Malformed paths get 400
// "bad request: ...", unknown modules and versions 404 "not found: ...",
// both text/plain.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	h, code := s.count(p)
	switch {
	case h != nil:
		h(w, r)
	case code != 0:
		writeText(w, code, fmt.Sprintf("fakeupstream: injected status %d for %s", code, p))
	case r.Method != http.MethodGet && r.Method != http.MethodHead:
		w.Header().Set("Allow", "GET, HEAD")
		writeText(w, http.StatusMethodNotAllowed, "method not allowed: "+r.Method)
	case strings.HasPrefix(p, "/sumdb/"):
		s.serveSumDB(w, r)
	default:
		s.serveProxy(w, r)
	}
}

// count records a request for path p and returns the override handler
// and the injected status that apply to it.
func (s *Server) count(p string) (http.HandlerFunc, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts[p]++
	s.log = append(s.log, p)
	h, _ := longestPrefix(s.handlers, p)
	code, _ := longestPrefix(s.status, p)
	return h, code
}

// longestPrefix returns the value of the longest key of m that is a
// prefix of p.
func longestPrefix[V any](m map[string]V, p string) (V, bool) {
	var best V
	n, found := -1, false
	for prefix, v := range m {
		if strings.HasPrefix(p, prefix) && len(prefix) > n {
			best, n, found = v, len(prefix), true
		}
	}
	return best, found
}

// serveSumDB serves /sumdb/<name>/supported and hands the other paths
// under /sumdb/<name>/ to the sumdb.Server.
func (s *Server) serveSumDB(w http.ResponseWriter, r *http.Request) {
	prefix := "/sumdb/" + s.name
	rest, ok := strings.CutPrefix(r.URL.Path, prefix)
	switch {
	case !ok || !strings.HasPrefix(rest, "/"):
		writeText(w, http.StatusNotFound, "not found: no checksum database at "+r.URL.Path)
	case rest == "/supported":
		writeText(w, http.StatusOK, "")
	default:
		r2 := r.Clone(r.Context())
		r2.URL.Path, r2.URL.RawPath = rest, ""
		s.sumdb.ServeHTTP(w, r2)
	}
}

// proxyRequest is a parsed GOPROXY request.
type proxyRequest struct {
	mod  module.Version // Version is empty for list and latest
	kind string         // "list", "latest", ".info", ".mod" or ".zip"
}

// parseProxyPath parses /<escaped path>/@v/list, /<escaped path>/@latest
// and /<escaped path>/@v/<escaped version>.{info,mod,zip}. The error
// says why the path is not one; notFound tells a path of another shape
// (404) from a malformed path or version (400).
func parseProxyPath(p string) (req proxyRequest, notFound bool, err error) {
	p = strings.TrimPrefix(p, "/")
	escPath, file := "", ""
	if before, ok := strings.CutSuffix(p, "/@latest"); ok {
		escPath, req.kind = before, "latest"
	} else if i := strings.LastIndex(p, "/@v/"); i >= 0 {
		escPath, file = p[:i], p[i+len("/@v/"):]
	} else {
		return req, true, fmt.Errorf("not a module proxy path")
	}
	if req.mod.Path, err = module.UnescapePath(escPath); err != nil {
		return req, false, err
	}
	if req.kind != "" {
		return req, false, nil
	}
	if file == "list" {
		req.kind = "list"
		return req, false, nil
	}
	ext := path.Ext(file)
	if ext != ".info" && ext != ".mod" && ext != ".zip" {
		return req, true, fmt.Errorf("unknown file %q", file)
	}
	req.kind = ext
	if req.mod.Version, err = module.UnescapeVersion(strings.TrimSuffix(file, ext)); err != nil {
		return req, false, err
	}
	return req, false, nil
}

// serveProxy answers a GOPROXY request.
func (s *Server) serveProxy(w http.ResponseWriter, r *http.Request) {
	req, notFound, err := parseProxyPath(r.URL.Path)
	if err != nil {
		if notFound {
			writeText(w, http.StatusNotFound, fmt.Sprintf("not found: %s: %v", r.URL.Path, err))
		} else {
			writeText(w, http.StatusBadRequest, fmt.Sprintf("bad request: %s: %v", r.URL.Path, err))
		}
		return
	}
	switch req.kind {
	case "list":
		s.serveList(w, req.mod.Path)
	case "latest":
		s.serveLatest(w, req.mod.Path)
	default:
		s.serveFile(w, req)
	}
}

// serveList answers @v/list: every version, sorted by semver.
func (s *Server) serveList(w http.ResponseWriter, modPath string) {
	vers := s.versions(modPath)
	if len(vers) == 0 {
		writeText(w, http.StatusNotFound, fmt.Sprintf("not found: module %s: no versions", modPath))
		return
	}
	writeBody(w, "text/plain; charset=utf-8", []byte(strings.Join(vers, "\n")+"\n"))
}

// serveLatest answers @latest with the .info of the newest release, or of
// the newest pre-release if there is no release.
func (s *Server) serveLatest(w http.ResponseWriter, modPath string) {
	vers := s.versions(modPath)
	if len(vers) == 0 {
		writeText(w, http.StatusNotFound, fmt.Sprintf("not found: module %s: no versions", modPath))
		return
	}
	latest := vers[len(vers)-1]
	for _, v := range slices.Backward(vers) {
		if semver.Prerelease(v) == "" && semver.Build(v) == "" {
			latest = v
			break
		}
	}
	s.serveFile(w, proxyRequest{mod: module.Version{Path: modPath, Version: latest}, kind: ".info"})
}

// serveFile answers .info, .mod and .zip, with the faults set for the
// module version.
func (s *Server) serveFile(w http.ResponseWriter, req proxyRequest) {
	mv := s.lookup(req.mod)
	if mv == nil {
		writeText(w, http.StatusNotFound, fmt.Sprintf("not found: %s: unknown module version", req.mod))
		return
	}
	zipBad, modBad, infoVer := s.faults(req.mod)
	switch req.kind {
	case ".info":
		info := mv.info
		if infoVer != "" {
			info = withVersion(info, infoVer)
		}
		writeBody(w, "application/json", info)
	case ".mod":
		data := mv.goMod
		if modBad {
			data = mv.altMod
		}
		writeBody(w, "text/plain; charset=utf-8", data)
	case ".zip":
		data := mv.zip
		if zipBad {
			data = mv.altZip
		}
		writeBody(w, "application/zip", data)
	}
}

// withVersion returns the .info JSON info with its Version replaced.
func withVersion(info []byte, version string) []byte {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(info, &fields); err != nil {
		return info // built by makeInfo, so it parses
	}
	v, _ := json.Marshal(version)
	fields["Version"] = v
	out, err := json.Marshal(fields)
	if err != nil {
		return info
	}
	return out
}

// writeBody writes a 200 response.
func writeBody(w http.ResponseWriter, contentType string, data []byte) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(data)
}

// writeText writes a text/plain response of one line.
func writeText(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	if msg != "" {
		_, _ = fmt.Fprintln(w, msg)
	}
}
