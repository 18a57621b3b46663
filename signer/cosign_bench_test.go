package signer

import (
	"context"
	"crypto/rand"
	"errors"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// noRemote is a Remote for benchmarks that never reach the upstream.
type noRemote struct{}

func (noRemote) ReadRemote(context.Context, string) ([]byte, error) {
	return nil, errors.New("no remote")
}

// benchNote returns a tree note signed by a fresh upstream key, a
// Witness trusting that key, and the note opened.
func benchNote(b *testing.B) ([]byte, *Witness, *note.Note) {
	b.Helper()
	uskey, uvkey, err := note.GenerateKey(rand.Reader, "sum.golang.org")
	if err != nil {
		b.Fatal(err)
	}
	eskey, _, err := note.GenerateKey(rand.Reader, "sum.golang.org")
	if err != nil {
		b.Fatal(err)
	}
	us, _ := note.NewSigner(uskey)
	es, _ := note.NewSigner(eskey)
	tree := tlog.Tree{N: 49_000_000, Hash: tlog.RecordHash([]byte("x"))}
	msg, err := note.Sign(&note.Note{Text: string(tlog.FormatTree(tree))}, us)
	if err != nil {
		b.Fatal(err)
	}
	w, err := New(context.Background(), Config{Upstream: uvkey, Signer: es, Store: &MemStore{}, Remote: noRemote{}})
	if err != nil {
		b.Fatal(err)
	}
	n, _, err := w.open(msg)
	if err != nil {
		b.Fatal(err)
	}
	return msg, w, n
}

// BenchmarkCoSign adds the enterprise signature to a verified tree note:
// the work of every lookup answered with a new tree head.
func BenchmarkCoSign(b *testing.B) {
	_, w, n := benchNote(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := w.sign(context.Background(), n); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyAndCoSign verifies an upstream tree note and co-signs
// it: the note work of witnessing a new tree head (tile reads aside).
func BenchmarkVerifyAndCoSign(b *testing.B) {
	msg, w, _ := benchNote(b)
	b.ReportAllocs()
	for b.Loop() {
		n, _, err := w.open(msg)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := w.sign(context.Background(), n); err != nil {
			b.Fatal(err)
		}
	}
}
