package fakeupstream

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// NoteFault is how the checksum database's signed tree notes are
// tampered with, in /latest and at the end of every lookup.
type NoteFault int

// The note faults.
const (
	// NoteOK serves the notes as signed.
	NoteOK NoteFault = iota
	// NoteBadSignature flips a bit of the signature: the key is the
	// database's, the signature does not verify.
	NoteBadSignature
	// NoteUnknownKey replaces the signature with one by another key of the
	// same name, which no client knows.
	NoteUnknownKey
)

// LookupFault is how a lookup answer is tampered with.
type LookupFault int

// The lookup faults.
const (
	// LookupOK serves the lookup as the database answers it.
	LookupOK LookupFault = iota
	// LookupForgedRecord answers with record text that is not in the tree:
	// the go.sum line of the zip served under SetZipMismatch, with the real
	// id. A compromised upstream would need this to pass off its zip.
	LookupForgedRecord
	// LookupWrongID answers with the real record text under the id of
	// another record.
	LookupWrongID
	// LookupIDBeyond answers with the real record text under an id past
	// the end of the tree.
	LookupIDBeyond
)

// tampering is the checksum-database fault state of a Server.
type tampering struct {
	mu      sync.Mutex
	note    NoteFault
	other   note.Signer // the unknown key of NoteUnknownKey
	lookups map[module.Version]LookupFault
	tiles   map[string]bool // tile paths below the database ("tile/8/0/000.p/5")
}

// SetNoteFault tampers with the signed tree notes served from now on (in
// /latest and in lookups); NoteOK stops it. The sumdb faults (this one,
// SetLookupFault and SetTileAltered) answer through a handler on the
// /sumdb/<name>/ prefix, so a Handle of a longer prefix still wins and a
// SetStatus under that prefix does not apply while one is on.
func (s *Server) SetNoteFault(f NoteFault) {
	t := &s.tamper
	t.mu.Lock()
	t.note = f
	if f == NoteUnknownKey && t.other == nil {
		skey, _, err := note.GenerateKey(rand.Reader, s.name)
		if err == nil {
			t.other, _ = note.NewSigner(skey)
		}
	}
	t.mu.Unlock()
	s.syncTamperHandler()
}

// SetLookupFault tampers with the lookup answers for m; LookupOK stops it.
func (s *Server) SetLookupFault(m module.Version, f LookupFault) {
	t := &s.tamper
	t.mu.Lock()
	if t.lookups == nil {
		t.lookups = make(map[module.Version]LookupFault)
	}
	setOrDelete(t.lookups, m, f, f != LookupOK)
	t.mu.Unlock()
	s.syncTamperHandler()
}

// SetTileAltered makes the hash tile at path (below the database, as in
// "tile/8/0/000.p/5" or "tile/8/0/000") be served with one byte of its
// first hash changed; false restores it.
func (s *Server) SetTileAltered(path string, on bool) {
	t := &s.tamper
	t.mu.Lock()
	if t.tiles == nil {
		t.tiles = make(map[string]bool)
	}
	setOrDelete(t.tiles, strings.TrimPrefix(path, "/"), true, on)
	t.mu.Unlock()
	s.syncTamperHandler()
}

// TilePath returns the path of the level-0 hash tile that holds the last
// record of the current tree, as the checksum database serves it: for
// example "tile/8/0/000.p/11", or "tile/8/0/001" once the tree has 512
// records.
func (s *Server) TilePath() string {
	n := s.TreeSize()
	return tlog.TileForIndex(8, tlog.StoredHashIndex(0, n-1)).Path()
}

// syncTamperHandler installs the sumdb tampering handler while a fault is
// on, and removes it when none is.
func (s *Server) syncTamperHandler() {
	t := &s.tamper
	t.mu.Lock()
	on := t.note != NoteOK || len(t.lookups) > 0 || len(t.tiles) > 0
	t.mu.Unlock()
	var h http.HandlerFunc
	if on {
		h = s.serveTampered
	}
	s.Handle("/sumdb/"+s.name+"/", h)
}

// serveTampered answers a checksum-database request as the database
// would, then applies the faults that are on.
func (s *Server) serveTampered(w http.ResponseWriter, r *http.Request) {
	rec := httptest.NewRecorder()
	s.serveSumDB(rec, r)
	body := rec.Body.Bytes()
	if rec.Code == http.StatusOK {
		rest := strings.TrimPrefix(r.URL.Path, "/sumdb/"+s.name+"/")
		switch {
		case rest == "latest":
			body = s.tamperNote(body)
		case strings.HasPrefix(rest, "lookup/"):
			body = s.tamperLookup(rest, body)
		case strings.HasPrefix(rest, "tile/"):
			body = s.tamperTile(rest, body)
		}
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(rec.Code)
	w.Write(body)
}

// tamperNote applies the note fault to a signed note.
func (s *Server) tamperNote(msg []byte) []byte {
	t := &s.tamper
	t.mu.Lock()
	f, other := t.note, t.other
	t.mu.Unlock()
	i := bytes.LastIndex(msg, []byte("\n\n"))
	if f == NoteOK || i < 0 {
		return msg
	}
	text, sigs := msg[:i+1], msg[i+2:]
	switch f {
	case NoteBadSignature:
		line, _, _ := bytes.Cut(sigs, []byte("\n"))
		j := bytes.LastIndexByte(line, ' ')
		sig, err := base64.StdEncoding.DecodeString(string(line[j+1:]))
		if j < 0 || err != nil || len(sig) < 5 {
			return msg
		}
		sig[len(sig)-1] ^= 0x01
		return fmt.Appendf(bytes.Clone(text), "\n%s %s\n", line[:j], base64.StdEncoding.EncodeToString(sig))
	case NoteUnknownKey:
		if other == nil {
			return msg
		}
		signed, err := note.Sign(&note.Note{Text: string(text)}, other)
		if err != nil {
			return msg
		}
		return signed
	}
	return msg
}

// tamperLookup applies the lookup fault of the looked-up module, then the
// note fault, to a lookup answer.
func (s *Server) tamperLookup(rest string, body []byte) []byte {
	id, text, signed, err := tlog.ParseRecord(body)
	if err != nil {
		return body
	}
	m := s.lookupTarget(strings.TrimPrefix(rest, "lookup/"))
	t := &s.tamper
	t.mu.Lock()
	f := t.lookups[m]
	t.mu.Unlock()
	switch f {
	case LookupForgedRecord:
		if mv := s.lookup(m); mv != nil {
			if h, err := hashZip(mv.altZip); err == nil {
				text = fmt.Appendf(nil, "%s %s %s\n%s %s/go.mod %s\n", m.Path, m.Version, h, m.Path, m.Version, mv.modH1)
			}
		}
	case LookupWrongID:
		if id > 0 {
			id--
		} else {
			id++
		}
	case LookupIDBeyond:
		id = s.TreeSize()
	}
	out, err := tlog.FormatRecord(id, text)
	if err != nil {
		return body
	}
	return append(out, s.tamperNote(signed)...)
}

// lookupTarget parses the escaped "path@version" of a lookup.
func (s *Server) lookupTarget(target string) module.Version {
	i := strings.LastIndexByte(target, '@')
	if i < 0 {
		return module.Version{}
	}
	p, err1 := module.UnescapePath(target[:i])
	v, err2 := module.UnescapeVersion(target[i+1:])
	if err1 != nil || err2 != nil {
		return module.Version{}
	}
	return module.Version{Path: p, Version: v}
}

// tamperTile changes a byte of the first hash of an altered tile.
func (s *Server) tamperTile(rest string, body []byte) []byte {
	t := &s.tamper
	t.mu.Lock()
	on := t.tiles[rest]
	t.mu.Unlock()
	if !on || len(body) == 0 {
		return body
	}
	out := bytes.Clone(body)
	out[0] ^= 0xff
	return out
}
