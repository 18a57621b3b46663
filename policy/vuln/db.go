package vuln

import (
	"bytes"
	"compress/gzip"
	"net/http"
	"strings"
	"time"
)

// DB is a built vulnerability database: the files govulncheck reads and
// the index the policy asks. It is never modified once built, so a gate
// swaps a new one in whole and readers never see half of one.
type DB struct {
	// Source is the module version it was built from.
	Source Source `json:"source"`
	// Entries is the number of entries it holds, withdrawn ones included.
	Entries int `json:"entries"`
	// Withdrawn is the number of withdrawn entries among them.
	Withdrawn int `json:"withdrawn"`
	// Skipped is the number of entry files left out, and Skips the first
	// of them with the reason.
	Skipped int    `json:"skipped"`
	Skips   []Skip `json:"skips,omitempty"`
	// Modified is the newest modified time of its entries: the
	// Last-Modified of every answer.
	Modified time.Time `json:"modified"`

	index *Index
	files map[string]file // by endpoint: "index/db", "ID/GO-2021-0113"
}

// file is one endpoint, plain and gzipped.
type file struct{ plain, gz []byte }

// put stores an endpoint's data and its gzipped form.
func (db *DB) put(endpoint string, data []byte, zw *gzip.Writer) error {
	gz, err := gzipped(zw, data)
	if err != nil {
		return err
	}
	db.files[endpoint] = file{plain: data, gz: gz}
	return nil
}

// Affected returns the entries that affect mod@vers (see Index.Affected).
func (db *DB) Affected(mod, vers string) []Match { return db.index.Affected(mod, vers) }

// Index is the database's index by module path.
func (db *DB) Index() *Index { return db.index }

// File returns the data of an endpoint path as govulncheck asks for it,
// such as "index/modules.json.gz" or "ID/GO-2021-0113.json", and reports
// whether it exists.
func (db *DB) File(name string) ([]byte, bool) {
	if base, ok := strings.CutSuffix(name, ".json.gz"); ok {
		f, ok := db.files[base]
		return f.gz, ok
	}
	if base, ok := strings.CutSuffix(name, ".json"); ok {
		f, ok := db.files[base]
		return f.plain, ok
	}
	return nil, false
}

// ServeHTTP serves the database at the root of r.URL.Path (the caller
// strips any prefix): index/db.json, index/modules.json,
// index/vulns.json and ID/<id>.json, each also as .json.gz (gzip bytes,
// as govulncheck's client reads them, not a Content-Encoding). Answers
// carry Last-Modified (the entries' modified time) and an ETag of the
// source version, so If-Modified-Since and If-None-Match answer 304.
func (db *DB) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "modgate: method "+r.Method+" not allowed: only GET and HEAD", http.StatusMethodNotAllowed)
		return
	}
	name := strings.TrimPrefix(r.URL.Path, "/")
	data, ok := db.File(name)
	if !ok {
		http.Error(w, "modgate: "+name+": not in the vulnerability database (it serves index/db.json, "+
			"index/modules.json, index/vulns.json and ID/<id>.json, each also .json.gz)", http.StatusNotFound)
		return
	}
	h := w.Header()
	if strings.HasSuffix(name, ".gz") {
		h.Set("Content-Type", "application/gzip")
	} else {
		h.Set("Content-Type", "application/json")
	}
	h.Set("ETag", `"`+db.Source.Version+"/"+name+`"`)
	h.Set("Cache-Control", "public, max-age=300")
	http.ServeContent(w, r, "", db.Modified, bytes.NewReader(data))
}
