package fakeupstream

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/dirhash"
	modzip "golang.org/x/mod/zip"
)

// get fetches u and returns the status code, content type and body.
func get(t *testing.T, u string) (int, string, []byte) {
	t.Helper()
	return do(t, http.MethodGet, u)
}

// do sends a request without a body and returns the status code, content
// type and body.
func do(t *testing.T, method, u string) (int, string, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), body
}

// zipHash returns dirhash.HashZip of a zip held in memory.
func zipHash(t *testing.T, data []byte) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "m.zip")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	h, err := dirhash.HashZip(file, dirhash.Hash1)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// checkZip fails t unless data is a valid module zip of m.
func checkZip(t *testing.T, m module.Version, data []byte) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "m.zip")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := modzip.CheckZip(m, file); err != nil {
		t.Errorf("zip of %s is not a valid module zip: %v", m, err)
	}
}

func TestProxyEndpoints(t *testing.T) {
	s := Start(t, Options{})
	text, js := "text/plain; charset=utf-8", "application/json"
	tests := []struct {
		method, path string
		wantCode     int
		wantType     string
		wantBody     string // a substring of the body
	}{
		{"GET", "/example.com/lib/@v/list", 200, text, "v1.0.0\nv1.1.0\nv1.2.0\n"},
		{"GET", "/example.com/lib/@latest", 200, js, `"Version":"v1.2.0"`},
		{"GET", "/example.com/lib/@v/v1.1.0.info", 200, js, `"Time":"2024-02-01T00:00:00Z"`},
		{"GET", "/example.com/lib/@v/v1.2.0.mod", 200, text, "require example.com/dep v1.0.0"},
		{"GET", "/example.com/lib/@v/v1.2.0.zip", 200, "application/zip", "example.com/lib@v1.2.0/lib.go"},
		{"HEAD", "/example.com/lib/@v/v1.2.0.zip", 200, "application/zip", ""},
		{"GET", "/example.com/dep/@v/v1.0.0.info", 200, js, `"Time":"2024-01-01T00:00:00Z"`},
		{"GET", "/example.com/!upper/@v/list", 200, text, "v1.0.0\n"},
		{"GET", "/example.com/!upper/@v/v1.0.0.mod", 200, text, "module example.com/Upper"},
		{"GET", "/example.com/!upper/@latest", 200, js, `"Version":"v1.0.0"`},
		{"GET", "/example.com/retracted/@v/v1.1.0.mod", 200, text, "retract v1.0.0 // broken"},
		{"GET", "/example.com/bad/@v/list", 200, text, "v1.1.0\nv1.2.0\n"},
		{"GET", "/example.com/Upper/@v/list", 400, text, "bad request: "},
		{"GET", "/example.com/lib/@v/v1.0.0-!b!a!d.info", 404, text, "not found: "},
		{"GET", "/example.com/lib/@v/V1.info", 400, text, "bad request: "},
		{"GET", "/example.com/lib/@v/v9.9.9.info", 404, text, "not found: example.com/lib@v9.9.9"},
		{"GET", "/example.com/lib/@v/v9.9.9.zip", 404, text, "not found: "},
		{"GET", "/example.com/nope/@v/list", 404, text, "not found: module example.com/nope"},
		{"GET", "/example.com/nope/@latest", 404, text, "not found: "},
		{"GET", "/example.com/lib/@v/v1.0.0.tar", 404, text, "not found: "},
		{"GET", "/", 404, text, "not found: "},
		{"POST", "/example.com/lib/@v/list", 405, text, "method not allowed"},
		{"GET", "/sumdb/sum.golang.org/supported", 200, text, ""},
		{"GET", "/sumdb/other.example/supported", 404, text, "not found: "},
		{"GET", "/sumdb/sum.golang.org/latest", 200, "text/plain; charset=UTF-8", "go.sum database tree\n"},
		{"GET", "/sumdb/sum.golang.org/lookup/example.com/!upper@v1.0.0", 200, "text/plain; charset=UTF-8", "example.com/Upper v1.0.0 h1:"},
		{"GET", "/sumdb/sum.golang.org/lookup/example.com/nope@v1.0.0", 404, "text/plain; charset=utf-8", "does not exist"},
		{"GET", "/sumdb/sum.golang.org/lookup/example.com/lib@v9.0.0", 404, "text/plain; charset=utf-8", "does not exist"},
		{"GET", "/sumdb/sum.golang.org/tile/8/0/000.p/1", 200, "application/octet-stream", ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+tt.path, func(t *testing.T) {
			code, ctype, body := do(t, tt.method, s.URL+tt.path)
			if code != tt.wantCode || ctype != tt.wantType {
				t.Errorf("got %d %q, want %d %q; body %q", code, ctype, tt.wantCode, tt.wantType, body)
			}
			if !strings.Contains(string(body), tt.wantBody) {
				t.Errorf("body %q does not contain %q", body, tt.wantBody)
			}
		})
	}
}

func TestGoSumMatchesServedBytes(t *testing.T) {
	s := Start(t, Options{})
	for _, m := range s.Modules() {
		t.Run(m.String(), func(t *testing.T) {
			zipH1, modH1 := s.GoSum(m)
			base := s.URL + "/" + escaped(t, m)
			_, _, zipData := get(t, base+".zip")
			checkZip(t, m, zipData)
			if got := zipHash(t, zipData); got != zipH1 {
				t.Errorf("HashZip of served zip = %s, GoSum says %s", got, zipH1)
			}
			_, _, modData := get(t, base+".mod")
			got, err := dirhash.Hash1([]string{"go.mod"}, func(string) (io.ReadCloser, error) {
				return io.NopCloser(bytes.NewReader(modData)), nil
			})
			if err != nil || got != modH1 {
				t.Errorf("Hash1 of served go.mod = %s, %v; GoSum says %s", got, err, modH1)
			}
			escPath, _ := module.EscapePath(m.Path)
			_, _, rec := get(t, s.SumDBURL()+"/lookup/"+escPath+"@"+m.Version)
			wantLines := m.Path + " " + m.Version + " " + zipH1 + "\n" +
				m.Path + " " + m.Version + "/go.mod " + modH1 + "\n"
			if !strings.Contains(string(rec), wantLines) {
				t.Errorf("lookup record %q does not contain %q", rec, wantLines)
			}
		})
	}
}

// escaped returns "<escaped path>/@v/<escaped version>" of m.
func escaped(t *testing.T, m module.Version) string {
	t.Helper()
	p, err := module.EscapePath(m.Path)
	if err != nil {
		t.Fatal(err)
	}
	v, err := module.EscapeVersion(m.Version)
	if err != nil {
		t.Fatal(err)
	}
	return p + "/@v/" + v
}

func TestLatestSkipsPrerelease(t *testing.T) {
	s := Start(t, Options{})
	archives := []struct{ name, data string }{
		{"example.com_lib_v1.3.0-rc.1.txt", "-- lib.go --\npackage lib\n"},
		{"example.com_pre_v0.1.0-alpha.txt", "-- pre.go --\npackage pre\n"},
		{"example.com_pre_v0.1.0-beta.txt", "-- pre.go --\npackage pre\n"},
	}
	for _, a := range archives {
		if _, err := s.AddArchive(a.name, []byte(a.data)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct{ path, want string }{
		{"/example.com/lib/@latest", "v1.2.0"},
		{"/example.com/pre/@latest", "v0.1.0-beta"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			_, _, body := get(t, s.URL+tt.path)
			var info struct{ Version string }
			if err := json.Unmarshal(body, &info); err != nil || info.Version != tt.want {
				t.Errorf("@latest = %s (%v), want Version %s", body, err, tt.want)
			}
		})
	}
	if _, _, body := get(t, s.URL+"/example.com/lib/@v/list"); string(body) != "v1.0.0\nv1.1.0\nv1.2.0\nv1.3.0-rc.1\n" {
		t.Errorf("list = %q", body)
	}
}

func TestAddArchive(t *testing.T) {
	s := Start(t, Options{})
	before := s.TreeSize()
	m, err := s.AddArchive("example.com_lib_v1.3.0.txt", []byte("-- go.mod --\nmodule example.com/lib\n\ngo 1.21\n-- lib.go --\npackage lib\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := (module.Version{Path: "example.com/lib", Version: "v1.3.0"}); m != want {
		t.Errorf("AddArchive = %v, want %v", m, want)
	}
	if got := s.TreeSize(); got != before+1 {
		t.Errorf("tree size %d after AddArchive, want %d", got, before+1)
	}
	if _, _, body := get(t, s.URL+"/example.com/lib/@latest"); !strings.Contains(string(body), "v1.3.0") {
		t.Errorf("@latest after AddArchive = %s", body)
	}
	if _, _, body := get(t, s.URL+"/example.com/lib/@v/v1.3.0.mod"); string(body) != "module example.com/lib\n\ngo 1.21\n" {
		t.Errorf(".mod defaults to the go.mod file, got %q", body)
	}
	if _, err := s.AddArchive("example.com_lib_v1.3.0.txt", []byte("-- lib.go --\npackage lib\n")); err == nil {
		t.Error("adding a version twice succeeded")
	}
}

// faultCase switches a fault and tells whether a response shows it.
type faultCase struct {
	name  string
	set   func(s *Server, on bool)
	path  string
	check func(t *testing.T, s *Server, code int, body []byte) bool // reports whether the fault shows
}

// faultCases returns the cases of TestFaults.
func faultCases() []faultCase {
	lib := module.Version{Path: "example.com/lib", Version: "v1.2.0"}
	up := module.Version{Path: "example.com/Upper", Version: "v1.0.0"}
	return []faultCase{
		{"zip mismatch", func(s *Server, on bool) { s.SetZipMismatch(up, on) }, "/example.com/!upper/@v/v1.0.0.zip",
			func(t *testing.T, s *Server, code int, body []byte) bool {
				checkZip(t, up, body)
				zipH1, _ := s.GoSum(up)
				return zipHash(t, body) != zipH1
			}},
		{"mod mismatch", func(s *Server, on bool) { s.SetModMismatch(lib, on) }, "/example.com/lib/@v/v1.2.0.mod",
			func(t *testing.T, s *Server, code int, body []byte) bool {
				h, err := hashMod(body)
				if err != nil {
					t.Fatal(err)
				}
				_, modH1 := s.GoSum(lib)
				return strings.HasPrefix(string(body), "module example.com/lib\n") && h != modH1
			}},
		{"info version", func(s *Server, on bool) { s.SetInfoVersion(lib, map[bool]string{true: "v1.1.0"}[on]) }, "/example.com/lib/@v/v1.2.0.info",
			func(t *testing.T, s *Server, code int, body []byte) bool {
				return strings.Contains(string(body), `"Version":"v1.1.0"`)
			}},
		{"info version at latest", func(s *Server, on bool) { s.SetInfoVersion(lib, map[bool]string{true: "v1.1.0"}[on]) }, "/example.com/lib/@latest",
			func(t *testing.T, s *Server, code int, body []byte) bool {
				return strings.Contains(string(body), `"Version":"v1.1.0"`)
			}},
		{"status", func(s *Server, on bool) { s.SetStatus("/example.com/lib/", map[bool]int{true: 503}[on]) }, "/example.com/lib/@v/list",
			func(t *testing.T, s *Server, code int, body []byte) bool {
				return code == 503 && strings.Contains(string(body), "injected status 503")
			}},
		{"status on sumdb", func(s *Server, on bool) { s.SetStatus("/sumdb/", map[bool]int{true: 410}[on]) }, "/sumdb/sum.golang.org/supported",
			func(t *testing.T, s *Server, code int, body []byte) bool { return code == 410 }},
		{"handler", func(s *Server, on bool) {
			var h http.HandlerFunc
			if on {
				h = func(w http.ResponseWriter, r *http.Request) { http.Error(w, "teapot", http.StatusTeapot) }
			}
			s.SetStatus("/example.com/", 500) // Handle takes precedence
			s.Handle("/example.com/lib/@v/", h)
		}, "/example.com/lib/@v/list",
			func(t *testing.T, s *Server, code int, body []byte) bool { return code == http.StatusTeapot }},
	}
}

func TestFaults(t *testing.T) {
	for _, tt := range faultCases() {
		t.Run(tt.name, func(t *testing.T) {
			s := Start(t, Options{})
			for _, on := range []bool{true, false, true} {
				tt.set(s, on)
				code, _, body := get(t, s.URL+tt.path)
				if got := tt.check(t, s, code, body); got != on {
					t.Errorf("fault on=%v: shows=%v (%d %q)", on, got, code, body)
				}
			}
		})
	}
}

func TestLongestPrefixWins(t *testing.T) {
	s := Start(t, Options{})
	s.SetStatus("/example.com/", 500)
	s.SetStatus("/example.com/lib/", 502)
	tests := []struct {
		path string
		want int
	}{
		{"/example.com/lib/@v/list", 502},
		{"/example.com/dep/@v/list", 500},
		{"/sumdb/sum.golang.org/supported", 200},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			if code, _, _ := get(t, s.URL+tt.path); code != tt.want {
				t.Errorf("code %d, want %d", code, tt.want)
			}
		})
	}
}

func TestRequestCounts(t *testing.T) {
	s := Start(t, Options{})
	paths := []string{
		"/example.com/lib/@v/list",
		"/example.com/lib/@v/list",
		"/example.com/nope/@v/list",
		"/sumdb/sum.golang.org/supported",
	}
	for _, p := range paths {
		get(t, s.URL+p)
	}
	tests := []struct {
		path string
		want int
	}{
		{"/example.com/lib/@v/list", 2},
		{"/example.com/nope/@v/list", 1},
		{"/sumdb/sum.golang.org/supported", 1},
		{"/example.com/lib/@v", 0},
	}
	for _, tt := range tests {
		if got := s.Requests(tt.path); got != tt.want {
			t.Errorf("Requests(%q) = %d, want %d", tt.path, got, tt.want)
		}
	}
	if got := s.RequestLog(); strings.Join(got, " ") != strings.Join(paths, " ") {
		t.Errorf("RequestLog() = %q, want %q", got, paths)
	}
	s.ResetCounts()
	if s.Requests(paths[0]) != 0 || len(s.RequestLog()) != 0 {
		t.Error("ResetCounts did not reset")
	}
}

func TestConcurrentUse(t *testing.T) {
	s := Start(t, Options{})
	lib := module.Version{Path: "example.com/lib", Version: "v1.2.0"}
	paths := []string{
		"/example.com/lib/@v/list",
		"/example.com/lib/@v/v1.2.0.zip",
		"/example.com/lib/@v/v1.2.0.info",
		"/sumdb/sum.golang.org/latest",
		"/sumdb/sum.golang.org/lookup/example.com/lib@v1.2.0",
		"/sumdb/sum.golang.org/tile/8/0/000.p/10",
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j, p := range paths {
				if code, _, body := get(t, s.URL+p); code != 200 && code != 503 {
					t.Errorf("%s: %d %q", p, code, body)
				}
				on := (i+j)%2 == 0
				s.SetZipMismatch(lib, on)
				s.SetInfoVersion(lib, map[bool]string{true: "v0.0.1"}[on])
				s.SetStatus("/example.com/lib/@v/list", map[bool]int{true: 503}[on])
			}
			s.Fork()
			_ = s.RequestLog()
			_ = s.Modules()
		})
	}
	wg.Wait()
	if got := len(s.RequestLog()); got != 8*len(paths) {
		t.Errorf("%d requests logged, want %d", got, 8*len(paths))
	}
}
