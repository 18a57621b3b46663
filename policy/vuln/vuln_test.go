package vuln_test

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/fakeupstream"
	"github.com/modgate/modgate/policy/vuln"
)

var commit = time.Date(2026, 11, 5, 23, 49, 57, 0, time.UTC)

// buildFake builds the database of fakeupstream's entries (plus extra).
func buildFake(t testing.TB, extra map[string][]byte) *vuln.DB {
	t.Helper()
	src := vuln.Source{Module: "golang.org/x/vulndb", Version: "v0.0.0-20261105234957-e22db6528018", Time: commit}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	files := fakeupstream.VulnDBEntries()
	for k, v := range extra {
		files[k] = v
	}
	for name, data := range files {
		w, err := zw.Create(src.Module + "@" + src.Version + "/data/osv/" + name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
	}
	w, _ := zw.Create(src.Module + "@" + src.Version + "/go.mod")
	w.Write([]byte("module golang.org/x/vulndb\n"))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := vuln.Build(bytes.NewReader(buf.Bytes()), int64(buf.Len()), src)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func TestBuildCounts(t *testing.T) {
	db := buildFake(t, map[string][]byte{
		"GO-2099-0100.json": []byte(`{"id": "GO-2099-0101", "affected": []}`), // name is not its id
		"README.json":       []byte(`{"id": "README"}`),
	})
	if db.Entries != 4 || db.Skipped != 3 || db.Withdrawn != 1 {
		t.Errorf("entries %d skipped %d withdrawn %d, want 4, 3 and 1 (skips %+v)", db.Entries, db.Skipped,
			db.Withdrawn, db.Skips)
	}
	if !db.Modified.Equal(commit) {
		t.Errorf("Modified %v, want the commit time %v", db.Modified, commit)
	}
	var e map[string]any
	data, _ := db.File("ID/" + fakeupstream.VulnLib + ".json")
	if err := json.Unmarshal(data, &e); err != nil || e["modified"] != "2026-11-05T23:49:57Z" || e["summary"] == nil {
		t.Errorf("entry as served: %v %v", e, err)
	}
}

func TestBuildRefusesNoEntries(t *testing.T) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, _ := zw.Create("golang.org/x/vulndb@v1.0.0/data/osv/GO-2099-0001.json")
	w.Write([]byte("{"))
	zw.Close()
	_, err := vuln.Build(bytes.NewReader(buf.Bytes()), int64(buf.Len()), vuln.Source{Module: "golang.org/x/vulndb", Version: "v1.0.0"})
	if err == nil {
		t.Fatal("a zip of malformed entries built")
	}
	if _, err := vuln.Build(bytes.NewReader([]byte("not a zip")), 9, vuln.Source{}); err == nil {
		t.Fatal("not a zip built")
	}
}

func TestAffected(t *testing.T) {
	db := buildFake(t, nil)
	tests := []struct {
		mod, vers string
		want      []string
	}{
		{"example.com/lib", "v1.0.0", []string{fakeupstream.VulnLib, fakeupstream.VulnWithdrawn}},
		{"example.com/lib", "v1.1.0", []string{fakeupstream.VulnWithdrawn}},
		{"example.com/lib", "v1.1.0-pre", []string{fakeupstream.VulnLib, fakeupstream.VulnWithdrawn}},
		{"example.com/lib", "v1.0.1-0.20240101000000-abcdefabcdef", []string{fakeupstream.VulnLib, fakeupstream.VulnWithdrawn}},
		{"example.com/bad", "v1.0.0", nil},
		{"example.com/bad", "v1.1.0", []string{fakeupstream.VulnUnreviewed}},
		{"example.com/bad", "v1.1.5+incompatible", []string{fakeupstream.VulnUnreviewed}},
		{"example.com/bad", "v1.2.0", nil},
		{"example.com/dep", "v0.0.0-20240101000000-aaaaaaaaaaaa", []string{fakeupstream.VulnPseudo}},
		{"example.com/dep", fakeupstream.VulnPseudoFixed, nil},
		{"example.com/dep", "v0.0.0-20240701000000-aaaaaaaaaaaa", nil},
		{"example.com/dep", "v1.0.0", nil},
		{"example.com/other", "v1.0.0", nil},
	}
	for _, tt := range tests {
		t.Run(tt.mod+"@"+tt.vers, func(t *testing.T) {
			var got []string
			for _, m := range db.Affected(tt.mod, tt.vers) {
				got = append(got, m.ID)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Affected = %v, want %v", got, tt.want)
			}
		})
	}
	m := db.Affected("example.com/bad", "v1.1.0")[0]
	if m.Reviewed || m.Fixed != "v1.2.0" {
		t.Errorf("unreviewed match %+v, want Reviewed false and Fixed v1.2.0", m)
	}
	if m := db.Affected("example.com/lib", "v1.0.0"); !m[1].Withdrawn || m[0].Withdrawn || m[0].Fixed != "v1.1.0" ||
		m[0].FixedOrder != 1 || m[1].FixedOrder != 0 {
		t.Errorf("lib matches %+v", m)
	}
}

func TestServe(t *testing.T) {
	db := buildFake(t, nil)
	get := func(path string, hdr http.Header) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, path, nil)
		for k, v := range hdr {
			r.Header[k] = v
		}
		w := httptest.NewRecorder()
		db.ServeHTTP(w, r)
		return w
	}
	w := get("/index/modules.json.gz", nil)
	if w.Code != 200 || w.Header().Get("Last-Modified") != commit.Format(http.TimeFormat) {
		t.Fatalf("modules.json.gz: %d %v", w.Code, w.Header())
	}
	zr, err := gzip.NewReader(w.Body)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(zr)
	var mods []struct {
		Path  string
		Vulns []struct{ ID, Fixed string }
	}
	if err := json.Unmarshal(raw, &mods); err != nil {
		t.Fatal(err)
	}
	if len(mods) != 3 || mods[2].Path != "example.com/lib" || mods[2].Vulns[0].Fixed != "1.1.0" {
		t.Errorf("modules index: %s", raw)
	}
	for _, p := range []string{"/index/db.json", "/index/vulns.json.gz", "/ID/GO-2099-0001.json.gz"} {
		if w := get(p, nil); w.Code != 200 {
			t.Errorf("%s: %d", p, w.Code)
		}
	}
	for _, p := range []string{"/ID/GO-2099-0005.json", "/index/other.json", "/../x"} {
		if w := get(p, nil); w.Code != 404 {
			t.Errorf("%s: %d, want 404", p, w.Code)
		}
	}
	if w := get("/index/db.json.gz", http.Header{"If-Modified-Since": {commit.Format(http.TimeFormat)}}); w.Code != 304 {
		t.Errorf("If-Modified-Since the commit time: %d, want 304", w.Code)
	}
	old := commit.Add(-time.Hour).Format(http.TimeFormat)
	if w := get("/index/db.json.gz", http.Header{"If-Modified-Since": {old}}); w.Code != 200 {
		t.Errorf("If-Modified-Since an hour before: %d, want 200", w.Code)
	}
	etag := get("/index/db.json", nil).Header().Get("ETag")
	if w := get("/index/db.json", http.Header{"If-None-Match": {etag}}); etag == "" || w.Code != 304 {
		t.Errorf("If-None-Match %s: %d, want 304", etag, w.Code)
	}
}

func BenchmarkAffected(b *testing.B) {
	db := buildFake(b, nil)
	b.ReportAllocs()
	for b.Loop() {
		db.Affected("example.com/lib", "v1.1.0")
		db.Affected("example.com/unaffected", "v1.0.0")
	}
}
