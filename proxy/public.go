package proxy

import (
	"net/http"
	"strings"
)

// PublicPrefix is the path below which the GOPROXY endpoint serves the
// public files a client needs to set itself up, such as
// /.modgate/ca.pem. No module path can start with it: a path element of a
// module path never begins with a dot.
const PublicPrefix = "/.modgate/"

// Names of the public files (PublicFile.Name).
const (
	PublicCA       = "ca.pem"       // the interception CA certificate
	PublicVerifier = "verifier.txt" // the enterprise verifier key, a line
)

// PublicFile is a file the GOPROXY endpoint serves at PublicPrefix+Name to
// anyone: the CA certificate and the verifier key are public.
type PublicFile struct {
	Name        string
	ContentType string
	Body        []byte
}

// servePublic answers a request below PublicPrefix from cfg.Public. It
// reports false for a path that is not below PublicPrefix.
func (g *Gate) servePublic(w http.ResponseWriter, r *http.Request) bool {
	name, ok := strings.CutPrefix(r.URL.Path, PublicPrefix)
	if !ok {
		return false
	}
	w.Header().Set("Cache-Control", "no-cache")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeError(w, badRequest("method %s not allowed: only GET and HEAD", r.Method))
		return true
	}
	for _, f := range g.cfg.Public {
		if f.Name == name {
			w.Header().Set("Content-Type", f.ContentType)
			w.Write(f.Body)
			return true
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusNotFound)
	w.Write([]byte("modgate: " + PublicPrefix + name + ": no such file; the gate serves " + g.publicNames() + "\n"))
	return true
}

// publicNames lists the public files' paths, for an error message.
func (g *Gate) publicNames() string {
	var names []string
	for _, f := range g.cfg.Public {
		names = append(names, PublicPrefix+f.Name)
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, " and ")
}
