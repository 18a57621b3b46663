package vuln

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"time"
)

// ErrNoEntries is returned by Build for a zip without any usable entry:
// not a vulnerability database, and never one to swap in.
var ErrNoEntries = errors.New("no OSV entries under data/osv/")

// Source names the module version a database was built from.
type Source struct {
	// Module is the module path, golang.org/x/vulndb.
	Module string `json:"module"`
	// Version is its version, usually a pseudo-version.
	Version string `json:"version"`
	// Time is the commit time of the version (its .info Time): the
	// modified time of the entries, which the repository leaves zero.
	Time time.Time `json:"time"`
}

// Skip is an entry file that Build left out, and why.
type Skip struct {
	File   string `json:"file"`
	Reason string `json:"reason"`
}

// maxEntrySize bounds one OSV file; the largest real ones are tens of KB.
const maxEntrySize = 4 << 20

// maxKeptSkips bounds how many skipped files a DB lists (it counts all).
const maxKeptSkips = 50

// Build reads the zip of the vulnerability database module (size bytes
// of r) and builds the database of its data/osv/*.json entries. An entry
// that does not parse, whose file name is not its ID, or that repeats an
// ID is skipped and counted; it never fails the build. An entry whose
// modified time is zero gets src.Time. It fails only when the zip is not
// one or holds no usable entry.
func Build(r io.ReaderAt, size int64, src Source) (*DB, error) {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return nil, fmt.Errorf("vuln: reading the zip of %s@%s: %w", src.Module, src.Version, err)
	}
	prefix := src.Module + "@" + src.Version + "/data/osv/"
	b := &builder{db: &DB{Source: src, files: make(map[string]file)}, ids: map[string]bool{}}
	for _, f := range zr.File {
		name, ok := strings.CutPrefix(f.Name, prefix)
		if !ok || strings.Contains(name, "/") || path.Ext(name) != ".json" {
			continue
		}
		if err := b.add(f, name, src.Time); err != nil {
			b.skip(name, err)
		}
	}
	if len(b.entries) == 0 {
		return nil, fmt.Errorf("vuln: %s@%s: %w (%d skipped)", src.Module, src.Version, ErrNoEntries, b.db.Skipped)
	}
	if err := b.finish(); err != nil {
		return nil, err
	}
	return b.db, nil
}

// builder accumulates a DB.
type builder struct {
	db      *DB
	entries []*Entry
	ids     map[string]bool
	gz      *gzip.Writer
}

func (b *builder) skip(name string, err error) {
	b.db.Skipped++
	if len(b.db.Skips) < maxKeptSkips {
		b.db.Skips = append(b.db.Skips, Skip{File: name, Reason: err.Error()})
	}
}

// add reads, checks and stores one entry file.
func (b *builder) add(f *zip.File, name string, modified time.Time) error {
	if f.UncompressedSize64 > maxEntrySize {
		return fmt.Errorf("%w: larger than %d bytes", ErrEntry, maxEntrySize)
	}
	rc, err := f.Open()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrEntry, err)
	}
	data, err := io.ReadAll(io.LimitReader(rc, maxEntrySize+1))
	rc.Close()
	if err != nil {
		return fmt.Errorf("%w: reading: %v", ErrEntry, err)
	}
	e, err := ParseEntry(data)
	switch {
	case err != nil:
		return err
	case name != e.ID+".json":
		return fmt.Errorf("%w: file name is not its id %s", ErrEntry, e.ID)
	case b.ids[e.ID]:
		return fmt.Errorf("%w: id %s repeated", ErrEntry, e.ID)
	}
	if e.Modified.IsZero() {
		e.Modified = modified
		if data, err = setModified(data, modified); err != nil {
			return err
		}
	}
	if err := b.db.put("ID/"+e.ID, data, b.gzipper()); err != nil {
		return err
	}
	b.ids[e.ID] = true
	b.entries = append(b.entries, e)
	if e.Withdrawn != nil {
		b.db.Withdrawn++
	}
	return nil
}

func (b *builder) gzipper() *gzip.Writer {
	if b.gz == nil {
		b.gz, _ = gzip.NewWriterLevel(io.Discard, gzip.BestSpeed) // the level is valid
	}
	return b.gz
}

// setModified rewrites the entry's "modified" field, keeping every other
// field as it is.
func setModified(data []byte, t time.Time) ([]byte, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrEntry, err)
	}
	stamp, _ := json.Marshal(t.UTC()) // a time.Time always marshals
	fields["modified"] = stamp
	return json.Marshal(fields)
}

// The index files, as golang.org/x/vuln's client and vuln.go.dev have them.
type (
	dbMeta struct {
		Modified time.Time `json:"modified"`
	}
	moduleMeta struct {
		Path  string       `json:"path"`
		Vulns []moduleVuln `json:"vulns"`
	}
	moduleVuln struct {
		ID       string    `json:"id"`
		Modified time.Time `json:"modified"`
		Fixed    string    `json:"fixed,omitempty"`
	}
	vulnMeta struct {
		ID       string    `json:"id"`
		Modified time.Time `json:"modified"`
		Aliases  []string  `json:"aliases,omitempty"`
	}
)

// finish builds the index and the index files.
func (b *builder) finish() error {
	db := b.db
	slices.SortFunc(b.entries, func(x, y *Entry) int { return strings.Compare(x.ID, y.ID) })
	db.index = NewIndex(b.entries)
	db.Entries = len(b.entries)
	modules := map[string]*moduleMeta{}
	vulns := make([]vulnMeta, 0, len(b.entries))
	for _, e := range b.entries {
		if e.Modified.After(db.Modified) {
			db.Modified = e.Modified
		}
		vulns = append(vulns, vulnMeta{ID: e.ID, Modified: e.Modified, Aliases: e.Aliases})
		for _, a := range e.Affected {
			m := modules[a.Package.Name]
			if m == nil {
				m = &moduleMeta{Path: a.Package.Name, Vulns: []moduleVuln{}}
				modules[a.Package.Name] = m
			}
			var ranges [][]Event
			for _, r := range a.Ranges {
				if r.Type == "SEMVER" {
					ranges = append(ranges, sortedEvents(r.Events))
				}
			}
			m.Vulns = append(m.Vulns, moduleVuln{ID: e.ID, Modified: e.Modified, Fixed: bare(nonSupersededFix(ranges))})
		}
	}
	list := make([]*moduleMeta, 0, len(modules))
	for _, m := range modules {
		list = append(list, m)
	}
	slices.SortFunc(list, func(x, y *moduleMeta) int { return strings.Compare(x.Path, y.Path) })
	for name, v := range map[string]any{"index/db": dbMeta{db.Modified}, "index/modules": list, "index/vulns": vulns} {
		data, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("vuln: encoding %s: %w", name, err)
		}
		if err := db.put(name, data, b.gzipper()); err != nil {
			return err
		}
	}
	return nil
}

// gzipped compresses data with zw (reset for the purpose).
func gzipped(zw *gzip.Writer, data []byte) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(len(data)/4 + 64)
	zw.Reset(&buf)
	if _, err := zw.Write(data); err != nil {
		return nil, fmt.Errorf("vuln: compressing: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("vuln: compressing: %w", err)
	}
	return buf.Bytes(), nil
}
