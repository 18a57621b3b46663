package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/module"

	"github.com/modgate/modgate/internal/fakeupstream"
)

// streamTamperSize is the size of the zip of TestTamperStreamedZip: many
// times the tail modgate holds back (64 KiB), so that most of it is
// streamed before it is verified.
const streamTamperSize = 8 << 20

// TestTamperStreamedZip is the tamper case of the streaming path: the
// upstream serves a zip whose hash differs from the checksum database's,
// and a cold gate streams it to its clients as it arrives. A raw HTTP
// client, which has read the first half while the upstream held the
// rest, sees its answer cut short, never complete; the real go command
// fails to download it and keeps nothing of it; the gate's cache keeps
// nothing and no spool file is left. Once the upstream serves the honest
// zip, it is fetched again and the go command downloads it.
func TestTamperStreamedZip(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	up := fakeupstream.Start(t, fakeupstream.Options{})
	m := module.Version{Path: "example.com/large", Version: "v1.0.0"}
	good, err := up.AddLargeModule(m, streamTamperSize, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	altered := filepath.Join(t.TempDir(), "altered.zip")
	if err := fakeupstream.WriteOtherLargeZip(altered, m, streamTamperSize); err != nil {
		t.Fatal(err)
	}
	path := fakeupstream.ZipPath(m)
	release := make(chan struct{})
	up.Handle(path, servePaused(t, altered, release))
	args := []string{"--upstream", up.URL, "--upstream-sumdb", up.VerifierKey()}
	g := startGate(t, dataDir, args...)

	resp, err := http.Get("http://" + g.listen + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d, want the zip streamed (200)", path, resp.StatusCode)
	}
	first, err := io.ReadFull(resp.Body, make([]byte, streamTamperSize/2))
	if err != nil {
		t.Fatalf("reading the first half while the upstream holds the rest: %v (%d bytes)", err, first)
	}
	close(release)
	rest, err := io.Copy(io.Discard, resp.Body)
	if got := int64(first) + rest; err == nil || got >= resp.ContentLength {
		t.Errorf("raw client: %d of %d bytes, error %v; want the answer cut short", got, resp.ContentLength, err)
	}

	up.Handle(path, servePaused(t, altered, nil))
	c := newClient(t, g, viaIntercept, g.verifier, "module example.com/app\n\ngo 1.21\n")
	out, err := c.run("mod", "download", m.String())
	if err == nil {
		t.Errorf("go mod download %s succeeded with a zip whose hash fails:\n%s", m, out)
	}
	if !strings.Contains(out, "unexpected EOF") {
		t.Errorf("go output lacks the cut answer (unexpected EOF):\n%s", out)
	}
	zips, _ := filepath.Glob(filepath.Join(filepath.Dir(c.dir), "modcache", "cache", "download", "example.com",
		"large", "@v", "*.zip"))
	if len(zips) > 0 {
		t.Errorf("the go command kept %q", zips)
	}
	g.stop()
	inspectCache(t, dataDir, tamperCase{absent: []string{"zip/example.com/large/@v/v1.0.0"}})

	up.Handle(path, servePaused(t, good, nil))
	g = startGate(t, dataDir, args...)
	before := up.Requests(path)
	c = newClient(t, g, viaIntercept, g.verifier, "module example.com/app\n\ngo 1.21\n")
	c.must("mod", "download", m.String())
	if up.Requests(path) == before {
		t.Errorf("the honest zip was not fetched again: was the bad one cached?")
	}
}

// servePaused serves file with its length, the second half only once
// release is closed (nil: after a short pause), so that a gate streams
// the first half before it has all of it.
func servePaused(t *testing.T, file string, release <-chan struct{}) http.HandlerFunc {
	body, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body[:len(body)/2])
		http.NewResponseController(w).Flush()
		if release != nil {
			<-release
		} else {
			time.Sleep(200 * time.Millisecond)
		}
		w.Write(body[len(body)/2:])
	}
}
