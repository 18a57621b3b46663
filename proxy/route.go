package proxy

import (
	"strings"
	"unicode/utf8"

	"github.com/modgate/modgate/internal/httperr"
	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/tlog"
)

// Kind is the type of a routed request.
type Kind string

// The kinds of request modgate serves.
const (
	KindList      Kind = "list"
	KindInfo      Kind = "info"
	KindMod       Kind = "mod"
	KindZip       Kind = "zip"
	KindLatest    Kind = "latest"
	KindSupported Kind = "supported"
	KindSumLatest Kind = "sumdb-latest"
	KindLookup    Kind = "lookup"
	KindTile      Kind = "tile"
)

// maxPathLen bounds a request path; real module paths are far shorter.
const maxPathLen = 2048

// Request is a routed request for a module file or checksum-database data.
type Request struct {
	Kind    Kind
	Module  string    // unescaped module path; empty for sumdb latest, supported and tile
	Version string    // unescaped version, for info, mod, zip and lookup
	DB      string    // checksum database name, for sumdb kinds
	Tile    tlog.Tile // for KindTile
	escaped string    // escaped "module/@v/version" form used in cache keys and upstream paths
}

// ErrBadRequest is wrapped by every routing error: the client sent a path
// that is not a valid module or checksum-database request. It is the
// sentinel that proxy/egress wraps for a malformed target too
// (httperr.ErrBadRequest).
var ErrBadRequest = httperr.ErrBadRequest

// badRequest returns an error wrapping ErrBadRequest.
func badRequest(format string, args ...any) error { return httperr.BadRequest(format, args...) }

// parsePath parses the path of a GOPROXY request, such as
// "/example.com/!upper/@v/v1.0.0.zip" or "/sumdb/sum.golang.org/lookup/m@v".
func parsePath(path string) (Request, error) {
	if len(path) > maxPathLen {
		return Request{}, badRequest("path longer than %d bytes", maxPathLen)
	}
	if !utf8.ValidString(path) || strings.ContainsAny(path, "\\\x00") {
		return Request{}, badRequest("path is not valid UTF-8 or contains a backslash or NUL")
	}
	if !strings.HasPrefix(path, "/") {
		return Request{}, badRequest("path must start with /")
	}
	if rest, ok := strings.CutPrefix(path, "/sumdb/"); ok {
		db, rest, _ := strings.Cut(rest, "/")
		return routeSumDB(db, "/"+rest)
	}
	return routeModule(path[1:])
}

// routeModule parses "<module>/@v/list", "<module>/@v/<v>.<ext>" and "<module>/@latest".
func routeModule(p string) (Request, error) {
	if m, ok := strings.CutSuffix(p, "/@latest"); ok {
		return moduleRequest(KindLatest, m, "")
	}
	m, file, ok := strings.Cut(p, "/@v/")
	if !ok {
		return Request{}, badRequest("not a module proxy path: want <module>/@v/<file> or <module>/@latest")
	}
	if file == "list" {
		return moduleRequest(KindList, m, "")
	}
	i := strings.LastIndex(file, ".")
	if i < 0 {
		return Request{}, badRequest("unknown module file %q: want list, .info, .mod or .zip", file)
	}
	kind := map[string]Kind{".info": KindInfo, ".mod": KindMod, ".zip": KindZip}[file[i:]]
	if kind == "" {
		return Request{}, badRequest("unknown module file %q: want list, .info, .mod or .zip", file)
	}
	return moduleRequest(kind, m, file[:i])
}

// moduleRequest unescapes and checks a module path and version.
func moduleRequest(kind Kind, escPath, escVers string) (Request, error) {
	path, err := module.UnescapePath(escPath)
	if err != nil {
		return Request{}, badRequest("invalid module path %q: %v", escPath, err)
	}
	r := Request{Kind: kind, Module: path, escaped: escPath}
	if kind == KindList || kind == KindLatest {
		return r, nil
	}
	vers, err := module.UnescapeVersion(escVers)
	if err != nil {
		return Request{}, badRequest("invalid version %q: %v", escVers, err)
	}
	if err := module.Check(path, vers); err != nil && kind != KindInfo {
		return Request{}, badRequest("%v", err)
	}
	if kind != KindInfo && module.CanonicalVersion(vers) != vers {
		return Request{}, badRequest(
			"version %q of %s is not canonical: .mod and .zip are served by exact version only",
			vers,
			path,
		)
	}
	if strings.Contains(vers, "..") || strings.ContainsAny(vers, "/") {
		return Request{}, badRequest("invalid version %q", vers)
	}
	r.Version = vers
	r.escaped = escPath + "/@v/" + escVers
	return r, nil
}

// routeSumDB parses a checksum-database path (below /sumdb/<db>, or at the
// root of an intercepted database host).
func routeSumDB(db, path string) (Request, error) {
	if db == "" || strings.ContainsAny(db, "/@") || strings.Contains(db, "..") {
		return Request{}, badRequest("invalid checksum database name %q", db)
	}
	r := Request{DB: db}
	switch {
	case path == "/supported":
		r.Kind = KindSupported
	case path == "/latest":
		r.Kind = KindSumLatest
	case strings.HasPrefix(path, "/lookup/"):
		target := strings.TrimPrefix(path, "/lookup/")
		i := strings.LastIndex(target, "@")
		if i < 0 {
			return Request{}, badRequest("lookup %q: want <module>@<version>", target)
		}
		m, err := moduleRequest(KindLookup, target[:i], target[i+1:])
		if err != nil {
			return Request{}, err
		}
		m.DB = db
		return m, nil
	case strings.HasPrefix(path, "/tile/"):
		t, err := tlog.ParseTilePath(path[1:])
		if err != nil {
			return Request{}, badRequest("invalid tile path %q", path)
		}
		r.Kind, r.Tile = KindTile, t
	default:
		return Request{}, badRequest("unknown checksum database path %q: want supported, latest, lookup/ or tile/", path)
	}
	return r, nil
}

// cacheKey is the key of a module file's request in the cache: its kind,
// a slash and its escaped module path and version.
func (r Request) cacheKey() string { return string(r.Kind) + "/" + r.escaped }

// Target is the module@version the request is about, for logs and messages.
func (r Request) Target() string {
	if r.Version != "" {
		return r.Module + "@" + r.Version
	}
	return r.Module
}
