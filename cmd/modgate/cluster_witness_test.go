package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// countKeys counts the rows of the witness table whose key starts with prefix.
func (c *testCluster) countKeys(prefix string) int {
	c.t.Helper()
	var n int
	if err := c.db().QueryRow(context.Background(),
		"SELECT count(*) FROM modgate_witness WHERE starts_with(key, $1)", prefix).Scan(&n); err != nil {
		c.t.Fatal(err)
	}
	return n
}

// TestClusterForkClosesEveryGate is case 2 of issue 12: a fork shown to
// gate 0 is refused by all three gates (each learns it from the database
// within a second, with no traffic of its own), the evidence is recorded
// once, and a clear-fork on gate 2 opens all three.
func TestClusterForkClosesEveryGate(t *testing.T) {
	c := startCluster(t, 3)
	for i := range 3 {
		c.client(i, viaIntercept, appMod).must(appDownload...)
	}
	c.up.Fork()
	fresh, err := c.up.AddFillers(1) // a record no gate has: gate 0 reads the forked tree
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.client(0, viaIntercept, appMod).run("mod", "download", fresh[0].String())
	if err == nil {
		t.Fatalf("go mod download through gate 0 after a fork succeeded:\n%s", out)
	}
	for i := range 3 {
		d := eventually(t, 2*time.Second, fmt.Sprintf("gate %d reports the fork", i),
			func() bool { return c.witnessStatus(i).Forked })
		if d > time.Second {
			t.Errorf("gate %d reported the fork after %s, want within 1s", i, d)
		}
	}
	for _, i := range []int{1, 2} {
		out, err := c.client(i, viaIntercept, appMod).run(appDownload...)
		if err == nil || !strings.Contains(out, "fork") {
			t.Errorf("go mod download through gate %d after the fork: err %v\n%s", i, err, out)
		}
		code, body, err := c.get(i, "/sumdb/sum.golang.org/lookup/example.com/lib@v1.2.0")
		if err != nil || code < 500 {
			t.Errorf("lookup of a record gate %d verified before the fork: %d %v %s", i, code, err, body)
		}
	}
	if n := c.countKeys("witness/sum.golang.org/evidence/"); n != 1 {
		t.Fatalf("%d pieces of fork evidence, want 1", n)
	}
	code, body := c.api(2, http.MethodPost, "/api/v1/witness/clear-fork", []byte(`{"reason":"case 2"}`))
	if code != http.StatusOK {
		t.Fatalf("clear-fork on gate 2: %d %s", code, body)
	}
	for i := range 3 {
		eventually(t, 2*time.Second, fmt.Sprintf("gate %d sees the clear-fork", i),
			func() bool { return !c.witnessStatus(i).Forked })
	}
}

// TestClusterConcurrentWitnessUpdates is case 6 of issue 12: 150 lookups
// spread over three gates while the upstream's tree grows make 150
// concurrent witness updates; every co-signed note the gates answered
// verifies with the enterprise key, there is one tree hash per size, each
// is a prefix of the upstream's final tree, and the database holds one
// chain: no fork evidence, the witnessed and co-signed heads at the
// largest size any gate co-signed, and the same view on every gate.
func TestClusterConcurrentWitnessUpdates(t *testing.T) {
	c := startCluster(t, 3)
	const n = 150
	mods := make(chan module.Version, n)
	go func() {
		defer close(mods)
		for range n {
			added, err := c.up.AddFillers(1)
			if err != nil {
				t.Error(err)
				return
			}
			mods <- added[0]
			time.Sleep(3 * time.Millisecond) // lookups of many tree sizes overlap
		}
	}()
	var (
		mu    sync.Mutex
		notes [][]byte
		wg    sync.WaitGroup
	)
	for k := range n {
		wg.Go(func() {
			m := <-mods
			path, _ := module.EscapePath(m.Path)
			code, body, err := c.get(k%3, "/sumdb/sum.golang.org/lookup/"+path+"@"+m.Version)
			if err != nil || code != http.StatusOK {
				t.Errorf("lookup %s through gate %d: %d %v %s", m, k%3, code, err, body)
				return
			}
			_, _, msg, err := tlog.ParseRecord(body)
			if err != nil {
				t.Errorf("lookup %s: %v", m, err)
				return
			}
			mu.Lock()
			notes = append(notes, msg)
			mu.Unlock()
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	v, err := note.NewVerifier(c.gate(0).verifier)
	if err != nil {
		t.Fatal(err)
	}
	final := fetchTree(t, c.up.SumDBURL())
	thr := tlog.TileHashReader(final, httpTiles{base: c.up.SumDBURL()})
	hashes := map[int64]tlog.Hash{}
	var largest int64
	for _, msg := range notes {
		nt, err := note.Open(msg, note.VerifierList(v))
		if err != nil {
			t.Fatalf("a co-signed note does not verify with the enterprise key: %v\n%s", err, msg)
		}
		tree, err := tlog.ParseTree([]byte(nt.Text))
		if err != nil {
			t.Fatal(err)
		}
		if h, ok := hashes[tree.N]; ok && h != tree.Hash {
			t.Fatalf("two trees of size %d were co-signed", tree.N)
		}
		hashes[tree.N] = tree.Hash
		largest = max(largest, tree.N)
	}
	for size, h := range hashes {
		want, err := tlog.TreeHash(size, thr)
		if err != nil || want != h {
			t.Fatalf("co-signed tree #%d is not a prefix of the upstream's tree #%d (%v)", size, final.N, err)
		}
	}
	t.Logf("%d lookups co-signed %d distinct tree sizes, the largest %d", len(notes), len(hashes), largest)
	if e := c.countKeys("witness/sum.golang.org/evidence/"); e != 0 {
		t.Fatalf("%d pieces of fork evidence from an honest upstream", e)
	}
	for i := range 3 {
		eventually(t, 2*time.Second, fmt.Sprintf("gate %d sees the largest tree", i), func() bool {
			st := c.witnessStatus(i)
			return st.Tree != nil && st.Tree.Size == largest && st.CoSigned != nil && st.CoSigned.Size == largest &&
				st.History != nil && st.History.Latest.Size == largest && !st.Forked
		})
	}
	c.restart(1) // the stored history and heads load
	if st := c.witnessStatus(1); st.Tree == nil || st.Tree.Size != largest {
		t.Fatalf("gate 1 after a restart: %+v", st.Tree)
	}
}

// fetchTree reads and parses the upstream's latest signed tree (the test
// trusts the fake upstream).
func fetchTree(t *testing.T, base string) tlog.Tree {
	t.Helper()
	code, b := httpGet(t, base+"/latest")
	if code != http.StatusOK {
		t.Fatalf("GET %s/latest: %d", base, code)
	}
	text, _, _ := strings.Cut(b, "\n\n")
	tree, err := tlog.ParseTree([]byte(text + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

// httpTiles reads the upstream's tiles over HTTP for tlog.TileHashReader,
// which authenticates them against the tree it is given.
type httpTiles struct{ base string }

func (r httpTiles) Height() int { return 8 }

func (r httpTiles) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, tile := range tiles {
		resp, err := http.Get(r.base + "/" + tile.Path())
		if err != nil {
			return nil, err
		}
		out[i], err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("tile %s: %d %v", tile.Path(), resp.StatusCode, err)
		}
	}
	return out, nil
}

func (r httpTiles) SaveTiles([]tlog.Tile, [][]byte) {}
