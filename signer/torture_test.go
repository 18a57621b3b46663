package signer

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// timeline is one history of the upstream log: records and their stored
// hashes. Forks copy a prefix; a timeline only ever grows.
type timeline struct {
	records [][]byte
	hashes  []tlog.Hash
	salt    string // of the records this timeline added
}

// ReadHashes implements tlog.HashReader.
func (tl *timeline) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		if x < 0 || x >= int64(len(tl.hashes)) {
			return nil, fmt.Errorf("hash %d not stored", x)
		}
		out[i] = tl.hashes[x]
	}
	return out, nil
}

// grow appends k records, module example.com/m<id> each.
func (tl *timeline) grow(k int) {
	for range k {
		id := int64(len(tl.records))
		path := fmt.Sprintf("example.com/m%d", id)
		h := func(s string) string {
			sum := sha256.Sum256([]byte(tl.salt + s))
			return "h1:" + base64.StdEncoding.EncodeToString(sum[:])
		}
		text := fmt.Appendf(nil, "%s v1.0.0 %s\n%s v1.0.0/go.mod %s\n", path, h(path), path, h(path+"mod"))
		hs, err := tlog.StoredHashes(id, text, tl)
		if err != nil {
			panic(err)
		}
		tl.records = append(tl.records, text)
		tl.hashes = append(tl.hashes, hs...)
	}
}

// fork returns a timeline that shares tl's first at records and then
// has size records of its own.
func (tl *timeline) fork(at, size int64, salt string) *timeline {
	nt := &timeline{
		records: tl.records[:at:at],
		hashes:  tl.hashes[:tlog.StoredHashCount(at):tlog.StoredHashCount(at)],
		salt:    salt,
	}
	nt.grow(int(size - at))
	return nt
}

func (tl *timeline) size() int64 { return int64(len(tl.records)) }

// treeHash is the hash of tl's first n records.
func (tl *timeline) treeHash(n int64) tlog.Hash {
	h, err := tlog.TreeHash(n, tl)
	if err != nil {
		panic(err)
	}
	return h
}

// holds reports whether tree is a tree of tl.
func (tl *timeline) holds(tree tlog.Tree) bool {
	if tree.N == 0 {
		return true // the empty tree is a prefix of every tree (its hash is the zero value)
	}
	return tree.N <= tl.size() && tl.treeHash(tree.N) == tree.Hash
}

// fault is one kind of bad upstream data.
type fault int

const (
	noFault fault = iota
	alteredTile
	truncatedTile
	missingTile
	badSignature
	numFaults
)

// tortureDB is an upstream checksum database whose timeline and faults
// the torture test changes as it runs.
type tortureDB struct {
	signer note.Signer
	mu     sync.Mutex
	cur    *timeline
	fault  fault
}

// state returns a snapshot of the timeline served now, its size and the
// fault of the moment. A snapshot can be read while the timeline grows.
func (db *tortureDB) state() (*timeline, int64, fault) {
	db.mu.Lock()
	defer db.mu.Unlock()
	snap := *db.cur
	return &snap, db.cur.size(), db.fault
}

// live returns the timeline served now, to grow or fork it.
func (db *tortureDB) live() *timeline {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.cur
}

func (db *tortureDB) set(tl *timeline, f fault) {
	db.mu.Lock()
	db.cur, db.fault = tl, f
	db.mu.Unlock()
}

// Signed implements sumdb.ServerOps.
func (db *tortureDB) Signed(context.Context) ([]byte, error) {
	tl, n, _ := db.state()
	return note.Sign(&note.Note{Text: string(tlog.FormatTree(tlog.Tree{N: n, Hash: tl.treeHash(n)}))}, db.signer)
}

// ReadRecords implements sumdb.ServerOps.
func (db *tortureDB) ReadRecords(_ context.Context, id, n int64) ([][]byte, error) {
	tl, size, _ := db.state()
	if id < 0 || id+n > size {
		return nil, os.ErrNotExist
	}
	return tl.records[id : id+n], nil
}

// Lookup implements sumdb.ServerOps.
func (db *tortureDB) Lookup(_ context.Context, m module.Version) (int64, error) {
	_, size, _ := db.state()
	id, err := strconv.ParseInt(strings.TrimPrefix(m.Path, "example.com/m"), 10, 64)
	if err != nil || m.Version != "v1.0.0" || id < 0 || id >= size {
		return 0, os.ErrNotExist
	}
	return id, nil
}

// ReadTileData implements sumdb.ServerOps.
func (db *tortureDB) ReadTileData(_ context.Context, t tlog.Tile) ([]byte, error) {
	tl, size, _ := db.state()
	if !inTreeReference(size, t) {
		return nil, os.ErrNotExist
	}
	return tlog.ReadTileData(t, tl)
}

// ReadRemote implements Remote, with the fault of the moment.
func (db *tortureDB) ReadRemote(ctx context.Context, path string) ([]byte, error) {
	rec := httptest.NewRecorder()
	sumdb.NewServer(db).ServeHTTP(rec, httptest.NewRequestWithContext(ctx, "GET", path, nil))
	if rec.Code != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %d", path, rec.Code)
	}
	body := rec.Body.Bytes()
	_, _, f := db.state()
	tile := strings.HasPrefix(path, "/tile/")
	switch {
	case f == alteredTile && tile:
		body[len(body)/2] ^= 0x40
	case f == truncatedTile && tile:
		body = body[:len(body)-1]
	case f == missingTile && tile:
		return nil, fmt.Errorf("GET %s: 404", path)
	case f == badSignature && !tile:
		i := bytes.LastIndexByte(body, ' ')
		body[i+10] ^= 1
	}
	return body, nil
}

// torture is the state of one torture run.
type torture struct {
	t        *testing.T
	rnd      *mrand.Rand
	db       *tortureDB
	store    *MemStore
	w        *Witness
	upKey    string
	entKey   string
	entSign  note.Signer
	lines    []*timeline // every timeline made, to find the witnessed one
	forkSalt int
}

func newTorture(t *testing.T, seed uint64) *torture {
	skey, vkey, err := note.GenerateKey(rand.Reader, "sum.golang.org")
	if err != nil {
		t.Fatal(err)
	}
	us, _ := note.NewSigner(skey)
	eskey, evkey, _ := note.GenerateKey(rand.Reader, "sum.golang.org")
	es, _ := note.NewSigner(eskey)
	honest := &timeline{salt: "honest"}
	honest.grow(3)
	tt := &torture{
		t: t, rnd: mrand.New(mrand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		db: &tortureDB{signer: us, cur: honest}, store: &MemStore{},
		upKey: vkey, entKey: evkey, entSign: es, lines: []*timeline{honest},
	}
	tt.restart()
	return tt
}

func (tt *torture) restart() {
	w, err := New(context.Background(), Config{Upstream: tt.upKey, Signer: tt.entSign, Store: tt.store, Remote: tt.db})
	if err != nil {
		tt.t.Fatalf("restart: %v", err)
	}
	tt.w = w
}

// witnessed returns the witnessed tree and the timeline that holds it.
func (tt *torture) witnessed() (tlog.Tree, *timeline) {
	tree, _ := tt.w.State()
	for _, tl := range tt.lines {
		if tl.holds(tree) {
			return tree, tl
		}
	}
	tt.t.Fatalf("the witnessed tree #%d %s is on no timeline the upstream signed", tree.N, tree.Hash)
	return tree, nil
}

// result is what one concurrent call returned.
type result struct {
	what   string
	tile   tlog.Tile
	data   []byte // a tile, a lookup answer or a co-signed note
	err    error
	forked bool // Forked() was true before the call
}

// TestWitnessTorture runs random sequences of upstream events (honest
// growth, forks inside stored full tiles, inside partial tiles and past
// the witnessed size, same-size trees with another root, altered,
// truncated and missing tiles, bad signatures, restarts) with concurrent
// lookups, and checks the witness's invariants after every step.
// MODGATE_TORTURE_SEED and MODGATE_TORTURE_STEPS change the fixed seed
// and the number of steps.
func TestWitnessTorture(t *testing.T) {
	seed, steps := uint64(20261201), 120
	if s := os.Getenv("MODGATE_TORTURE_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	if s := os.Getenv("MODGATE_TORTURE_STEPS"); s != "" {
		steps, _ = strconv.Atoi(s)
	}
	if testing.Short() {
		steps = min(steps, 30)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("torture seed %d, %d steps: MODGATE_TORTURE_SEED=%d go test -run TestWitnessTorture ./signer", seed, steps, seed)
		}
	})
	tt := newTorture(t, seed)
	for step := range steps {
		tt.db.set(tt.db.live(), noFault) // a fault lasts one step
		ev := tt.event()
		t.Logf("step %d: %s", step, ev.name)
		results := tt.concurrently(ev)
		tt.check(step, ev, results)
		if t.Failed() {
			return
		}
	}
}

// event is one thing that happens to the upstream or the gate.
type event struct {
	name string
	kind string // "grow", "fork", "fault", "restart", "clear"
	run  func()
}

func (tt *torture) event() event {
	tree, wtl := tt.witnessed()
	cur := tt.db.live()
	k := tt.rnd.IntN(10)
	if tt.w.Forked() && tt.rnd.IntN(2) == 0 {
		return event{"operator clears the fork", "clear", func() { tt.clear(wtl) }}
	}
	switch {
	case k < 3:
		n := 1 + tt.rnd.IntN(150)
		return event{fmt.Sprintf("grow by %d", n), "grow", func() { tt.grow(cur, n) }}
	case k < 5 && tree.N > 0:
		at := tt.rnd.Int64N(tree.N)
		size := tree.N + tt.rnd.Int64N(300)
		if tt.rnd.IntN(4) == 0 {
			size = tree.N // the same size, another root
		}
		return event{fmt.Sprintf("fork at %d of #%d to #%d", at, tree.N, size), "fork", func() { tt.fork(wtl, at, size) }}
	case k < 6:
		at := tree.N + tt.rnd.Int64N(wtl.size()-tree.N+1)
		size := at + 1 + tt.rnd.Int64N(100)
		return event{fmt.Sprintf("fork past the witnessed #%d at %d to #%d", tree.N, at, size), "fork", func() { tt.fork(wtl, at, size) }}
	case k < 8:
		f := fault(1 + tt.rnd.IntN(int(numFaults)-1))
		return event{fmt.Sprintf("fault %d", f), "fault", func() { tt.db.set(cur, f) }}
	case k < 9:
		return event{"restart", "restart", func() {}} // after the concurrent calls, see concurrently
	default:
		return event{"operator clears the fork", "clear", func() { tt.clear(wtl) }}
	}
}

func (tt *torture) grow(tl *timeline, n int) {
	tt.db.mu.Lock()
	defer tt.db.mu.Unlock()
	tl.grow(n)
}

func (tt *torture) fork(from *timeline, at, size int64) {
	tt.forkSalt++
	nt := from.fork(at, size, fmt.Sprintf("fork%d", tt.forkSalt))
	tt.lines = append(tt.lines, nt)
	tt.db.set(nt, noFault)
}

// clear puts the upstream back on the witnessed timeline and clears any
// fork evidence, as an operator would after talking to the upstream.
func (tt *torture) clear(wtl *timeline) {
	tt.db.set(wtl, noFault)
	if _, err := tt.w.ClearFork(context.Background(), "torture"); err != nil {
		tt.t.Errorf("ClearFork: %v", err)
	}
}

// concurrently runs lookups, tiles and latest calls from several
// goroutines while ev runs, and returns what they got.
func (tt *torture) concurrently(ev event) []result {
	w := tt.w
	tree, _ := w.State()
	_, size, _ := tt.db.state()
	var mu sync.Mutex
	var out []result
	var wg sync.WaitGroup
	for g := range 4 {
		seed := tt.rnd.Uint64()
		wg.Go(func() {
			rnd := mrand.New(mrand.NewPCG(seed, uint64(g)))
			for range 6 {
				r := call(w, rnd, max(size, tree.N))
				mu.Lock()
				out = append(out, r)
				mu.Unlock()
			}
		})
	}
	ev.run()
	wg.Wait()
	if ev.kind == "restart" {
		tt.restart()
	}
	return out
}

// call makes one random call on w.
func call(w *Witness, rnd *mrand.Rand, size int64) result {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r := result{forked: w.Forked()}
	switch k := rnd.IntN(10); {
	case k < 5:
		m := module.Version{Path: fmt.Sprintf("example.com/m%d", rnd.Int64N(size+3)), Version: "v1.0.0"}
		r.what = "lookup " + m.Path
		r.data, r.err = w.Lookup(ctx, m)
	case k < 8:
		r.tile = tlog.Tile{H: 8, L: rnd.IntN(3), N: rnd.Int64N(size/256 + 2), W: 1 + rnd.IntN(256)}
		if rnd.IntN(2) == 0 {
			r.tile.L = 0
			r.tile.N = rnd.Int64N(size/256 + 1)
			r.tile.W = max(1, min(256, int(size-r.tile.N*256)-rnd.IntN(3)))
		}
		r.what = "tile " + r.tile.Path()
		r.data, r.err = w.Tile(ctx, r.tile)
	default:
		r.what = "latest"
		r.data, _, r.err = w.Latest(ctx)
	}
	return r
}

// check checks the invariants after a step.
func (tt *torture) check(step int, ev event, results []result) {
	t, name := tt.t, ev.name
	tree, wtl := tt.witnessed()
	for _, r := range results {
		switch {
		case r.err != nil:
			if r.forked && ev.kind != "clear" && !errors.Is(r.err, ErrFork) {
				t.Errorf("step %d (%s): %s while forked: %v, want ErrFork", step, name, r.what, r.err)
			}
		case strings.HasPrefix(r.what, "tile "):
			want, err := tlog.ReadTileData(r.tile, wtl)
			if !inTree(tree.N, r.tile) || err != nil || !bytes.Equal(r.data, want) {
				t.Errorf("step %d (%s): served %s, not a tile of the witnessed tree #%d", step, name, r.what, tree.N)
			}
		case strings.HasPrefix(r.what, "lookup "):
			id, text, msg, err := tlog.ParseRecord(r.data)
			if err != nil || id >= tree.N || !bytes.Equal(text, wtl.records[id]) {
				t.Errorf("step %d (%s): served an unproven record for %s: %q", step, name, r.what, r.data)
				continue
			}
			tt.checkCoSigned(step, name, msg, wtl, tree)
		default:
			tt.checkCoSigned(step, name, r.data, wtl, tree)
		}
	}
	tt.checkStore(step, name, tree, wtl)
	tt.checkEvidence(step, name)
	tt.checkForkCaught(step, name)
}

// checkCoSigned checks a co-signed note: both keys verify it, and its
// tree is on the witnessed chain.
func (tt *torture) checkCoSigned(step int, name string, msg []byte, wtl *timeline, tree tlog.Tree) {
	for _, key := range []string{tt.entKey, tt.upKey} {
		v, _ := note.NewVerifier(key)
		n, err := note.Open(msg, note.VerifierList(v))
		if err != nil {
			tt.t.Errorf("step %d (%s): co-signed note does not verify: %v", step, name, err)
			return
		}
		ct, err := tlog.ParseTree([]byte(n.Text))
		if err != nil || ct.N > tree.N || !wtl.holds(ct) {
			tt.t.Errorf("step %d (%s): co-signed tree #%d is not on the witnessed chain (#%d)", step, name, ct.N, tree.N)
		}
	}
}

// checkStore checks that every stored tile and record belongs to the
// witnessed tree.
func (tt *torture) checkStore(step int, name string, tree tlog.Tree, wtl *timeline) {
	for key, v := range storedData(tt.t, tt.store) {
		path := strings.TrimPrefix(key, "sumdb/sum.golang.org/")
		if strings.HasPrefix(path, "lookup/") {
			id, text, _, err := tlog.ParseRecord([]byte(v))
			if err != nil || id >= tree.N || !bytes.Equal(text, wtl.records[id]) {
				tt.t.Errorf("step %d (%s): stored record %s is not of the witnessed tree", step, name, key)
			}
			continue
		}
		tile, err := tlog.ParseTilePath(path)
		want, werr := tlog.ReadTileData(tile, wtl)
		if err != nil || !inTree(tree.N, tile) || werr != nil || !bytes.Equal([]byte(v), want) {
			tt.t.Errorf("step %d (%s): stored %s is not a tile of the witnessed tree #%d", step, name, key, tree.N)
		}
	}
}

// checkEvidence checks that open evidence is sound: both notes signed by
// the upstream, their trees really inconsistent, the proof checking.
func (tt *torture) checkEvidence(step int, name string) {
	ev, err := tt.w.Evidence(context.Background())
	if err != nil {
		tt.t.Fatalf("step %d: evidence: %v", step, err)
	}
	if (len(ev) > 0) != tt.w.Forked() {
		tt.t.Errorf("step %d (%s): %d pieces of open evidence, Forked() = %v", step, name, len(ev), tt.w.Forked())
	}
	v, _ := note.NewVerifier(tt.upKey)
	for _, e := range ev {
		var trees []tlog.Tree
		for _, msg := range []string{e.OlderNote, e.NewerNote} {
			n, err := note.Open([]byte(msg), note.VerifierList(v))
			if err != nil {
				tt.t.Errorf("step %d (%s): evidence note does not verify: %v", step, name, err)
				return
			}
			tr, _ := tlog.ParseTree([]byte(n.Text))
			trees = append(trees, tr)
		}
		for _, tl := range tt.lines {
			if tl.holds(trees[0]) && tl.holds(trees[1]) {
				tt.t.Errorf("step %d (%s): evidence of a fork between trees #%d and #%d of one timeline",
					step, name, trees[0].N, trees[1].N)
			}
		}
		if err := e.CheckProof(); err != nil {
			tt.t.Errorf("step %d (%s): evidence proof: %v", step, name, err)
		}
	}
}

// checkForkCaught asks for the upstream's latest head when it serves no
// fault: a head off the witnessed timeline must be caught as a fork with
// evidence, and one on it must be accepted.
func (tt *torture) checkForkCaught(step int, name string) {
	cur, size, f := tt.db.state()
	if f != noFault {
		return
	}
	tree, wtl := tt.witnessed()
	forkedBefore := tt.w.Forked()
	_, got, err := tt.w.Latest(context.Background())
	onChain := size >= tree.N && cur.treeHash(tree.N) == tree.Hash ||
		size < tree.N && wtl.holds(tlog.Tree{N: size, Hash: cur.treeHash(size)})
	switch {
	case forkedBefore:
		if !errors.Is(err, ErrFork) {
			tt.t.Errorf("step %d (%s): Latest while forked: %v", step, name, err)
		}
	case onChain:
		if err != nil || got.N != size {
			tt.t.Errorf("step %d (%s): Latest of tree #%d on the witnessed timeline: %v", step, name, size, err)
		}
	case size < tree.N:
		// An older head off the timeline is proven a fork with the
		// witnessed tree's hashes; where those are not stored and the
		// upstream no longer serves them, it is refused unproven.
		if !errors.Is(err, ErrFork) && !errors.Is(err, ErrVerify) {
			tt.t.Errorf("step %d (%s): an older tree #%d off the witnessed timeline (#%d): %v", step, name, size, tree.N, err)
		}
	default:
		if !errors.Is(err, ErrFork) || !tt.w.Forked() {
			tt.t.Errorf("step %d (%s): a fork to tree #%d (witnessed #%d) is not caught: %v", step, name, size, tree.N, err)
		}
	}
	tt.checkEvidence(step, name)
}
