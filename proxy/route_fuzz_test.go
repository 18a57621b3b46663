package proxy

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/mod/module"
)

// routePath is the path parsePath parses into r: escaped module path and
// version, and the checksum-database forms.
func routePath(t *testing.T, r Request) string {
	esc := func(p string) string {
		e, err := module.EscapePath(p)
		if err != nil {
			t.Fatalf("routed module path %q does not escape: %v", p, err)
		}
		return e
	}
	escV := func(v string) string {
		e, err := module.EscapeVersion(v)
		if err != nil {
			t.Fatalf("routed version %q does not escape: %v", v, err)
		}
		return e
	}
	switch r.Kind {
	case KindList:
		return "/" + esc(r.Module) + "/@v/list"
	case KindLatest:
		return "/" + esc(r.Module) + "/@latest"
	case KindInfo, KindMod, KindZip:
		return "/" + esc(r.Module) + "/@v/" + escV(r.Version) + "." + string(r.Kind)
	case KindSupported:
		return "/sumdb/" + r.DB + "/supported"
	case KindSumLatest:
		return "/sumdb/" + r.DB + "/latest"
	case KindLookup:
		return "/sumdb/" + r.DB + "/lookup/" + esc(r.Module) + "@" + escV(r.Version)
	case KindTile:
		return "/sumdb/" + r.DB + "/" + r.Tile.Path()
	}
	t.Fatalf("routed to an unknown kind %q", r.Kind)
	return ""
}

// FuzzRoute checks the router's invariants on any path: it never panics;
// an error wraps ErrBadRequest and comes with the zero Request; a path it
// accepts is valid UTF-8 without backslash, NUL or "..", names a valid
// module (and version, where there is one), and is exactly the escaped
// form of what it parsed, so no two spellings reach the same cache key.
func FuzzRoute(f *testing.F) {
	for _, p := range []string{
		"/example.com/lib/@v/list", "/example.com/lib/@latest", "/example.com/!upper/@v/v1.0.0.zip",
		"/example.com/lib/@v/v1.0.0-!r!c.1.mod", "/example.com/lib/@v/master.info", "/gopkg.in/yaml.v3/@v/v3.0.1.mod",
		"/example.com/lib/@v/v2.0.0+incompatible.zip", "/sumdb/sum.golang.org/supported", "/sumdb/sum.golang.org/latest",
		"/sumdb/sum.golang.org/lookup/example.com/!upper@v1.0.0", "/sumdb/sum.golang.org/tile/8/0/x001/234.p/5",
		"/sumdb/sum.golang.org/tile/8/data/000", "/example.com/../lib/@v/list", "/example.com/%2e%2e/@v/list",
		"/example.com\\lib/@v/list", "/example.com/Upper/@v/list", "/example.com/lib/@v/v1.0.zip", "/\xff/@v/list",
		"/sumdb/../latest", "/sumdb/sum.golang.org/tile/8/0/../000", "//@v/list", "/a/@v/v1.0.0.zip/x",
	} {
		f.Add(p)
	}
	for _, bp := range badPaths {
		f.Add(bp.path)
	}
	f.Fuzz(func(t *testing.T, path string) {
		r, err := parsePath(path)
		if err != nil {
			if !errors.Is(err, ErrBadRequest) {
				t.Fatalf("parsePath(%q): %v does not wrap ErrBadRequest", path, err)
			}
			if r != (Request{}) {
				t.Fatalf("parsePath(%q) returned %+v with its error", path, r)
			}
			return
		}
		if !utf8.ValidString(path) || strings.ContainsAny(path, "\\\x00") || len(path) > maxPathLen {
			t.Fatalf("Route accepted %q", path)
		}
		if r.Module != "" {
			if err := module.CheckPath(r.Module); err != nil && module.CheckImportPath(r.Module) != nil {
				t.Fatalf("parsePath(%q) accepted the module path %q: %v", path, r.Module, err)
			}
		}
		if r.Version != "" && (strings.Contains(r.Version, "..") || strings.ContainsAny(r.Version, "/\\")) {
			t.Fatalf("parsePath(%q) accepted the version %q", path, r.Version)
		}
		if got := routePath(t, r); got != path {
			t.Fatalf("parsePath(%q) = %+v, which escapes back to %q", path, r, got)
		}
	})
}

// FuzzRouteSumDB checks routeSumDB as an intercepted sum.golang.org uses
// it: no panic, errors wrap ErrBadRequest, and an accepted path escapes
// back to itself.
func FuzzRouteSumDB(f *testing.F) {
	for _, p := range []string{"/supported", "/latest", "/lookup/example.com/lib@v1.2.0",
		"/lookup/example.com/!upper@v1.0.0", "/tile/8/0/000", "/tile/8/1/000.p/3", "/tile/8/0/x001/234.p/5",
		"/lookup/../x@v1.0.0", "/tile/8/0/000.p/0", "latest", ""} {
		f.Add("sum.golang.org", p)
	}
	f.Add("..", "/latest")
	f.Add("a/b", "/latest")
	f.Fuzz(func(t *testing.T, db, path string) {
		r, err := routeSumDB(db, path)
		if err != nil {
			if !errors.Is(err, ErrBadRequest) {
				t.Fatalf("routeSumDB(%q, %q): %v does not wrap ErrBadRequest", db, path, err)
			}
			return
		}
		if r.DB != db || strings.ContainsAny(db, "/@") || strings.Contains(db, "..") {
			t.Fatalf("routeSumDB(%q, %q) = %+v", db, path, r)
		}
		if got := routePath(t, r); got != "/sumdb/"+db+path {
			t.Fatalf("routeSumDB(%q, %q) = %+v, which escapes back to %q", db, path, r, got)
		}
	})
}
