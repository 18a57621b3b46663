package fakeupstream

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"sync"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb"
	"golang.org/x/mod/sumdb/tlog"
)

// forgedPath is the module path of the record that starts a forked tree.
const forgedPath = "fork.example/forged"

// gosumFunc returns the go.sum lines (the record) of a module version, or
// an error for which os.IsNotExist is true if there is none.
type gosumFunc func(path, vers string) ([]byte, error)

// tree is the checksum database behind a Server. It is a sumdb.ServerOps
// that delegates to the current sumdb.TestServer, and it remembers the
// records in id order so that Fork can rebuild them in a second tree
// signed by the same key.
type tree struct {
	skey  string
	gosum gosumFunc

	mu      sync.Mutex
	cur     *sumdb.TestServer
	offset  int64                     // forged records before the first real one
	order   []module.Version          // real records in id order
	records map[module.Version][]byte // record text of each entry of order
	forks   int                       // how many times Fork was called
}

var _ sumdb.ServerOps = (*tree)(nil)

// newTree returns an empty tree signed with skey that fetches records
// from gosum.
func newTree(skey string, gosum gosumFunc) *tree {
	return &tree{
		skey:    skey,
		gosum:   gosum,
		cur:     sumdb.NewTestServer(skey, gosum),
		records: make(map[module.Version][]byte),
	}
}

// current returns the TestServer that answers now.
func (t *tree) current() *sumdb.TestServer {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.cur
}

// Signed returns the signed tree head of the current tree.
func (t *tree) Signed(ctx context.Context) ([]byte, error) {
	return t.current().Signed(ctx)
}

// ReadRecords returns records id through id+n-1 of the current tree.
func (t *tree) ReadRecords(ctx context.Context, id, n int64) ([][]byte, error) {
	return t.current().ReadRecords(ctx, id, n)
}

// ReadTileData returns the hash tile t of the current tree.
func (t *tree) ReadTileData(ctx context.Context, tile tlog.Tile) ([]byte, error) {
	return t.current().ReadTileData(ctx, tile)
}

// Lookup returns the record id of m, adding the record to the current
// tree if it is not there yet. Lookups are serialized, so the records of
// a sequence of lookups get consecutive ids.
func (t *tree) Lookup(ctx context.Context, m module.Version) (int64, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	id, err := t.cur.Lookup(ctx, m)
	if err != nil {
		return 0, err
	}
	if id != t.offset+int64(len(t.order)) {
		return id, nil // already in the tree
	}
	recs, err := t.cur.ReadRecords(ctx, id, 1)
	if err != nil {
		return 0, fmt.Errorf("read new record %d: %w", id, err)
	}
	t.order = append(t.order, m)
	t.records[m] = recs[0]
	return id, nil
}

// size returns the number of records in the current tree.
func (t *tree) size() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.offset + int64(len(t.order))
}

// fork replaces the current tree with one signed by the same key whose
// first record is a forged line and whose other records are the real ones
// in the same order. The new tree is not an extension of any tree head
// served before, so a client that saw one reports a security error.
func (t *tree) fork(ctx context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.forks++
	forged := module.Version{Path: forgedPath, Version: fmt.Sprintf("v0.0.%d", t.forks)}
	forgedRec := forgedRecord(forged)
	ts := sumdb.NewTestServer(t.skey, func(path, vers string) ([]byte, error) {
		m := module.Version{Path: path, Version: vers}
		if m == forged {
			return forgedRec, nil
		}
		if rec, ok := t.records[m]; ok {
			return rec, nil
		}
		return t.gosum(path, vers)
	})
	if _, err := ts.Lookup(ctx, forged); err != nil {
		return fmt.Errorf("fork: add forged record: %w", err)
	}
	for _, m := range t.order {
		if _, err := ts.Lookup(ctx, m); err != nil {
			return fmt.Errorf("fork: copy record %s: %w", m, err)
		}
	}
	t.cur, t.offset = ts, 1
	return nil
}

// forgedRecord returns well-formed go.sum lines for a module that does
// not exist, with hashes derived from its version.
func forgedRecord(m module.Version) []byte {
	zipSum := sha256.Sum256([]byte("zip " + m.String()))
	modSum := sha256.Sum256([]byte("mod " + m.String()))
	return fmt.Appendf(nil, "%s %s h1:%s\n%s %s/go.mod h1:%s\n",
		m.Path, m.Version, base64.StdEncoding.EncodeToString(zipSum[:]),
		m.Path, m.Version, base64.StdEncoding.EncodeToString(modSum[:]))
}
