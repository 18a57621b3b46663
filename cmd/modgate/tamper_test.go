package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/module"

	"github.com/modgate/modgate/cache"
	"github.com/modgate/modgate/internal/fakeupstream"
	"github.com/modgate/modgate/proxy"
	"github.com/modgate/modgate/signer"
)

// Paths and cache keys of the module version the tamper cases attack.
var (
	tampered   = module.Version{Path: "example.com/lib", Version: "v1.1.0"}
	tamperZip  = "/example.com/lib/@v/v1.1.0.zip"
	tamperMod  = "/example.com/lib/@v/v1.1.0.mod"
	tamperInfo = "/example.com/lib/@v/v1.1.0.info"
	tamperLook = "/sumdb/sum.golang.org/lookup/example.com/lib@v1.1.0"
	// The cache keys of the attacked version's files.
	keyZip    = "zip/example.com/lib/@v/v1.1.0"
	keyMod    = "mod/example.com/lib/@v/v1.1.0"
	keyInfo   = "info/example.com/lib/@v/v1.1.0"
	keyLookup = "sumdb/sum.golang.org/lookup/example.com/lib@v1.1.0"
	keyState  = "witness/sum.golang.org/latest"
)

// tamperCase is one attack or fault of the upstream.
type tamperCase struct {
	name string
	// warm runs before the fault, with the gate up, for faults that need
	// a witnessed tree head first.
	warm func(t *testing.T, up *fakeupstream.Server, g *gateProc)
	// fault switches the fault on; fix switches it off (nil: no fix).
	fault, fix func(up *fakeupstream.Server)
	// path is requested from the gate's GOPROXY endpoint while the fault
	// is on: want is the status and wantBody the substrings of its body.
	path     string
	want     int
	wantBody []string
	// wantGo, if set, are substrings of what go mod download of the
	// attacked version prints through the gate (intercepted).
	wantGo []string
	// absent are the cache keys under which the bad answer, or anything
	// that depends on it, could have been stored: none may exist
	// afterwards. (The go command may fetch and cache good files of the
	// same version, such as its .info.)
	absent []string
	// check inspects the stopped gate's cache.
	check func(t *testing.T, st *cache.Store)
	// within bounds how long the faulty request may take.
	within time.Duration
}

func tamperCases() []tamperCase {
	witnessed := func(t *testing.T, up *fakeupstream.Server, g *gateProc) {
		t.Helper()
		r := gateGet(t, g, "/example.com/dep/@v/v1.0.0.mod")
		if r.status != 200 {
			t.Fatalf("warming up: %d %s", r.status, r.body)
		}
	}
	return []tamperCase{
		{name: "tree note with a bad signature",
			fault: func(up *fakeupstream.Server) { up.SetNoteFault(fakeupstream.NoteBadSignature) },
			fix:   func(up *fakeupstream.Server) { up.SetNoteFault(fakeupstream.NoteOK) },
			path:  tamperLook, want: 502, wantBody: []string{"checksum database data does not verify", "invalid signature"},
			wantGo: []string{"502 Bad Gateway", "modgate: ", "checksum database data does not verify"},
			absent: []string{keyLookup, keyState, keyMod, keyZip}},
		{name: "tree note signed only by an unknown key",
			fault: func(up *fakeupstream.Server) { up.SetNoteFault(fakeupstream.NoteUnknownKey) },
			fix:   func(up *fakeupstream.Server) { up.SetNoteFault(fakeupstream.NoteOK) },
			path:  tamperMod, want: 502, wantBody: []string{"checksum database data does not verify", "no verifiable signatures"},
			wantGo: []string{"502 Bad Gateway", "modgate: ", "checksum database data does not verify"},
			absent: []string{keyLookup, keyState, keyMod, keyZip}},
		{name: "fork: the same key, a tree that is not an extension", warm: witnessed,
			fault: func(up *fakeupstream.Server) { up.Fork() },
			path:  tamperLook, want: 502, wantBody: []string{"checksum database fork detected"},
			wantGo: []string{"502 Bad Gateway", "modgate: ", "checksum database fork detected"},
			absent: []string{keyLookup, keyMod, keyZip}, check: checkForkEvidence},
		{name: "lookup whose record is not in the tree (matching a tampered zip)",
			fault: func(up *fakeupstream.Server) {
				up.SetLookupFault(tampered, fakeupstream.LookupForgedRecord)
				up.SetZipMismatch(tampered, true)
			},
			fix: func(up *fakeupstream.Server) {
				up.SetLookupFault(tampered, fakeupstream.LookupOK)
				up.SetZipMismatch(tampered, false)
			},
			path: tamperZip, want: 502, wantBody: []string{"checksum database data does not verify", "does not match tree"},
			wantGo: []string{"502 Bad Gateway", "modgate: ", "checksum database data does not verify"},
			absent: []string{keyLookup, keyMod, keyZip}},
		{name: "lookup with the id of another record",
			fault: func(up *fakeupstream.Server) { up.SetLookupFault(tampered, fakeupstream.LookupWrongID) },
			fix:   func(up *fakeupstream.Server) { up.SetLookupFault(tampered, fakeupstream.LookupOK) },
			path:  tamperLook, want: 502, wantBody: []string{"does not verify", "does not match tree"},
			absent: []string{keyLookup}},
		{name: "lookup with an id beyond the tree",
			fault: func(up *fakeupstream.Server) { up.SetLookupFault(tampered, fakeupstream.LookupIDBeyond) },
			fix:   func(up *fakeupstream.Server) { up.SetLookupFault(tampered, fakeupstream.LookupOK) },
			path:  tamperLook, want: 502, wantBody: []string{"does not verify", "is not in tree"},
			absent: []string{keyLookup}},
		{name: "tile with one altered hash",
			fault: func(up *fakeupstream.Server) { up.SetTileAltered(up.TilePath(), true) },
			fix:   func(up *fakeupstream.Server) { up.SetTileAltered(up.TilePath(), false) },
			path:  tamperLook, want: 502, wantBody: []string{"does not verify", "proving record"},
			absent: []string{keyLookup}, check: noStoredTiles},
		{name: "partial tile that is not a prefix of its full tile", warm: witnessed,
			fault: func(up *fakeupstream.Server) {
				if _, err := up.AddFillers(260); err != nil {
					panic(err)
				}
				up.SetTileAltered("tile/8/0/000", true)
			},
			fix:  func(up *fakeupstream.Server) { up.SetTileAltered("tile/8/0/000", false) },
			path: tamperLook, want: 502, wantBody: []string{"does not verify", "checking tree"},
			absent: []string{keyLookup, "sumdb/sum.golang.org/tile/8/0/000"}, check: witnessedSizeBelow(256)},
		{name: "zip whose h1 differs from the record",
			fault: func(up *fakeupstream.Server) { up.SetZipMismatch(tampered, true) },
			fix:   func(up *fakeupstream.Server) { up.SetZipMismatch(tampered, false) },
			path:  tamperZip, want: 502, wantBody: []string{"verification failed", "upstream zip of example.com/lib@v1.1.0 has hash"},
			wantGo: []string{"502 Bad Gateway", "modgate: verification failed", "checksum database"},
			absent: []string{keyZip}},
		{name: ".mod that differs from the record",
			fault: func(up *fakeupstream.Server) { up.SetModMismatch(tampered, true) },
			fix:   func(up *fakeupstream.Server) { up.SetModMismatch(tampered, false) },
			path:  tamperMod, want: 502, wantBody: []string{"verification failed", "upstream go.mod of example.com/lib@v1.1.0 has hash"},
			wantGo: []string{"502 Bad Gateway", "modgate: verification failed"},
			absent: []string{keyMod, keyZip}},
		{name: ".info for another version",
			fault: func(up *fakeupstream.Server) { up.SetInfoVersion(tampered, "v1.0.0") },
			fix:   func(up *fakeupstream.Server) { up.SetInfoVersion(tampered, "") },
			path:  tamperInfo, want: 502, wantBody: []string{"verification failed", "is for version v1.0.0"},
			absent: []string{keyInfo}},
		{name: "truncated zip: connection cut",
			fault: func(up *fakeupstream.Server) { up.SetZipTruncated(tampered, fakeupstream.TruncateAbort) },
			fix:   func(up *fakeupstream.Server) { up.SetZipTruncated(tampered, fakeupstream.TruncateOff) },
			path:  tamperZip, want: 502, wantBody: []string{"unexpected EOF"}, absent: []string{keyZip}},
		{name: "truncated zip: short answer",
			fault: func(up *fakeupstream.Server) { up.SetZipTruncated(tampered, fakeupstream.TruncateShort) },
			fix:   func(up *fakeupstream.Server) { up.SetZipTruncated(tampered, fakeupstream.TruncateOff) },
			path:  tamperZip, want: 502, wantBody: []string{"verification failed", "not a valid zip"}, absent: []string{keyZip}},
		{name: "zip larger than 500 MiB, declared",
			fault: func(up *fakeupstream.Server) { up.ServeHugeZip(tampered, 600<<20, true) },
			fix:   func(up *fakeupstream.Server) { up.ServeHugeZip(tampered, 0, false) },
			path:  tamperZip, want: 502, wantBody: []string{"larger than 500 MiB", "declares 629145600 bytes"},
			absent: []string{keyZip}, within: 10 * time.Second},
		{name: "zip larger than 500 MiB, streamed without a length",
			fault: func(up *fakeupstream.Server) { up.ServeHugeZip(tampered, 600<<20, false) },
			fix:   func(up *fakeupstream.Server) { up.ServeHugeZip(tampered, 0, false) },
			path:  tamperZip, want: 502, wantBody: []string{"larger than 500 MiB", "sent more than 524288000 bytes"},
			absent: []string{keyZip}, within: 2 * time.Minute},
		{name: "upstream stalls before its headers",
			fault: func(up *fakeupstream.Server) { up.SetStall(tampered, fakeupstream.StallBeforeHeaders, time.Minute) },
			fix:   func(up *fakeupstream.Server) { up.SetStall(tampered, 0, 0) },
			path:  tamperZip, want: 504, wantBody: []string{"upstream stalled", "no answer within 1s"},
			absent: []string{keyZip}, within: 10 * time.Second},
		{name: "upstream stalls in the body",
			fault: func(up *fakeupstream.Server) { up.SetStall(tampered, fakeupstream.StallInBody, time.Minute) },
			fix:   func(up *fakeupstream.Server) { up.SetStall(tampered, 0, 0) },
			path:  tamperZip, want: 504, wantBody: []string{"upstream stalled", "nothing received for 1s"},
			absent: []string{keyZip}, within: 10 * time.Second},
		{name: "upstream answers 500",
			fault: func(up *fakeupstream.Server) { up.SetStatus(tamperZip, 500) },
			fix:   func(up *fakeupstream.Server) { up.SetStatus(tamperZip, 0) },
			path:  tamperZip, want: 502, wantBody: []string{"500 Internal Server Error", "injected status 500"},
			wantGo: []string{"502 Bad Gateway", "modgate: upstream", "500 Internal Server Error"},
			absent: []string{keyZip}},
		{name: "oversized response headers",
			fault: func(up *fakeupstream.Server) { up.SetHugeHeaders(tamperZip, 100<<10) },
			fix:   func(up *fakeupstream.Server) { up.SetHugeHeaders(tamperZip, 0) },
			path:  tamperZip, want: 502, wantBody: []string{"headers exceeded"}, absent: []string{keyZip}},
	}
}

// TestTamper runs the real binary against an upstream that attacks it,
// one fault at a time. For each it checks what modgate answers, what the
// go command prints (where the case says), that nothing of the bad answer
// is in the cache (inspected with the gate stopped), and that once the
// fault is gone a new request reaches the upstream and gets the right
// bytes.
func TestTamper(t *testing.T) {
	for _, tc := range tamperCases() {
		t.Run(tc.name, func(t *testing.T) { runTamperCase(t, tc) })
	}
}

func runTamperCase(t *testing.T, tc tamperCase) {
	dataDir := filepath.Join(t.TempDir(), "data")
	up := fakeupstream.Start(t, fakeupstream.Options{})
	args := []string{"--upstream", up.URL, "--upstream-sumdb", up.VerifierKey(), "--upstream-stall-timeout", "1s"}
	if tc.warm == nil { // the witness polls at start: a fault with nothing to warm is there from the start
		tc.fault(up)
	}
	g := startGate(t, dataDir, args...)
	if tc.warm != nil {
		tc.warm(t, up, g)
		tc.fault(up)
	}
	start := time.Now()
	r := gateGet(t, g, tc.path)
	if took := time.Since(start); tc.within > 0 && took > tc.within {
		t.Errorf("GET %s took %s, want at most %s", tc.path, took, tc.within)
	}
	if r.status != tc.want || !strings.HasPrefix(string(r.body), "modgate: ") || r.header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Errorf("GET %s: %d %q, want %d with a text/plain modgate message", tc.path, r.status, r.body, tc.want)
	}
	for _, s := range tc.wantBody {
		if !strings.Contains(string(r.body), s) {
			t.Errorf("GET %s: body %q lacks %q", tc.path, r.body, s)
		}
	}
	if tc.wantGo != nil {
		c := newClient(t, g, viaIntercept, g.verifier, "module example.com/app\n\ngo 1.21\n")
		out, err := c.run("mod", "download", tampered.String())
		if err == nil {
			t.Errorf("go mod download %s succeeded under the fault:\n%s", tampered, out)
		}
		for _, s := range tc.wantGo {
			if !strings.Contains(out, s) {
				t.Errorf("go output lacks %q:\n%s", s, out)
			}
		}
	}
	g.stop()
	inspectCache(t, dataDir, tc)
	if tc.fix == nil {
		return
	}
	tc.fix(up)
	g = startGate(t, dataDir, args...)
	checkFixed(t, up, g, tc.path)
}

// gateGet sends GET path to the gate's GOPROXY endpoint.
func gateGet(t *testing.T, g *gateProc, path string) tamperResponse {
	t.Helper()
	client := &http.Client{Timeout: 3 * time.Minute}
	resp, err := client.Get("http://" + g.listen + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading the body: %v", path, err)
	}
	return tamperResponse{resp.StatusCode, resp.Header, body}
}

type tamperResponse struct {
	status int
	header http.Header
	body   []byte
}

// inspectCache opens the stopped gate's cache and checks that nothing of
// the bad answer was stored and no spool file is left.
func inspectCache(t *testing.T, dataDir string, tc tamperCase) {
	t.Helper()
	ctx := context.Background()
	st, err := cache.Open(ctx, cache.Config{Dir: filepath.Join(dataDir, "cache")})
	if err != nil {
		t.Fatalf("opening the cache after the fault: %v", err)
	}
	defer st.Close()
	for _, k := range tc.absent {
		if _, err := st.Get(ctx, k); !errors.Is(err, cache.ErrNotFound) {
			t.Errorf("cache has %s after the fault (err %v)", k, err)
		}
		if ok, _ := st.HasBlob(ctx, k); ok {
			t.Errorf("cache has the blob %s after the fault", k)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dataDir, "spool", "*")); len(left) > 0 {
		t.Errorf("spool files left after the fault: %q", left)
	}
	if tc.check != nil {
		tc.check(t, st)
	}
}

// checkFixed checks that, with the fault gone, path is fetched from the
// upstream again (nothing bad was cached) and served as the upstream has
// it.
func checkFixed(t *testing.T, up *fakeupstream.Server, g *gateProc, path string) {
	t.Helper()
	upPath := path
	before := up.Requests(upPath)
	r := gateGet(t, g, path)
	if r.status != 200 {
		t.Fatalf("GET %s after the fault is gone: %d %s", path, r.status, r.body)
	}
	if up.Requests(upPath) == before {
		t.Errorf("GET %s after the fault was served without asking the upstream: was the bad answer cached?", path)
	}
	if strings.HasPrefix(path, "/sumdb/") {
		return // co-signed: not the upstream's bytes
	}
	resp, err := http.Get(up.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(r.body, want) {
		t.Errorf("GET %s after the fault: %d bytes differ from the upstream's %d", path, len(r.body), len(want))
	}
}

// checkForkEvidence checks that the fork is on record with both notes.
func checkForkEvidence(t *testing.T, st *cache.Store) {
	t.Helper()
	status, err := signer.ReadStatus(context.Background(), proxy.WitnessStore{Cache: st}, "sum.golang.org")
	if err != nil || !status.Forked || len(status.Evidence) != 1 || status.Evidence[0].OlderNote == "" || status.Evidence[0].NewerNote == "" {
		t.Errorf("fork evidence: %+v, %v; want one record with both notes", status, err)
	}
}

// noStoredTiles checks that no tile was stored.
func noStoredTiles(t *testing.T, st *cache.Store) {
	t.Helper()
	st.Scan(context.Background(), "sumdb/sum.golang.org/tile/", func(key string, _ cache.Entry) error {
		t.Errorf("tile %s stored after an altered tile", key)
		return nil
	})
}

// witnessedSizeBelow checks that the witness did not move to a tree of n
// records or more.
func witnessedSizeBelow(n int64) func(t *testing.T, st *cache.Store) {
	return func(t *testing.T, st *cache.Store) {
		t.Helper()
		status, err := signer.ReadStatus(context.Background(), proxy.WitnessStore{Cache: st}, "sum.golang.org")
		if err != nil || status.Tree == nil || status.Tree.Size >= n || status.Forked {
			t.Errorf("witness state after the fault: %+v, %v; want a tree below %d records and no fork", status.Tree, err, n)
		}
	}
}

// TestForkLifecycle follows a fork from detection to an operator clearing
// it: the go command's message, modgate witness status through the admin
// API and on the stopped gate's cache, modgate witness clear-fork, and
// traffic resuming for what was witnessed while the forked upstream is
// caught again.
func TestForkLifecycle(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	up, g := fakeGate(t, dataDir)
	c := newClient(t, g, viaIntercept, g.verifier, "module example.com/app\n\ngo 1.21\n")
	c.must("mod", "download", "example.com/dep@v1.0.0")
	up.Fork()
	if out, err := newClient(t, g, viaIntercept, g.verifier, "module example.com/app\n\ngo 1.21\n").run("mod", "download", "example.com/lib@v1.0.0"); err == nil || !strings.Contains(out, "modgate: checksum database fork detected") {
		t.Fatalf("download after the fork: %v\n%s", err, out)
	}
	admin := "http://" + g.admin
	out, code := runCLI(t, "witness", "status", "--data-dir", dataDir, "--admin", admin)
	if code != exitFail || !strings.Contains(out, "FORKED") || !strings.Contains(out, "evidence 1") || !strings.Contains(out, "older note") ||
		!strings.Contains(out, "last co-signed     size ") || !strings.Contains(out, "proof check        ok") {
		t.Errorf("witness status through the API: exit %d\n%s", code, out)
	}
	g.stop()

	out, code = runCLI(t, "witness", "status", "--data-dir", dataDir, "--admin", "http://127.0.0.1:1", "--json")
	if code != exitFail || !strings.Contains(out, "admin API") {
		t.Errorf("witness status with an explicit --admin that does not answer: exit %d\n%s", code, out)
	}
	out, code = runCLI(t, "witness", "status", "--data-dir", dataDir, "--json")
	if code != exitFail || !strings.Contains(out, `"forked": true`) || !strings.Contains(out, `"older_note"`) {
		t.Errorf("witness status on the stopped gate's cache: exit %d\n%s", code, out)
	}
	out, code = runCLI(t, "witness", "clear-fork", "--data-dir", dataDir, "--reason", "checked with the operators")
	if code != exitOK || !strings.Contains(out, "cleared 1 fork evidence record") {
		t.Fatalf("witness clear-fork: exit %d\n%s", code, out)
	}
	// Offline (no poll of the still-forked upstream), what was witnessed
	// before the fork is served again.
	g = startGate(t, dataDir, "--upstream", up.URL, "--upstream-sumdb", up.VerifierKey(), "--offline")
	out, code = runCLI(t, "witness", "status", "--data-dir", dataDir, "--admin", "http://"+g.admin)
	if code != exitOK || !strings.Contains(out, "status             ok") || !strings.Contains(out, "cleared ") {
		t.Errorf("witness status after clear-fork: exit %d\n%s", code, out)
	}
	newClient(t, g, viaIntercept, g.verifier, "module example.com/app\n\ngo 1.21\n").must("mod", "download", "example.com/dep@v1.0.0")
	g.stop()
	// Online, the poll at start catches the upstream, still forked, again.
	g = startGate(t, dataDir, "--upstream", up.URL, "--upstream-sumdb", up.VerifierKey())
	if out, err := newClient(t, g, viaIntercept, g.verifier, "module example.com/app\n\ngo 1.21\n").run("mod", "download", "example.com/lib@v1.0.0"); err == nil || !strings.Contains(out, "fork detected") {
		t.Errorf("a new lookup on the forked upstream after clear-fork: %v\n%s", err, out)
	}
	out, code = runCLI(t, "witness", "status", "--data-dir", dataDir, "--admin", "http://"+g.admin, "--json")
	if code != exitFail || strings.Count(out, `"older_note"`) != 2 {
		t.Errorf("witness status after the second detection: exit %d, want the new evidence open and the old one cleared\n%s", code, out)
	}
	out, code = runCLI(t, "witness", "clear-fork", "--data-dir", dataDir, "--admin", "http://"+g.admin, "--json")
	if code != exitOK || !strings.Contains(out, `"cleared_by": "token:`) {
		t.Errorf("witness clear-fork through the API: exit %d\n%s", code, out)
	}
	// The operator decides to follow the upstream's new timeline.
	if _, err := newClient(t, g, viaIntercept, g.verifier, "module example.com/app\n\ngo 1.21\n").run("mod", "download", "example.com/lib@v1.0.0"); err == nil {
		t.Fatal("the forked upstream is served before the reset")
	}
	g.stop()
	out, code = runCLI(t, "witness", "clear-fork", "--reset", "--reason", "the log was restarted", "--data-dir", dataDir)
	if code != exitOK || !strings.Contains(out, "witness reset: the old state is archived") || !strings.Contains(out, "archived ") {
		t.Fatalf("witness clear-fork --reset: exit %d\n%s", code, out)
	}
	g = startGate(t, dataDir, "--upstream", up.URL, "--upstream-sumdb", up.VerifierKey())
	newClient(t, g, viaIntercept, g.verifier, "module example.com/app\n\ngo 1.21\n").must("mod", "download", "example.com/lib@v1.0.0")
	out, code = runCLI(t, "witness", "status", "--data-dir", dataDir, "--admin", "http://"+g.admin, "--json")
	if code != exitOK || !strings.Contains(out, `"archived"`) || !strings.Contains(out, `"cosigned"`) {
		t.Errorf("witness status after the reset: exit %d\n%s", code, out)
	}
	out, code = runCLI(t, "policy", "log", "--data-dir", dataDir, "--admin", "http://"+g.admin)
	if !strings.Contains(out, "witness.reset") {
		t.Errorf("the reset is not audited: exit %d\n%s", code, out)
	}
}

// runCLI runs modgate's command line in this process and returns its
// combined output and exit code.
func runCLI(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out bytes.Buffer
	code := run(context.Background(), args, os.Getenv, &out, &out)
	return out.String(), code
}
