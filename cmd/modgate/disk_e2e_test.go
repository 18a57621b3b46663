package main

import (
	"bytes"
	"crypto/sha256"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/mod/module"

	"github.com/modgate/modgate/internal/fakeupstream"
	"github.com/modgate/modgate/internal/tmpfs"
)

// Sizes of the full-disk test. The gate's cache preallocates its value log
// file (128 MiB) and write-ahead log file (32 MiB) and keeps a reserve of
// 192 MiB for Badger's growth, so a 48 MiB zip needs 48 MiB to spool plus
// 48 + 192 MiB + --min-free to store.
const (
	diskFS      = 640 << 20
	diskZipSize = 48 << 20
	diskMinFree = 8 << 20
)

// TestDiskFull runs the gate on a small tmpfs, fills it so that a large
// zip can be spooled but not also stored, and then so that it cannot even
// be spooled. The first is streamed to its client as it arrives and
// completes once verified, so the client gets the verified zip (200), but
// it is not stored; the second answers 507 "cache disk full" with the
// reason. Either way the gate lives on, /readyz says degraded, and cached
// objects are still served.
// Once the space is freed, the same request answers 200 with the
// upstream's bytes, without a restart. SIGTERM then ends the gate within
// --shutdown-timeout, and a restart (offline) serves everything that was
// acknowledged.
func TestDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("moves a 48 MiB zip around on a tmpfs")
	}
	mnt := tmpfs.Mount(t, diskFS)
	dataDir := filepath.Join(mnt, "data")
	up := fakeupstream.Start(t, fakeupstream.Options{})
	large := module.Version{Path: "example.com/large", Version: "v1.0.0"}
	file, err := up.AddLargeModule(large, diskZipSize, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	want, size := fileSHA256(t, file)
	args := []string{"--upstream", up.URL, "--upstream-sumdb", up.VerifierKey(), "--min-free", "8MiB", "--shutdown-timeout", "10s"}
	g := startGate(t, dataDir, args...)

	cached := []string{tamperMod, tamperZip, "/example.com/large/@v/v1.0.0.mod"} // the .mod also verifies the large zip's record
	bodies := map[string][]byte{}
	for _, p := range cached {
		r := gateGet(t, g, p)
		if r.status != http.StatusOK {
			t.Fatalf("GET %s: %d %s", p, r.status, r.body)
		}
		bodies[p] = r.body
	}
	zipPath := fakeupstream.ZipPath(large)
	for _, tc := range []struct {
		name, reason string
		free         int64
		streamed     bool // served verified as it arrived, then not stored
	}{
		{"spooled but not stored", "storing zip/example.com/large/@v/v1.0.0", diskZipSize + 64<<20, true},
		{"not even spooled", "spooling the upstream zip", diskZipSize / 2, false},
	} {
		tmpfs.FillTo(t, mnt, "filler", tc.free)
		r := gateGet(t, g, zipPath)
		if tc.streamed {
			if got := sha256.Sum256(r.body); r.status != http.StatusOK || got != want {
				t.Fatalf("%s: GET the zip: %d, %d bytes, want 200 and the verified zip\n%s", tc.name, r.status,
					len(r.body), g.Log())
			}
			waitFor(t, g, "a verified zip was not stored", tc.reason)
		} else if r.status != http.StatusInsufficientStorage || !strings.HasPrefix(string(r.body), "modgate: cache disk full: ") ||
			!strings.Contains(string(r.body), tc.reason) {
			t.Fatalf("%s: GET the zip: %d %q, want 507 \"modgate: cache disk full: ...%s...\"\n%s",
				tc.name, r.status, r.body, tc.reason, g.Log())
		}
		t.Logf("%s: %d %s", tc.name, r.status, r.body)
		checkServed(t, g, bodies)
		if body := adminGet(t, g, "/readyz"); !strings.HasPrefix(body, "degraded: cache disk full") {
			t.Errorf("%s: /readyz: %q, want degraded", tc.name, body)
		}
	}
	if m := adminGet(t, g, "/metrics"); !strings.Contains(m, "modgate_cache_disk_full 1") ||
		!strings.Contains(m, "modgate_cache_disk_full_refusals_total") ||
		strings.Contains(m, "modgate_cache_disk_full_refusals_total 0") {
		t.Errorf("metrics do not show the refusals:\n%s", grepLines(m, "modgate_cache_disk"))
	}

	if err := os.Remove(filepath.Join(mnt, "filler")); err != nil {
		t.Fatal(err)
	}
	got, n := getSHA256(t, "http://"+g.listen+zipPath)
	if n != size || got != want {
		t.Fatalf("after freeing the space: %d bytes, sha256 %x; want the upstream's %d bytes, %x", n, got, size, want)
	}
	if body := adminGet(t, g, "/readyz"); body != "ready\n" {
		t.Errorf("/readyz after freeing the space: %q, want ready", body)
	}
	if m := adminGet(t, g, "/metrics"); !strings.Contains(m, "modgate_cache_disk_full 0") {
		t.Errorf("metrics after freeing the space:\n%s", grepLines(m, "modgate_cache_disk"))
	}
	stopWithin(t, g, 10*time.Second)

	g = startGate(t, dataDir, append(args, "--offline")...)
	checkServed(t, g, bodies)
	if got, n := getSHA256(t, "http://"+g.listen+zipPath); n != size || got != want {
		t.Fatalf("after the restart: %d bytes, sha256 %x; want %d bytes, %x", n, got, size, want)
	}
	stopWithin(t, g, 10*time.Second)
}

// TestShutdownDataDirRemoved removes the data directory under a running
// gate; SIGTERM must still end it within --shutdown-timeout.
func TestShutdownDataDirRemoved(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	up := fakeupstream.Start(t, fakeupstream.Options{})
	g := startGate(t, dataDir, "--upstream", up.URL, "--upstream-sumdb", up.VerifierKey(), "--shutdown-timeout", "4s")
	if r := gateGet(t, g, tamperMod); r.status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", tamperMod, r.status, r.body)
	}
	if err := os.RemoveAll(dataDir); err != nil {
		t.Fatal(err)
	}
	stopWithin(t, g, 4*time.Second)
	if log := g.Log(); strings.Contains(log, "Retrying") && !strings.Contains(log, "abandoned") {
		t.Errorf("the cache could not flush, but the log does not say what was abandoned:\n%s", log)
	}
}

// TestFlippedBytesRefetched flips bytes of a cached zip in the cache's
// value log while the gate is stopped: the restarted gate detects it
// before sending a byte, drops the entry and fetches the zip again
// (online), or answers 504 with the reason (offline). The broken bytes are
// never served.
func TestFlippedBytesRefetched(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	up := fakeupstream.Start(t, fakeupstream.Options{})
	m := module.Version{Path: "example.com/large", Version: "v1.0.0"}
	file, err := up.AddLargeModule(m, 3<<20, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	content, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(content)
	args := []string{"--upstream", up.URL, "--upstream-sumdb", up.VerifierKey()}
	zipPath := fakeupstream.ZipPath(m)
	g := startGate(t, dataDir, args...)
	if got, _ := getSHA256(t, "http://"+g.listen+zipPath); got != want {
		t.Fatal("first fetch: wrong bytes")
	}
	for _, offline := range []bool{false, true} {
		g.stop()
		if !flipInFiles(t, filepath.Join(dataDir, "cache"), ".vlog", content[len(content)/2:len(content)/2+4096]) {
			t.Fatal("the zip's bytes are not in the cache's value log")
		}
		before := up.Requests(zipPath)
		if offline {
			g = startGate(t, dataDir, append(args, "--offline")...)
			r := gateGet(t, g, zipPath)
			if r.status != http.StatusGatewayTimeout || !strings.Contains(string(r.body), "unreadable") {
				t.Fatalf("offline, flipped: %d %.200q, want 504 saying the cached copy was unreadable", r.status, r.body)
			}
			continue
		}
		g = startGate(t, dataDir, args...)
		if got, n := getSHA256(t, "http://"+g.listen+zipPath); got != want || n != int64(len(content)) {
			t.Fatalf("online, flipped: %d bytes, sha256 %x, want the upstream's", n, got)
		}
		if up.Requests(zipPath) != before+1 {
			t.Errorf("the zip was not fetched again: %d upstream requests, want %d", up.Requests(zipPath), before+1)
		}
		if !g.logged("cached object unreadable") {
			t.Errorf("the log does not report the unreadable object:\n%s", g.Log())
		}
	}
}

// TestReadOnlyDataDir refuses to serve from a data directory on a
// read-only filesystem, with an error that says so.
func TestReadOnlyDataDir(t *testing.T) {
	mnt := tmpfs.Mount(t, 512<<20)
	dataDir := filepath.Join(mnt, "data")
	g := startGate(t, dataDir)
	g.stop()
	tmpfs.Remount(t, mnt, "ro")
	defer tmpfs.Remount(t, mnt, "rw")
	out, err := runModgate(t, "serve", "--data-dir", dataDir, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0")
	if err == nil || !strings.Contains(out, "read-only filesystem") {
		t.Fatalf("serve on a read-only data directory: %v\n%s\nwant an error saying read-only filesystem", err, out)
	}
}

// checkServed checks that every path still answers 200 with its body.
func checkServed(t *testing.T, g *gateProc, bodies map[string][]byte) {
	t.Helper()
	for p, b := range bodies {
		if r := gateGet(t, g, p); r.status != http.StatusOK || !bytes.Equal(r.body, b) {
			t.Errorf("GET %s: %d (%d bytes), want 200 with the %d bytes served before", p, r.status, len(r.body), len(b))
		}
	}
}

// stopWithin sends SIGTERM and fails unless the gate exits within d (plus
// a second of slack for the machine).
func stopWithin(t *testing.T, g *gateProc, d time.Duration) {
	t.Helper()
	start := time.Now()
	g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.done:
		t.Logf("SIGTERM ended the gate in %v", time.Since(start).Round(time.Millisecond))
	case <-time.After(d + time.Second):
		t.Errorf("SIGTERM did not end the gate within %v:\n%s", d, g.Log())
		g.cmd.Process.Kill()
		<-g.done
	}
}

// adminGet returns the body of an admin listener page.
func adminGet(t *testing.T, g *gateProc, path string) string {
	t.Helper()
	resp, err := http.Get("http://" + g.admin + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// flipInFiles flips one byte of the first occurrence of needle in the
// files of dir ending in ext.
func flipInFiles(t *testing.T, dir, ext string, needle []byte) bool {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*"+ext))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if i := bytes.Index(b, needle); i >= 0 {
			b[i+len(needle)/2] ^= 0x40
			return os.WriteFile(f, b, 0o600) == nil
		}
	}
	return false
}

// runModgate runs the modgate binary to its end and returns its output.
func runModgate(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+t.TempDir())
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
		}
	}()
	out, err := cmd.CombinedOutput()
	return string(out), err
}
