package main

// The multi-gate harness of issue 12: several real modgate serve processes
// sharing one throwaway PostgreSQL database (internal/pgtest) in front of
// one fake upstream, each on ephemeral loopback ports with its own data
// directory (its own Badger first level) and the same keys.
//
//	c := startCluster(t, 3)                 // PostgreSQL, fake upstream, 3 gates
//	cl := c.client(1, viaIntercept, appMod) // a fresh go client through gate 1
//	cl.must(appDownload...)
//	c.db().QueryRow(...)                    // look at the shared tables
//	c.kill(2); c.restart(2)                 // SIGKILL a gate, start it again
//	c.pg.Stop(t); c.pg.Restart(t)           // crash and restart the database
//	c.api(0, "GET", "/api/v1/witness", nil)  // gate 0's admin API, with the shared token
//	c.get(2, "/sumdb/sum.golang.org/lookup/m@v1.0.0") // a GOPROXY request to gate 2

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/modgate/modgate/internal/fakeupstream"
	"github.com/modgate/modgate/internal/pgtest"
	"github.com/modgate/modgate/pki"
	"github.com/modgate/modgate/signer"
)

// testCluster is n gates on one database and one fake upstream.
type testCluster struct {
	t     *testing.T
	pg    *pgtest.Server
	dbURL string
	up    *fakeupstream.Server
	gates []*gateProc // gates[i] is gate i; nil once killed or stopped until restarted
	dirs  []string    // the data directory of gate i
	args  []string    // flags every gate gets, after the harness's own
	pool  *pgxpool.Pool
}

// keyFiles are what a gate must share with the cluster's first gate: the
// CA, the enterprise note key and the admin token (so one token serves
// the admin API of every gate, as with one Kubernetes Secret).
var keyFiles = []string{pki.CertFile, pki.KeyFile, signer.SignerKeyFile, signer.VerifierKeyFile, adminTokenFile}

// startCluster starts PostgreSQL (skipping the test where it is not
// installed, see pgtest), a fake upstream and n gates with --cluster-db and
// args. Gate 0 creates the keys; the others start with copies of them.
// Everything stops when the test ends.
func startCluster(t *testing.T, n int, args ...string) *testCluster {
	t.Helper()
	c := &testCluster{t: t, pg: pgtest.Start(t), args: args}
	c.dbURL = c.pg.NewDatabase(t)
	c.up = fakeupstream.Start(t, fakeupstream.Options{})
	root := t.TempDir()
	for i := range n {
		c.dirs = append(c.dirs, filepath.Join(root, "gate"+string(rune('0'+i))))
		if i > 0 {
			copyKeys(t, c.dirs[0], c.dirs[i])
		}
		c.gates = append(c.gates, nil)
		c.start(i)
	}
	return c
}

// gateArgs are the flags of every gate of c, for extra ones see start.
func (c *testCluster) gateArgs(extra ...string) []string {
	return append([]string{"--upstream", c.up.URL, "--upstream-sumdb", c.up.VerifierKey(),
		"--cluster-db", c.dbURL}, append(append([]string{}, c.args...), extra...)...)
}

// start starts gate i (again) on its data directory and waits until it is
// ready; extra flags are added to the cluster's.
func (c *testCluster) start(i int, extra ...string) *gateProc {
	c.t.Helper()
	c.gates[i] = startGate(c.t, c.dirs[i], c.gateArgs(extra...)...)
	return c.gates[i]
}

// gate returns gate i.
func (c *testCluster) gate(i int) *gateProc { return c.gates[i] }

// kill ends gate i with SIGKILL, as a crash would, and waits for it.
func (c *testCluster) kill(i int) {
	g := c.gates[i]
	g.cmd.Process.Kill()
	<-g.done
}

// restart stops gate i with SIGTERM if it runs and starts it again.
func (c *testCluster) restart(i int, extra ...string) *gateProc {
	c.t.Helper()
	c.gates[i].stop()
	return c.start(i, extra...)
}

// client returns a fresh go client (empty GOPATH and GOMODCACHE) through
// gate i, pinned to the cluster's enterprise key.
func (c *testCluster) client(i int, mode clientMode, goMod string) *goClient {
	c.t.Helper()
	g := c.gates[i]
	return newClient(c.t, g, mode, g.verifier, goMod)
}

// db returns a pool on the cluster database for the test's own queries.
func (c *testCluster) db() *pgxpool.Pool {
	c.t.Helper()
	if c.pool == nil {
		var err error
		if c.pool, err = pgxpool.New(context.Background(), c.dbURL); err != nil {
			c.t.Fatal(err)
		}
		c.t.Cleanup(c.pool.Close)
	}
	return c.pool
}

// startFailing runs modgate serve on dataDir against the cluster database
// with extra flags, expects it to exit with an error within 60s, and
// returns its output.
func (c *testCluster) startFailing(dataDir string, extra ...string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	all := append([]string{"serve", "--data-dir", dataDir, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"},
		c.gateArgs(extra...)...)
	cmd := exec.CommandContext(ctx, binary, all...)
	cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+c.t.TempDir())
	out, err := cmd.CombinedOutput()
	if err == nil || ctx.Err() != nil {
		c.t.Fatalf("modgate serve on %s did not fail (err %v):\n%s", dataDir, err, out)
	}
	return string(out)
}

// copyKeys copies the key files of data directory from into to.
func copyKeys(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(to, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range keyFiles {
		src, err := os.Open(filepath.Join(from, name))
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := src.Stat()
		dst, err := os.OpenFile(filepath.Join(to, name), os.O_CREATE|os.O_EXCL|os.O_WRONLY, fi.Mode().Perm())
		if err == nil {
			_, err = io.Copy(dst, src)
			err = errors.Join(err, dst.Close())
		}
		src.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
}

// eventually polls cond every 20ms until it holds or d passes, and reports
// how long it took; it fails the test with what on timeout.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// containsAll reports whether s contains every one of subs.
func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// api sends an authenticated request to gate i's admin API and returns
// the status and body. body may be nil.
func (c *testCluster) api(i int, method, path string, body []byte) (int, []byte) {
	c.t.Helper()
	token, err := os.ReadFile(filepath.Join(c.dirs[i], adminTokenFile))
	if err != nil {
		c.t.Fatal(err)
	}
	req, err := http.NewRequest(method, "http://"+c.gates[i].admin+path, bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// witnessStatus returns gate i's GET /api/v1/witness.
func (c *testCluster) witnessStatus(i int) signer.Status {
	c.t.Helper()
	code, b := c.api(i, http.MethodGet, "/api/v1/witness", nil)
	var st signer.Status
	if err := json.Unmarshal(b, &st); code != http.StatusOK || err != nil {
		c.t.Fatalf("gate %d: GET /api/v1/witness: %d %v\n%s", i, code, err, b)
	}
	return st
}

// get sends a GET for path (such as "/sumdb/sum.golang.org/lookup/m@v1.0.0")
// to gate i's proxy listener, as a GOPROXY client does.
func (c *testCluster) get(i int, path string) (int, []byte, error) {
	resp, err := http.Get("http://" + c.gates[i].listen + path)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}
