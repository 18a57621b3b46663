package proxy

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

func TestRoute(t *testing.T) {
	const db = "sum.golang.org"
	tests := []struct {
		path string
		want Request
	}{
		{"/example.com/lib/@v/list", Request{Kind: KindList, Module: "example.com/lib"}},
		{"/example.com/lib/@latest", Request{Kind: KindLatest, Module: "example.com/lib"}},
		{"/example.com/lib/@v/v1.0.0.info", Request{Kind: KindInfo, Module: "example.com/lib", Version: "v1.0.0"}},
		{"/example.com/lib/@v/v1.0.0.mod", Request{Kind: KindMod, Module: "example.com/lib", Version: "v1.0.0"}},
		{"/example.com/lib/@v/v1.0.0.zip", Request{Kind: KindZip, Module: "example.com/lib", Version: "v1.0.0"}},
		{"/example.com/!upper/@v/list", Request{Kind: KindList, Module: "example.com/Upper"}},
		{"/example.com/!upper/@latest", Request{Kind: KindLatest, Module: "example.com/Upper"}},
		{"/example.com/!upper/@v/v1.0.0.zip", Request{Kind: KindZip, Module: "example.com/Upper", Version: "v1.0.0"}},
		{
			"/github.com/!burnt!sushi/toml/@v/v1.3.2.mod",
			Request{Kind: KindMod, Module: "github.com/BurntSushi/toml", Version: "v1.3.2"},
		},
		{"/example.com/lib/@v/v1.0.0-!r!c.1.mod", Request{Kind: KindMod, Module: "example.com/lib", Version: "v1.0.0-RC.1"}},
		{"/example.com/lib/@v/v1.1.0-rc.1.zip", Request{Kind: KindZip, Module: "example.com/lib", Version: "v1.1.0-rc.1"}},
		{"/example.com/lib/@v/v0.0.0-20240101000000-abcdefabcdef.zip",
			Request{Kind: KindZip, Module: "example.com/lib", Version: "v0.0.0-20240101000000-abcdefabcdef"}},
		{"/example.com/lib/@v/v1.2.1-0.20240101000000-abcdefabcdef.mod",
			Request{Kind: KindMod, Module: "example.com/lib", Version: "v1.2.1-0.20240101000000-abcdefabcdef"}},
		{"/example.com/lib/v2/@v/v2.1.0.zip", Request{Kind: KindZip, Module: "example.com/lib/v2", Version: "v2.1.0"}},
		{"/gopkg.in/yaml.v3/@v/v3.0.1.mod", Request{Kind: KindMod, Module: "gopkg.in/yaml.v3", Version: "v3.0.1"}},
		// +incompatible versions are canonical module versions
		// (module.CanonicalVersion keeps the suffix), served by exact version.
		{
			"/example.com/lib/@v/v2.0.0+incompatible.info",
			Request{Kind: KindInfo, Module: "example.com/lib", Version: "v2.0.0+incompatible"},
		},
		{
			"/example.com/lib/@v/v2.0.0+incompatible.mod",
			Request{Kind: KindMod, Module: "example.com/lib", Version: "v2.0.0+incompatible"},
		},
		{
			"/example.com/lib/@v/v2.0.0+incompatible.zip",
			Request{Kind: KindZip, Module: "example.com/lib", Version: "v2.0.0+incompatible"},
		},
		// .info also answers queries (branches, non-canonical versions).
		{"/example.com/lib/@v/master.info", Request{Kind: KindInfo, Module: "example.com/lib", Version: "master"}},
		{"/example.com/lib/@v/v1.info", Request{Kind: KindInfo, Module: "example.com/lib", Version: "v1"}},

		{"/sumdb/sum.golang.org/supported", Request{Kind: KindSupported, DB: db}},
		{"/sumdb/sum.golang.org/latest", Request{Kind: KindSumLatest, DB: db}},
		{
			"/sumdb/sum.golang.org/lookup/example.com/lib@v1.0.0",
			Request{Kind: KindLookup, DB: db, Module: "example.com/lib", Version: "v1.0.0"},
		},
		{
			"/sumdb/sum.golang.org/lookup/example.com/!upper@v1.0.0",
			Request{Kind: KindLookup, DB: db, Module: "example.com/Upper", Version: "v1.0.0"},
		},
		{"/sumdb/sum.golang.org/lookup/example.com/lib@v2.0.0+incompatible",
			Request{Kind: KindLookup, DB: db, Module: "example.com/lib", Version: "v2.0.0+incompatible"}},
		{"/sumdb/sum.golang.org/tile/8/0/000", Request{Kind: KindTile, DB: db, Tile: tlog.Tile{H: 8, L: 0, N: 0, W: 256}}},
		{"/sumdb/sum.golang.org/tile/8/0/000.p/5", Request{Kind: KindTile, DB: db, Tile: tlog.Tile{H: 8, L: 0, N: 0, W: 5}}},
		{
			"/sumdb/sum.golang.org/tile/8/0/x001/234.p/5",
			Request{Kind: KindTile, DB: db, Tile: tlog.Tile{H: 8, L: 0, N: 1234, W: 5}},
		},
		{"/sumdb/sum.golang.org/tile/8/1/000.p/3", Request{Kind: KindTile, DB: db, Tile: tlog.Tile{H: 8, L: 1, N: 0, W: 3}}},
		{
			"/sumdb/sum.golang.org/tile/8/data/000",
			Request{Kind: KindTile, DB: db, Tile: tlog.Tile{H: 8, L: -1, N: 0, W: 256}},
		},
		{"/sumdb/other.example/latest", Request{Kind: KindSumLatest, DB: "other.example"}},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			got, err := parsePath(tt.path)
			if err != nil {
				t.Errorf("parsePath(%q): %v", tt.path, err)
				return
			}
			checkRequest(t, got, tt.want)
		})
	}
}

// checkRequest compares the exported fields of two requests.
func checkRequest(t *testing.T, got, want Request) {
	t.Helper()
	if got.Kind != want.Kind || got.Module != want.Module || got.Version != want.Version || got.DB != want.DB ||
		got.Tile != want.Tile {
		t.Errorf("got {Kind:%s Module:%q Version:%q DB:%q Tile:%+v},\nwant {Kind:%s Module:%q Version:%q DB:%q Tile:%+v}",
			got.Kind, got.Module, got.Version, got.DB, got.Tile, want.Kind, want.Module, want.Version, want.DB, want.Tile)
	}
}

func TestRouteSumDB(t *testing.T) {
	tests := []struct {
		db, path string
		want     Request
	}{
		// As on an intercepted sum.golang.org: the path is at the root.
		{"sum.golang.org", "/supported", Request{Kind: KindSupported, DB: "sum.golang.org"}},
		{"sum.golang.org", "/latest", Request{Kind: KindSumLatest, DB: "sum.golang.org"}},
		{"sum.golang.org", "/lookup/example.com/lib@v1.2.0",
			Request{Kind: KindLookup, DB: "sum.golang.org", Module: "example.com/lib", Version: "v1.2.0"}},
		{
			"sum.golang.org",
			"/tile/8/0/x001/234.p/5",
			Request{Kind: KindTile, DB: "sum.golang.org", Tile: tlog.Tile{H: 8, N: 1234, W: 5}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			got, err := routeSumDB(tt.db, tt.path)
			if err != nil {
				t.Fatalf("routeSumDB(%q, %q): %v", tt.db, tt.path, err)
			}
			checkRequest(t, got, tt.want)
		})
	}
}

// badPaths are request paths that are not module or checksum-database
// requests, with a substring of the error each must get. They are valid
// on an HTTP request line, so the end-to-end test sends them as they are.
var badPaths = []struct {
	name, path, wantMsg string
}{
	{"no leading slash", "example.com/lib/@v/list", "start with /"},
	{"empty", "", "start with /"},
	{"root", "/", "not a module proxy path"},
	{"no @v", "/example.com/lib", "not a module proxy path"},
	{"dot-dot in module", "/example.com/../lib/@v/list", "invalid module path"},
	{"dot-dot module only", "/../@v/list", "invalid module path"},
	{"dot-dot after @v", "/example.com/lib/@v/../../../etc/passwd", "unknown module file"},
	{"dot-dot in version", "/example.com/lib/@v/v1.0.0/../v1.0.0.zip", "invalid version"},
	{"dot version", "/example.com/lib/@v/..zip", "invalid version"},
	{"leading dot element", "/.example.com/lib/@v/list", "invalid module path"},
	{"backslash", "/example.com\\lib/@v/list", "backslash"},
	{"backslash traversal", "/example.com/lib/@v/..\\..\\x.zip", "backslash"},
	{"invalid UTF-8", "/example.com/\xfflib/@v/list", "UTF-8"},
	{"upper case path", "/example.com/Upper/@v/list", "invalid module path"},
	{"upper case path zip", "/example.com/Upper/@v/v1.0.0.zip", "invalid module path"},
	{"upper case latest", "/Example.com/lib/@latest", "invalid module path"},
	{"upper case version", "/example.com/lib/@v/V1.0.0.zip", "invalid version"},
	{"bad escape", "/example.com/!!upper/@v/list", "invalid module path"},
	{"short version mod", "/example.com/lib/@v/v1.0.mod", "not canonical"},
	{"short version zip", "/example.com/lib/@v/v1.0.zip", "not canonical"},
	{"branch mod", "/example.com/lib/@v/master.mod", "master"},
	{"branch zip", "/example.com/lib/@v/master.zip", "master"},
	{"build metadata", "/example.com/lib/@v/v1.0.0+build.zip", "v1.0.0+build"},
	{"major mismatch", "/example.com/lib/@v/v2.0.0.zip", "v2.0.0"},
	{"unknown extension", "/example.com/lib/@v/v1.0.0.tar.gz", "unknown module file"},
	{"no extension", "/example.com/lib/@v/v1.0.0", "unknown module file"},
	{"empty file", "/example.com/lib/@v/", "unknown module file"},
	{"extension only", "/example.com/lib/@v/.zip", "invalid version"},
	{"trailing path", "/example.com/lib/@v/v1.0.0.zip/x", "unknown module file"},
	{"list with suffix", "/example.com/lib/@v/list.txt", "unknown module file"},
	{"empty module list", "/@v/list", "not a module proxy path"},
	{"empty module latest", "/@latest", "not a module proxy path"},
	{"empty module zip", "/@v/v1.0.0.zip", "not a module proxy path"},
	{"empty module element", "//@v/list", "invalid module path"},
	{"overlong", "/example.com/" + strings.Repeat("a", 2040) + "/@v/list", "longer than 2048"},
	{"sumdb no name", "/sumdb/", "invalid checksum database name"},
	{"sumdb dot-dot name", "/sumdb/../latest", "invalid checksum database name"},
	{"sumdb name with @", "/sumdb/sum@golang.org/latest", "invalid checksum database name"},
	{"sumdb unknown", "/sumdb/sum.golang.org/unknown", "unknown checksum database path"},
	{"sumdb latest suffix", "/sumdb/sum.golang.org/latest/x", "unknown checksum database path"},
	{"sumdb root", "/sumdb/sum.golang.org", "unknown checksum database path"},
	{"lookup no version", "/sumdb/sum.golang.org/lookup/example.com/lib", "want <module>@<version>"},
	{"lookup branch", "/sumdb/sum.golang.org/lookup/example.com/lib@master", "master"},
	{"lookup short version", "/sumdb/sum.golang.org/lookup/example.com/lib@v1.0", "not canonical"},
	{"lookup upper case", "/sumdb/sum.golang.org/lookup/example.com/Upper@v1.0.0", "invalid module path"},
	{"lookup dot-dot", "/sumdb/sum.golang.org/lookup/../x@v1.0.0", "invalid module path"},
	{"tile dot-dot", "/sumdb/sum.golang.org/tile/8/0/../000", "invalid tile path"},
	{"tile empty partial", "/sumdb/sum.golang.org/tile/8/0/000.p/0", "invalid tile path"},
	{"tile full as partial", "/sumdb/sum.golang.org/tile/8/0/000.p/256", "invalid tile path"},
	{"tile non-canonical", "/sumdb/sum.golang.org/tile/8/0/1", "invalid tile path"},
	{"tile height", "/sumdb/sum.golang.org/tile/31/0/000", "invalid tile path"},
}

func TestRouteInvalid(t *testing.T) {
	tests := append(badPaths[:len(badPaths):len(badPaths)], []struct {
		name, path, wantMsg string
	}{
		// Not on a request line, but Route may see them decoded.
		{"NUL", "/example.com/lib/@v/list\x00", "NUL"},
		{"NUL in version", "/example.com/lib/@v/v1.0.0\x00.zip", "NUL"},
		{"newline", "/example.com/lib\n/@v/list", "invalid module path"},
		{"space", "/example.com/lib /@v/list", "invalid module path"},
		{"far overlong", "/" + strings.Repeat("a/", 5000) + "@v/list", "longer than 2048"},
	}...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parsePath(tt.path)
			if err == nil {
				t.Fatalf("parsePath(%q) = %+v, want an error", tt.path, got)
			}
			if !errors.Is(err, ErrBadRequest) {
				t.Errorf("parsePath(%q): %v: does not wrap ErrBadRequest", tt.path, err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("parsePath(%q): %q, want a message mentioning %q", tt.path, err, tt.wantMsg)
			}
			if got != (Request{}) {
				t.Errorf("parsePath(%q) returned %+v with its error, want the zero Request", tt.path, got)
			}
		})
	}
}

func TestRouteSumDBInvalid(t *testing.T) {
	tests := []struct{ db, path string }{
		{"", "/latest"},
		{"..", "/latest"},
		{"a/b", "/latest"},
		{"sum.golang.org", ""},
		{"sum.golang.org", "latest"},
		{"sum.golang.org", "/lookup/"},
		{"sum.golang.org", "/lookup/@v1.0.0"},
		{"sum.golang.org", "/tile/"},
		{"sum.golang.org", "/tile/8/0/x001/234.p/"},
	}
	for _, tt := range tests {
		t.Run(tt.db+tt.path, func(t *testing.T) {
			if _, err := routeSumDB(tt.db, tt.path); !errors.Is(err, ErrBadRequest) {
				t.Errorf("routeSumDB(%q, %q) = %v, want an error wrapping ErrBadRequest", tt.db, tt.path, err)
			}
		})
	}
}

// TestGateRejectsBadPaths sends bad paths byte for byte on the request line
// to the GOPROXY endpoint: each gets 400 with a text/plain reason and the
// upstream sees nothing.
func TestGateRejectsBadPaths(t *testing.T) {
	tg := newTestGate(t, nil, gateOptions{})
	tests := []struct{ name, path string }{
		{"percent dot-dot", "/example.com/%2e%2e/lib/@v/list"},
		{"percent dot-dot version", "/example.com/lib/@v/%2e%2e%2f%2e%2e%2fx.zip"},
		{"percent NUL", "/example.com/lib/@v/list%00"},
		{"percent backslash", "/example.com/lib%5c..%5cx/@v/list"},
		{"percent invalid UTF-8", "/example.com/%ff/@v/list"},
		{"percent upper case", "/example.com/%55pper/@v/list"},
	}
	for _, bp := range badPaths {
		if bp.path != "" && bp.path[0] == '/' {
			tests = append(tests, struct{ name, path string }{bp.name, bp.path})
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, method := range []string{http.MethodGet, http.MethodHead} {
				r := do(t, nil, method, tg.url, tt.path)
				if method == http.MethodHead {
					if r.status != http.StatusBadRequest {
						t.Errorf("HEAD %q: status %d, want 400", tt.path, r.status)
					}
					continue
				}
				checkErrorBody(t, "GET "+tt.path, r, http.StatusBadRequest, "bad request")
				if why := goShows(string(r.body)); why != "" {
					t.Errorf("GET %q: body %q: the go command would not show it all: %s", tt.path, r.body, why)
				}
			}
		})
	}
	t.Run("methods", func(t *testing.T) {
		for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodOptions} {
			r := do(t, nil, method, tg.url, "/example.com/lib/@v/list")
			if r.status < 400 || r.status >= 500 || !strings.HasPrefix(string(r.body), "modgate: ") {
				t.Errorf("%s: status %d body %q, want a 4xx with a modgate reason", method, r.status, r.body)
			}
		}
	})
	if log := tg.fake.RequestLog(); len(log) != 0 {
		t.Errorf("the upstream received requests for bad paths: %q", log)
	}
}

// TestGateServesGoEscapedPaths requests paths escaped as the go command
// escapes them on the wire: cmd/go/internal/modfetch/proxy.go joins
// pathEscape(path) = url.PathEscape with "%2F" turned back into "/", which
// sends the "!" of case-escaped module paths as "%21". Every module with an
// upper-case letter in its path (github.com/BurntSushi/toml, ...) is
// requested that way.
func TestGateServesGoEscapedPaths(t *testing.T) {
	tg := newTestGate(t, nil, gateOptions{})
	for _, ext := range []string{"list", "v1.0.0.info", "v1.0.0.mod", "v1.0.0.zip"} {
		path := "/example.com/!upper/@v/" + ext
		wire := "/" + strings.ReplaceAll(url.PathEscape(strings.TrimPrefix(path, "/")), "%2F", "/")
		t.Run(wire, func(t *testing.T) {
			if !strings.Contains(wire, "%21") {
				t.Fatalf("url.PathEscape no longer escapes '!': %q", wire)
			}
			want := upstreamBytes(t, tg.fake, path)
			r := get(t, tg.url, wire)
			if r.status != http.StatusOK {
				t.Fatalf("GET %s: %d %q, want 200 (the go command sends this path for %s)", wire, r.status, r.body, path)
			}
			if string(r.body) != string(want) {
				t.Errorf("GET %s: body differs from the upstream's %s", wire, path)
			}
		})
	}
}
