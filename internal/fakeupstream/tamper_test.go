package fakeupstream

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

var libV110 = module.Version{Path: "example.com/lib", Version: "v1.1.0"}

// openNote verifies a signed note with the server's key.
func openNote(s *Server, msg []byte) error {
	v, err := note.NewVerifier(s.VerifierKey())
	if err != nil {
		return err
	}
	_, err = note.Open(msg, note.VerifierList(v))
	return err
}

func TestNoteFaults(t *testing.T) {
	s := Start(t, Options{})
	lookup := s.SumDBURL() + "/lookup/example.com/lib@v1.1.0"
	for _, tt := range []struct {
		fault NoteFault
		check func(error) bool
	}{
		{NoteOK, func(err error) bool { return err == nil }},
		{NoteBadSignature, func(err error) bool { return err != nil && strings.Contains(err.Error(), "invalid signature") }},
		{NoteUnknownKey, func(err error) bool { var u *note.UnverifiedNoteError; return errors.As(err, &u) }},
	} {
		s.SetNoteFault(tt.fault)
		_, _, latest := get(t, s.SumDBURL()+"/latest")
		if err := openNote(s, latest); !tt.check(err) {
			t.Errorf("fault %d: /latest note: %v", tt.fault, err)
		}
		_, _, rec := get(t, lookup)
		_, _, signed, err := tlog.ParseRecord(rec)
		if err != nil {
			t.Fatalf("fault %d: lookup: %v", tt.fault, err)
		}
		if err := openNote(s, signed); !tt.check(err) {
			t.Errorf("fault %d: lookup note: %v", tt.fault, err)
		}
	}
}

func TestLookupFaults(t *testing.T) {
	s := Start(t, Options{})
	lookup := s.SumDBURL() + "/lookup/example.com/lib@v1.1.0"
	_, _, real := get(t, lookup)
	realID, realText, _, _ := tlog.ParseRecord(real)
	otherID := realID - 1
	if realID == 0 {
		otherID = 1
	}
	for _, tt := range []struct {
		fault    LookupFault
		wantID   int64
		wantText bool // the real text
	}{
		{LookupOK, realID, true},
		{LookupForgedRecord, realID, false},
		{LookupWrongID, otherID, true},
		{LookupIDBeyond, s.TreeSize(), true},
	} {
		s.SetLookupFault(libV110, tt.fault)
		_, _, rec := get(t, lookup)
		id, text, signed, err := tlog.ParseRecord(rec)
		if err != nil || openNote(s, signed) != nil {
			t.Fatalf("fault %d: %v", tt.fault, err)
		}
		if id != tt.wantID || bytes.Equal(text, realText) != tt.wantText {
			t.Errorf("fault %d: id %d text %q; want id %d, real text %v", tt.fault, id, text, tt.wantID, tt.wantText)
		}
	}
	s.SetLookupFault(libV110, LookupOK)
	if _, _, rec := get(t, lookup); !bytes.Equal(rec, real) {
		t.Errorf("LookupOK did not restore the answer")
	}
}

func TestTileAltered(t *testing.T) {
	s := Start(t, Options{})
	path := s.TilePath()
	if want := "tile/8/0/000.p/"; !strings.HasPrefix(path, want) {
		t.Fatalf("TilePath = %q, want %s<N>", path, want)
	}
	_, _, real := get(t, s.SumDBURL()+"/"+path)
	s.SetTileAltered(path, true)
	_, _, bad := get(t, s.SumDBURL()+"/"+path)
	if len(bad) != len(real) || bytes.Equal(bad[:tlog.HashSize], real[:tlog.HashSize]) || !bytes.Equal(bad[tlog.HashSize:], real[tlog.HashSize:]) {
		t.Errorf("altered tile: want only the first hash changed")
	}
	s.SetTileAltered(path, false)
	if _, _, again := get(t, s.SumDBURL()+"/"+path); !bytes.Equal(again, real) {
		t.Errorf("tile not restored")
	}
	if _, err := s.AddFillers(300); err != nil {
		t.Fatal(err)
	}
	if got := s.TilePath(); !strings.HasPrefix(got, "tile/8/0/001.p/") {
		t.Errorf("after 300 fillers TilePath = %q, want tile/8/0/001.p/<N>", got)
	}
	if code, _, full := get(t, s.SumDBURL()+"/tile/8/0/000"); code != 200 || !bytes.HasPrefix(full, real) {
		t.Errorf("the full tile 000 is not an extension of the partial one")
	}
}

func TestZipStreamFaults(t *testing.T) {
	s := Start(t, Options{})
	u := s.URL + ZipPath(libV110)
	real := s.lookup(libV110).zip

	s.SetZipTruncated(libV110, TruncateShort)
	if code, _, body := get(t, u); code != 200 || len(body) != len(real)/2 {
		t.Errorf("TruncateShort: %d, %d bytes", code, len(body))
	}
	s.SetZipTruncated(libV110, TruncateAbort)
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(resp.Body); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("TruncateAbort: read %v, want unexpected EOF", err)
	}
	resp.Body.Close()

	for _, declared := range []bool{true, false} {
		s.ServeHugeZip(libV110, 600<<20, declared)
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := io.CopyN(io.Discard, resp.Body, 8<<20)
		resp.Body.Close()
		if want := int64(-1); declared {
			want = 600 << 20
			if resp.ContentLength != want {
				t.Errorf("declared huge zip: Content-Length %d", resp.ContentLength)
			}
		} else if resp.ContentLength != want {
			t.Errorf("streamed huge zip: Content-Length %d, want none", resp.ContentLength)
		}
		if n != 8<<20 {
			t.Errorf("huge zip: read %d bytes", n)
		}
	}

	s.SetStall(libV110, StallInBody, time.Minute)
	client := &http.Client{Timeout: 300 * time.Millisecond}
	if resp, err := client.Get(u); err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Errorf("stalled body read without error")
		}
	}
	s.SetStall(libV110, 0, 0)
	if code, _, body := get(t, u); code != 200 || !bytes.Equal(body, real) {
		t.Errorf("zip not restored after the stall: %d", code)
	}

	s.SetHugeHeaders("/example.com/lib/@v/list", 100<<10)
	tr := &http.Transport{MaxResponseHeaderBytes: 64 << 10}
	defer tr.CloseIdleConnections()
	if _, err := (&http.Client{Transport: tr}).Get(s.URL + "/example.com/lib/@v/list"); err == nil || !strings.Contains(err.Error(), "header") {
		t.Errorf("huge headers: %v, want an error about headers", err)
	}
}

func TestAddLargeModule(t *testing.T) {
	s := Start(t, Options{})
	m := module.Version{Path: "example.com/large", Version: "v1.0.0"}
	file, err := s.AddLargeModule(m, 3<<20, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	code, _, body := get(t, s.URL+ZipPath(m))
	if code != 200 || !bytes.Equal(body, want) {
		t.Fatalf("large zip: %d, %d bytes, want the %d bytes of %s", code, len(body), len(want), file)
	}
	checkZip(t, m, body)
	zipH1, _ := s.GoSum(m)
	if got := zipHash(t, body); got != zipH1 {
		t.Errorf("large zip hash %s, checksum database says %s", got, zipH1)
	}
	_, _, rec := get(t, s.SumDBURL()+"/lookup/example.com/large@v1.0.0")
	if !strings.Contains(string(rec), "example.com/large v1.0.0 "+zipH1) {
		t.Errorf("lookup of the large module: %q", rec)
	}
}
