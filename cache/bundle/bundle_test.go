package bundle

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/note"
)

var libMods = []module.Version{
	{Path: "example.com/lib", Version: "v1.2.0"},
	{Path: "example.com/dep", Version: "v1.0.0"},
	{Path: "example.com/Upper", Version: "v1.0.0"},
}

// TestRoundTrip writes and verifies bundles, plain and compressed, and
// checks that the same content gives the same bytes.
func TestRoundTrip(t *testing.T) {
	f := newFixture(t)
	for _, c := range []Compression{Tar, TarZst} {
		t.Run([]string{"tar", "tar.zst"}[c], func(t *testing.T) {
			b := f.write(options{mods: libMods, c: c})
			if again := f.write(options{mods: libMods, c: c}); !bytes.Equal(b, again) {
				t.Error("the same content gave different bytes")
			}
			v, err := f.verify(b, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if !v.Trusted || len(v.Records) != len(libMods) || v.Tree.N != f.up.TreeSize() {
				t.Errorf("verified: trusted %v, %d records, tree #%d", v.Trusted, len(v.Records), v.Tree.N)
			}
		})
	}
}

// TestTampered checks that each kind of tampering is refused with the
// right error.
func TestTampered(t *testing.T) {
	f := newFixture(t)
	zipName := "example.com/lib/@v/v1.2.0.zip"
	other, _, _ := note.GenerateKey(rand.Reader, "sum.golang.org")
	otherSigner, _ := note.NewSigner(other)
	tests := []struct {
		name string
		o    options
		want error
		text string
	}{
		{"a byte flipped in a zip", options{edit: func(fs map[string][]byte) { fs[zipName][len(fs[zipName])/3] ^= 1 }},
			ErrMismatch, "zip of example.com/lib@v1.2.0"},
		{"a record removed", options{edit: func(fs map[string][]byte) {
			delete(fs, "sumdb/sum.golang.org/lookup/example.com/dep@v1.0.0")
		}}, ErrProof, "no record of example.com/dep@v1.0.0"},
		{"a manifest signed by another key", options{signer: otherSigner}, ErrSignature, "not signed by"},
		{"a tile altered", options{edit: func(fs map[string][]byte) {
			for n, b := range fs {
				if strings.Contains(n, "/tile/8/0/") {
					b[0] ^= 1
				}
			}
		}}, ErrProof, "proving the records"},
		{"a .mod changed", options{edit: func(fs map[string][]byte) {
			fs["example.com/dep/@v/v1.0.0.mod"] = append(fs["example.com/dep/@v/v1.0.0.mod"], '\n')
		}}, ErrMismatch, "go.mod of example.com/dep@v1.0.0"},
		{"an extra file", options{edit: func(fs map[string][]byte) { fs["example.com/evil/@v/list"] = []byte("v1.0.0\n") }},
			ErrProof, "example.com/evil/@v/list is not a file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.o.mods = libMods
			_, err := f.verify(f.write(tt.o), Limits{})
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.text) {
				t.Errorf("err = %v, want %v containing %q", err, tt.want, tt.text)
			}
		})
	}
	t.Run("a file changed after signing", func(t *testing.T) {
		b := f.write(options{mods: libMods})
		i := bytes.Index(b, []byte(`"v1.2.0"`))
		if i < 0 {
			t.Fatal("no .info in the tar")
		}
		b[i+2] = '9'
		if _, err := f.verify(b, Limits{}); !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), "SHA-256") {
			t.Errorf("err = %v, want a SHA-256 mismatch", err)
		}
	})
}

// hostile is a tar with the given headers and contents, then a manifest
// and signature that are never reached or never match.
func hostile(t *testing.T, entries []tar.Header, trailer bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range entries {
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write(bytes.Repeat([]byte{'a'}, int(h.Size)))
		}
	}
	if trailer {
		tw.Close()
	} else {
		tw.Flush()
	}
	return buf.Bytes()
}

// TestHostile checks that hostile archives are refused while reading,
// with nothing written outside the directory.
func TestHostile(t *testing.T) {
	f := newFixture(t)
	reg := func(name string, size int64) tar.Header {
		return tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644}
	}
	good := f.write(options{mods: libMods})
	tests := []struct {
		name string
		data []byte
		lim  Limits
		text string
	}{
		{"dot-dot", hostile(t, []tar.Header{reg("a/../../escape", 1)}, true), Limits{}, "not a clean relative path"},
		{"absolute", hostile(t, []tar.Header{reg("/etc/escape", 1)}, true), Limits{}, "not a clean relative path"},
		{"symlink", hostile(t, []tar.Header{{Typeflag: tar.TypeSymlink, Name: "link", Linkname: "/etc"}}, true),
			Limits{}, "not a regular file"},
		{"hard link", hostile(t, []tar.Header{{Typeflag: tar.TypeLink, Name: "link", Linkname: "x"}}, true),
			Limits{}, "not a regular file"},
		{"device", hostile(t, []tar.Header{{Typeflag: tar.TypeChar, Name: "dev", Devmajor: 1, Devminor: 3}}, true),
			Limits{}, "not a regular file"},
		{"duplicate", hostile(t, []tar.Header{reg("a", 1), reg("a", 1)}, true), Limits{}, "appears twice"},
		{"over the zip size limit", hostile(t, []tar.Header{reg("a.zip", 2048)}, true), Limits{MaxFile: 1024},
			"over the limit of 1024"},
		{"truncated", good[:len(good)/2], Limits{}, "truncated"},
		{"no manifest", hostile(t, []tar.Header{reg("a", 1)}, true), Limits{}, "no modgate-bundle.json"},
	}
	bomb := zstdBomb(t)
	tests = append(tests, struct {
		name string
		data []byte
		lim  Limits
		text string
	}{"compression bomb", bomb, Limits{MaxTotal: 64 << 20}, "compression bomb"})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			dir := filepath.Join(root, "x")
			os.Mkdir(dir, 0o755)
			_, err := f.verify(tt.data, tt.lim)
			_, err = Extract(t.Context(), bytes.NewReader(tt.data), dir, tt.lim)
			if !errors.Is(err, ErrHostile) || !strings.Contains(err.Error(), tt.text) {
				t.Errorf("err = %v, want ErrHostile containing %q", err, tt.text)
			}
			if entries, _ := os.ReadDir(root); len(entries) != 1 {
				t.Errorf("something was written next to the directory: %v", entries)
			}
		})
	}
}

// zstdBomb is a few kilobytes of zstd that expand to 1 GiB of tar.
func zstdBomb(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := zstd.NewWriter(&buf, zstd.WithEncoderLevel(zstd.SpeedBestCompression))
	tw := tar.NewWriter(zw)
	zero := make([]byte, 1<<20)
	for i := range 32 {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "f" + string(rune('a'+i)), Size: 32 << 20, Mode: 0o644})
		for range 32 {
			tw.Write(zero)
		}
	}
	tw.Close()
	zw.Close()
	if buf.Len() > 1<<20 {
		t.Fatalf("bomb is %d bytes", buf.Len())
	}
	return buf.Bytes()
}

// TestSince checks an incremental bundle's consistency tiles, and that
// a wrong older tree is refused.
func TestSince(t *testing.T) {
	f := newFixture(t)
	b := f.write(options{mods: libMods[:1], since: 2})
	v, err := f.verify(b, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if v.Manifest.Since == nil || v.Manifest.Since.Size != 2 {
		t.Fatalf("since = %+v", v.Manifest.Since)
	}
}

// TestStockClient serves an extracted bundle to a real go command as a
// file:// GOPROXY with the upstream's key, and no network.
func TestStockClient(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command")
	}
	f := newFixture(t)
	root := t.TempDir()
	tree := filepath.Join(root, "bundle")
	extractTo(t, f.write(options{mods: libMods, c: TarZst}), tree)
	app := filepath.Join(root, "app")
	os.MkdirAll(app, 0o755)
	os.WriteFile(filepath.Join(app, "go.mod"), []byte("module example.com/app\n\ngo 1.21\n"), 0o644)
	cmd := exec.Command("go", "mod", "download", "-json", "example.com/lib@v1.2.0", "example.com/dep@v1.0.0",
		"example.com/Upper@v1.0.0")
	cmd.Dir = app
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + root, "GOPATH=" + filepath.Join(root, "gopath"),
		"GOMODCACHE=" + filepath.Join(root, "modcache"), "GOCACHE=" + filepath.Join(root, "gocache"),
		"GOFLAGS=-mod=mod", "GOTOOLCHAIN=local", "GOTELEMETRY=off", "GOPROXY=file://" + filepath.ToSlash(tree),
		"GOSUMDB=" + f.up.VerifierKey(), "GONOSUMDB=", "GOPRIVATE=", "GONOPROXY=", "HTTPS_PROXY=http://127.0.0.1:1",
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go mod download: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(root, "gopath", "pkg", "sumdb", "sum.golang.org", "latest")); err != nil {
		t.Errorf("the go command did not check the checksum database: %v", err)
	}
}
