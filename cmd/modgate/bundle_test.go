package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modgate/modgate/cache/bundle"
	"github.com/modgate/modgate/internal/fakeupstream"
)

// appGoSum is a real-looking go.sum for appMod, from the fake upstream.
func appGoSum(t *testing.T, up *fakeupstream.Server, dir string) string {
	t.Helper()
	var b strings.Builder
	for _, m := range up.Modules() {
		switch m.Path + "@" + m.Version {
		case "example.com/lib@v1.2.0", "example.com/dep@v1.0.0", "example.com/Upper@v1.0.0", "example.com/bad@v1.2.0":
			zipH1, modH1 := up.GoSum(m)
			b.WriteString(m.Path + " " + m.Version + " " + zipH1 + "\n")
			b.WriteString(m.Path + " " + m.Version + "/go.mod " + modH1 + "\n")
		}
	}
	name := filepath.Join(dir, "go.sum")
	if err := os.WriteFile(name, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return name
}

// unreachable returns a loopback URL where nothing listens.
func unreachable(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

// airGapped starts a gate with its own data directory, --offline and the
// upstream unreachable, that knows only the upstream's key.
func airGapped(t *testing.T, up *fakeupstream.Server) *gateProc {
	t.Helper()
	return startGate(t, filepath.Join(t.TempDir(), "inside"), "--upstream", unreachable(t),
		"--upstream-sumdb", up.VerifierKey(), "--offline")
}

// bundleCLI runs a bundle command against gate g and fails the test if
// the exit code is not want.
func bundleCLI(t *testing.T, g *gateProc, want int, args ...string) string {
	t.Helper()
	if g != nil {
		args = append(args, "--admin", "http://"+g.admin, "--data-dir", g.dataDir)
	}
	out, code := runCLI(t, append([]string{"bundle"}, args...)...)
	if code != want {
		t.Fatalf("modgate bundle %s: exit %d, want %d:\n%s", strings.Join(args, " "), code, want, out)
	}
	return out
}

// TestBundleRoundTrip exports a go.sum's modules from one gate and imports
// them into an air-gapped one, which then serves a fresh go client through
// interception and as GOPROXY, with GOSUMDB pinned to its enterprise key.
func TestBundleRoundTrip(t *testing.T) {
	dir := t.TempDir()
	up, out := fakeGate(t, filepath.Join(dir, "outside"))
	file := filepath.Join(dir, "app.tar.zst")
	bundleCLI(t, out, 0, "export", "-o", file, "--go-sum", appGoSum(t, up, dir))
	if got := bundleCLI(t, nil, 0, "verify", file, "--upstream-sumdb", up.VerifierKey(), "--trust", out.verifier); !strings.Contains(got, "ok: 4 module versions") {
		t.Errorf("verify: %s", got)
	}
	if got := bundleCLI(t, nil, 0, "ls", file); !strings.Contains(got, "example.com/Upper") {
		t.Errorf("ls: %s", got)
	}

	in := airGapped(t, up)
	// Signed by the outside gate's key, which the inside gate does not know.
	if got := bundleCLI(t, in, 1, "import", file); !strings.Contains(got, "not signed by") {
		t.Errorf("import without --trust: %s", got)
	}
	bundleCLI(t, in, 0, "import", file, "--trust", out.verifier)
	bundleCLI(t, in, 0, "import", file, "--trust", out.verifier) // twice is harmless
	for _, mode := range []clientMode{viaIntercept, viaGOPROXY} {
		c := newClient(t, in, mode, in.verifier, appMod)
		c.must(appDownload...)
		c.must("mod", "verify")
		checkGoSum(t, up, c)
		checkCoSigned(t, c, in.verifier, up.VerifierKey())
	}
	status, body := httpGet(t, "http://"+in.listen+"/example.com/lib/@v/v1.0.0.info")
	if status != http.StatusGatewayTimeout || !strings.HasPrefix(body, "modgate: example.com/lib@v1.0.0 is not in this air-gapped cache") {
		t.Errorf("a module not imported: %d %q", status, body)
	}
	if status, body := httpGet(t, "http://"+in.listen+"/example.com/lib/@v/list"); status != 200 || body != "v1.2.0\n" {
		t.Errorf("list: %d %q, want the imported version", status, body)
	}
	if status, body := httpGet(t, "http://"+in.listen+"/example.com/lib/@latest"); status != 200 || !strings.Contains(body, `"v1.2.0"`) {
		t.Errorf("@latest: %d %q", status, body)
	}
}

// TestBundleTampered imports bundles that must be refused, each with
// nothing imported.
func TestBundleTampered(t *testing.T) {
	dir := t.TempDir()
	up, out := fakeGate(t, filepath.Join(dir, "outside"))
	file := filepath.Join(dir, "app.tar")
	bundleCLI(t, out, 0, "export", "-o", file, "--go-sum", appGoSum(t, up, dir))
	good, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(good)
	i := bytes.Index(flipped, []byte("PK\x03\x04"))
	if i < 0 {
		t.Fatal("no zip in the bundle (is it compressed?)")
	}
	flipped[i+100] ^= 1
	in := airGapped(t, up)
	for _, tc := range []struct {
		name, want string
		data       []byte
	}{
		{"a byte flipped in a zip", "has SHA-256", flipped},
		{"truncated", "truncated", good[:len(good)*2/3]},
		{"a link", "not a regular file", tarOf(t, tar.Header{Typeflag: tar.TypeSymlink, Name: "x", Linkname: "/etc/passwd"})},
		{"dot-dot", "not a clean relative path", tarOf(t, tar.Header{Typeflag: tar.TypeReg, Name: "../../x", Size: 1})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := filepath.Join(t.TempDir(), "bad.tar")
			os.WriteFile(bad, tc.data, 0o644)
			if got := bundleCLI(t, in, 1, "import", bad, "--trust", out.verifier); !strings.Contains(got, tc.want) {
				t.Errorf("import: %s, want %q", got, tc.want)
			}
			if status, _ := httpGet(t, "http://"+in.listen+"/example.com/dep/@v/v1.0.0.mod"); status != http.StatusGatewayTimeout {
				t.Errorf("after a refused import, a module is served: %d", status)
			}
		})
	}
}

// tarOf is a tar of one entry (a regular file holds one byte).
func tarOf(t *testing.T, h tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&h); err != nil {
		t.Fatal(err)
	}
	if h.Size == 1 {
		tw.Write([]byte{'x'})
	}
	tw.Close()
	return buf.Bytes()
}

// publish adds example.com/<name>@v1.0.0 to the fake upstream; its record
// is appended to the tree at once.
func publish(t *testing.T, up *fakeupstream.Server, name string) {
	t.Helper()
	archive := fmt.Sprintf("-- .mod --\nmodule example.com/%s\n\ngo 1.21\n-- go.mod --\nmodule example.com/%s\n\ngo 1.21\n"+
		"-- a.go --\npackage %s\n", name, name, name)
	if _, err := up.AddArchive("example.com_"+name+"_v1.0.0.txt", []byte(archive)); err != nil {
		t.Fatal(err)
	}
}

// treeOf returns the tree size of a bundle file.
func treeOf(t *testing.T, file string) int64 {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := bundle.List(t.Context(), f, bundle.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return m.Tree.Size
}

// TestBundleIncremental stacks --since bundles, refuses a gap naming the
// missing size, accepts an older bundle after a newer one, and records a
// tree inconsistent with the witness as a fork.
func TestBundleIncremental(t *testing.T) {
	dir := t.TempDir()
	up, out := fakeGate(t, filepath.Join(dir, "outside"))
	list := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	b1, b2, b3 := filepath.Join(dir, "b1.tar"), filepath.Join(dir, "b2.tar.zst"), filepath.Join(dir, "b3.tar")
	bundleCLI(t, out, 0, "export", "-o", b1, "--modules", list("m1", "example.com/lib@v1.0.0\n"))
	publish(t, up, "second")
	bundleCLI(t, out, 0, "export", "-o", b2, "--since", b1,
		"--modules", list("m2", "# the new ones\nexample.com/second@v1.0.0\nexample.com/lib@v1.0.0\n"))
	publish(t, up, "third")
	bundleCLI(t, out, 0, "export", "-o", b3, "--since", b2, "--modules", list("m3", "example.com/third@v1.0.0\n"))
	if got := bundleCLI(t, nil, 0, "ls", b2); !strings.Contains(got, "extends tree #") || strings.Contains(got, "example.com/lib") {
		t.Errorf("b2 should extend b1 and leave out what b1 carried:\n%s", got)
	}

	in := airGapped(t, up)
	trust := []string{"--trust", out.verifier}
	bundleCLI(t, in, 0, append([]string{"import", b1}, trust...)...)
	want := fmt.Sprintf("import the bundle of tree #%d first", treeOf(t, b2))
	if got := bundleCLI(t, in, 1, append([]string{"import", b3}, trust...)...); !strings.Contains(got, want) {
		t.Errorf("a gap: %s\nwant %q", got, want)
	}
	bundleCLI(t, in, 0, append([]string{"import", b2}, trust...)...)
	bundleCLI(t, in, 0, append([]string{"import", b3}, trust...)...)
	bundleCLI(t, in, 0, append([]string{"import", b1}, trust...)...) // older, consistent
	// --since-size: from the size the inside gate has witnessed.
	publish(t, up, "fourth")
	b5 := filepath.Join(dir, "b5.tar")
	bundleCLI(t, out, 0, "export", "-o", b5, "--since-size", fmt.Sprint(treeOf(t, b3)),
		"--modules", list("m5", "example.com/fourth@v1.0.0\n"))
	bundleCLI(t, in, 0, append([]string{"import", b5}, trust...)...)
	c := newClient(t, in, viaGOPROXY, in.verifier, "module example.com/app\n\ngo 1.21\n")
	c.must("mod", "download", "example.com/lib@v1.0.0", "example.com/second@v1.0.0", "example.com/third@v1.0.0",
		"example.com/fourth@v1.0.0")

	// A gate that starts on a forked upstream exports a tree the inside
	// witness cannot accept.
	up.Fork()
	forked := startGate(t, filepath.Join(dir, "forked"), "--upstream", up.URL, "--upstream-sumdb", up.VerifierKey())
	b4 := filepath.Join(dir, "b4.tar")
	bundleCLI(t, forked, 0, "export", "-o", b4, "--modules", list("m4", "example.com/dep@v1.0.0\n"))
	if got := bundleCLI(t, in, 1, "import", b4, "--trust", forked.verifier); !strings.Contains(got, "fork") {
		t.Errorf("an inconsistent tree: %s", got)
	}
	if got, code := runCLI(t, "witness", "status", "--admin", "http://"+in.admin, "--data-dir", in.dataDir); code != 1 ||
		!strings.Contains(got, "fork") {
		t.Errorf("witness status after the fork (exit %d):\n%s", code, got)
	}
	if status, _ := httpGet(t, "http://"+in.listen+"/example.com/dep/@v/v1.0.0.mod"); status != http.StatusGatewayTimeout {
		t.Errorf("the forked bundle's module is served: %d", status)
	}
}

// TestBundleGoMod exports the transitive requirements of a go.mod.
func TestBundleGoMod(t *testing.T) {
	dir := t.TempDir()
	up, out := fakeGate(t, filepath.Join(dir, "outside"))
	goMod := filepath.Join(dir, "go.mod")
	os.WriteFile(goMod, []byte("module example.com/app\n\ngo 1.21\n\nrequire example.com/lib v1.2.0\n"), 0o644)
	file := filepath.Join(dir, "b.tar")
	bundleCLI(t, out, 0, "export", "-o", file, "--go-mod", goMod)
	got := bundleCLI(t, nil, 0, "ls", file)
	for _, m := range []string{"example.com/lib", "example.com/dep"} { // dep is lib's requirement
		if !strings.Contains(got, m) {
			t.Errorf("ls lacks %s:\n%s", m, got)
		}
	}
	// --with-vulndb carries the newest version of the vulnerability database module.
	for _, v := range []string{"v0.0.0-20251101000000-0123456789ab", "v0.0.0-20251130000000-0123456789ab"} {
		archive := "-- go.mod --\nmodule golang.org/x/vulndb\n\ngo 1.21\n-- data/osv/GO-2099-0001.json --\n{}\n"
		if _, err := up.AddArchive("golang.org_x_vulndb_"+v+".txt", []byte(archive)); err != nil {
			t.Fatal(err)
		}
	}
	vfile := filepath.Join(dir, "vulndb.tar")
	bundleCLI(t, out, 0, "export", "-o", vfile, "--with-vulndb")
	if got := bundleCLI(t, nil, 0, "ls", vfile); !strings.Contains(got, "v0.0.0-20251130000000-0123456789ab") ||
		strings.Contains(got, "20251101") {
		t.Errorf("--with-vulndb: %s", got)
	}

	// Policy applies: a denied version fails the export with the rule's reason.
	mustPolicy(t, out, "deny", "example.com/dep@v1.0.0", "--reason", "broken release")
	if got := bundleCLI(t, out, 1, "export", "-o", file+"2", "--go-mod", goMod); !strings.Contains(got, "broken release") {
		t.Errorf("export of a denied version: %s", got)
	}
	if _, err := os.Stat(file + "2"); err == nil {
		t.Error("a refused export left a file")
	}
}

// TestBundleStockClient serves a gate's bundle, extracted, to a fresh go
// client as a file:// GOPROXY with the upstream's key: no modgate runs.
func TestBundleStockClient(t *testing.T) {
	dir := t.TempDir()
	up, out := fakeGate(t, filepath.Join(dir, "outside"))
	file := filepath.Join(dir, "app.tar.zst")
	bundleCLI(t, out, 0, "export", "-o", file, "--go-sum", appGoSum(t, up, dir))
	out.stop()
	tree := filepath.Join(dir, "tree")
	os.Mkdir(tree, 0o755)
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := bundle.Extract(t.Context(), f, tree, bundle.Limits{}); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{up.VerifierKey(), out.verifier} {
		c := newClient(t, out, viaGOPROXY, key, appMod)
		c.env = append(c.env, "GOPROXY=file://"+filepath.ToSlash(tree), "HTTPS_PROXY="+unreachable(t))
		c.must(appDownload...)
		c.must("mod", "verify")
		checkGoSum(t, up, c)
	}
}
