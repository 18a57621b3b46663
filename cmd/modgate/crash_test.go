package main

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/mod/module"

	"github.com/modgate/modgate/internal/fakeupstream"
)

// crashZipSize is the size of the zip the crash test kills modgate in
// the middle of storing: large enough that storing it takes a while.
const crashZipSize = 160 << 20

// TestCrashWhileStoringZip kills modgate with SIGKILL while it stores a
// large verified zip in the cache, restarts it, and checks that the cache
// opens (sweeping the half-written chunks), that the half-stored zip is
// never served (offline, the request misses: 504), and that a new online
// request stores and serves it whole.
//
// The moment is found from /proc/<pid>/io: modgate reads the zip four
// times, from the upstream's socket (spooling it), from the spool file
// (streaming it to the client meanwhile), from the spool file (hashing
// it) and from the spool file again (storing it), so once it has read
// three and a half times the zip's size it is half-way through PutBlob.
func TestCrashWhileStoringZip(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("finds the moment to kill from /proc/<pid>/io")
	}
	if testing.Short() {
		t.Skip("moves a 160 MiB zip around")
	}
	dataDir := filepath.Join(t.TempDir(), "data")
	up := fakeupstream.Start(t, fakeupstream.Options{})
	m := module.Version{Path: "example.com/large", Version: "v1.0.0"}
	file, err := up.AddLargeModule(m, crashZipSize, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	want, size := fileSHA256(t, file)
	args := []string{"--upstream", up.URL, "--upstream-sumdb", up.VerifierKey()}
	g := startGate(t, dataDir, args...)
	zipURL := "http://" + g.listen + fakeupstream.ZipPath(m)

	base := readChars(t, g.cmd.Process.Pid)
	go func() {
		if resp, err := http.Get(zipURL); err == nil { // ends when modgate dies
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	killAt := base + 7*size/2
	deadline := time.Now().Add(2 * time.Minute)
	for readChars(t, g.cmd.Process.Pid) < killAt {
		if time.Now().After(deadline) {
			t.Fatalf("modgate did not read the zip four times in 2 minutes (read %d bytes)\n%s", readChars(t, g.cmd.Process.Pid)-base, g.Log())
		}
		time.Sleep(time.Millisecond)
	}
	spooled, _ := filepath.Glob(filepath.Join(dataDir, "spool", "modgate-spool-*"))
	g.cmd.Process.Signal(syscall.SIGKILL)
	<-g.done
	if len(spooled) != 1 {
		t.Fatalf("at the kill the spool held %q, want the one zip being stored", spooled)
	}

	g = startGate(t, dataDir, append(args, "--offline")...)
	if !g.logged("swept orphan blob chunks") {
		t.Errorf("the restarted cache swept no orphan chunks: was modgate killed while storing?\n%s", g.Log())
	}
	r := gateGet(t, g, fakeupstream.ZipPath(m))
	if r.status != http.StatusGatewayTimeout || !strings.Contains(string(r.body), "not in the cache") {
		t.Fatalf("offline after the crash: %d, %d bytes (%.80q), want 504: the half-stored zip must not be served", r.status, len(r.body), r.body)
	}
	g.stop()

	before := up.Requests(fakeupstream.ZipPath(m))
	g = startGate(t, dataDir, args...)
	zipURL = "http://" + g.listen + fakeupstream.ZipPath(m)
	got, n := getSHA256(t, zipURL)
	if n != size || got != want {
		t.Fatalf("online after the crash: %d bytes, sha256 %x; want %d bytes, %x", n, got, size, want)
	}
	if up.Requests(fakeupstream.ZipPath(m)) != before+1 {
		t.Errorf("the zip was not fetched again after the crash")
	}
	if got, n := getSHA256(t, zipURL); n != size || got != want { // from the cache now
		t.Errorf("from the cache: %d bytes, sha256 %x; want %d, %x", n, got, size, want)
	}
}

// readChars returns rchar of /proc/<pid>/io: the bytes the process has
// read with read(2) and friends, from files and sockets alike.
func readChars(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		t.Fatalf("reading modgate's I/O counters: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "rchar: "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no rchar in /proc/%d/io", pid)
	return 0
}

// fileSHA256 returns the SHA-256 and size of a file.
func fileSHA256(t *testing.T, name string) ([32]byte, int64) {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil)), n
}

// getSHA256 fetches u and returns the SHA-256 and size of a 200 body.
func getSHA256(t *testing.T, u string) ([32]byte, int64) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		t.Fatalf("GET %s: %d %s", u, resp.StatusCode, body)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil)), n
}
