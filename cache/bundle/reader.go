package bundle

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// Limits bound what Extract accepts. Zero values mean the defaults.
type Limits struct {
	// MaxFile is the largest entry: 500 MiB, the module zip limit.
	MaxFile int64
	// MaxTotal bounds the sum of the entries' sizes (the uncompressed
	// bytes): 64 GiB. A compression bomb stops here.
	MaxTotal int64
	// MaxFiles bounds the number of entries: 1,000,000.
	MaxFiles int
	// MaxManifest bounds the manifest and its signature: 64 MiB.
	MaxManifest int64
}

// Default limits.
const (
	DefaultMaxFile     = 500 << 20
	DefaultMaxTotal    = 64 << 30
	DefaultMaxFiles    = 1_000_000
	DefaultMaxManifest = 64 << 20
)

func (l Limits) withDefaults() Limits {
	if l.MaxFile <= 0 {
		l.MaxFile = DefaultMaxFile
	}
	if l.MaxTotal <= 0 {
		l.MaxTotal = DefaultMaxTotal
	}
	if l.MaxFiles <= 0 {
		l.MaxFiles = DefaultMaxFiles
	}
	if l.MaxManifest <= 0 {
		l.MaxManifest = DefaultMaxManifest
	}
	return l
}

// zstdMagic starts every zstd frame.
var zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}

// Extracted is a bundle unpacked into a directory, with what Extract
// measured of each file while writing it.
type Extracted struct {
	Dir      string
	Files    map[string]File // by name; the manifest and its signature excepted
	Manifest []byte          // modgate-bundle.json
	Sig      []byte          // modgate-bundle.sig

	// zips hashes the zips (dirhash h1:) while the rest is read, for Verify.
	zips *zipHasher
}

// Path returns the file name of a bundle entry in the directory.
func (e *Extracted) Path(name string) string { return filepath.Join(e.Dir, filepath.FromSlash(name)) }

// Extract unpacks the bundle read from r (a tar, or a zstd-compressed tar)
// into dir, which must exist and be empty, and measures every file (with
// dir "" it writes nothing and only measures: enough to list a bundle). It
// refuses, with an error wrapping ErrHostile, an entry whose name is not a
// clean relative path, anything but a regular file (links, devices,
// directories), a duplicate name, an entry over MaxFile, more than
// MaxTotal bytes or MaxFiles entries in all, a truncated stream, and a
// bundle without its manifest and signature last. Reading stops at the
// first limit. On error the caller removes dir.
func Extract(ctx context.Context, r io.Reader, dir string, lim Limits) (*Extracted, error) {
	lim = lim.withDefaults()
	br := bufio.NewReaderSize(r, 1<<20)
	if magic, _ := br.Peek(4); bytes.Equal(magic, zstdMagic) {
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderMaxMemory(uint64(min(lim.MaxTotal, 1<<40))), zstd.WithDecoderMaxWindow(64<<20))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		defer zr.Close()
		r = zr
	} else {
		r = br
	}
	ex := &Extracted{Dir: dir, Files: map[string]File{}}
	if dir != "" {
		ex.zips = newZipHasher(lim.MaxFile)
		defer ex.zips.wait() // on error too: no worker outlives Extract
	}
	tr := tar.NewReader(r)
	var total int64
	for n := 0; ; n++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: reading entry %d: %v (a truncated or corrupt stream)", ErrHostile, n+1, err)
		}
		if err := ex.check(hdr, n, lim, total); err != nil {
			return nil, err
		}
		total += hdr.Size
		if err := ex.entry(hdr, tr, lim); err != nil {
			return nil, err
		}
	}
	if ex.Manifest == nil || ex.Sig == nil {
		return nil, fmt.Errorf("%w: no %s and %s at the end: a truncated stream, or not a modgate bundle",
			ErrHostile, ManifestName, SigName)
	}
	return ex, nil
}

// check refuses a header before any of its content is read.
func (ex *Extracted) check(hdr *tar.Header, n int, lim Limits, total int64) error {
	if err := checkName(hdr.Name); err != nil {
		return err
	}
	switch {
	case hdr.Typeflag != tar.TypeReg:
		return fmt.Errorf("%w: entry %s is not a regular file (type %q): links, devices and directories are refused",
			ErrHostile, hdr.Name, hdr.Typeflag)
	case n >= lim.MaxFiles:
		return fmt.Errorf("%w: more than %d entries", ErrHostile, lim.MaxFiles)
	case hdr.Size < 0 || hdr.Size > lim.MaxFile:
		return fmt.Errorf("%w: entry %s has %d bytes, over the limit of %d", ErrHostile, hdr.Name, hdr.Size,
			lim.MaxFile)
	case hdr.Size > lim.MaxTotal-total:
		return fmt.Errorf("%w: entry %s takes the bundle over %d bytes uncompressed: refusing it (a compression bomb?)",
			ErrHostile, hdr.Name, lim.MaxTotal)
	case ex.Sig != nil:
		return fmt.Errorf("%w: entry %s after %s, which must be last", ErrHostile, hdr.Name, SigName)
	case hdr.Name == SigName && ex.Manifest == nil:
		return fmt.Errorf("%w: %s before %s", ErrHostile, SigName, ManifestName)
	case ex.Manifest != nil && hdr.Name != SigName:
		return fmt.Errorf("%w: entry %s after %s, which only %s may follow", ErrHostile, hdr.Name, ManifestName,
			SigName)
	}
	if _, dup := ex.Files[hdr.Name]; dup {
		return fmt.Errorf("%w: entry %s appears twice", ErrHostile, hdr.Name)
	}
	return nil
}

// entry writes one entry to the directory while hashing it.
func (ex *Extracted) entry(hdr *tar.Header, r io.Reader, lim Limits) error {
	var keep *[]byte
	switch hdr.Name {
	case ManifestName:
		keep = &ex.Manifest
	case SigName:
		keep = &ex.Sig
	}
	if keep != nil && hdr.Size > lim.MaxManifest {
		return fmt.Errorf("%w: %s has %d bytes, over the limit of %d", ErrHostile, hdr.Name, hdr.Size, lim.MaxManifest)
	}
	f, err := ex.create(hdr.Name)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	var mem bytes.Buffer
	w := io.MultiWriter(f, h)
	if keep != nil {
		w = io.MultiWriter(f, h, &mem)
	}
	if n, err := io.CopyN(w, r, hdr.Size); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w: entry %s ends after %d of %d bytes: a truncated stream", ErrHostile, hdr.Name, n,
				hdr.Size)
		}
		return fmt.Errorf("%w: entry %s: %v", ErrHostile, hdr.Name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", hdr.Name, err)
	}
	if keep != nil {
		*keep = mem.Bytes()
		return nil
	}
	ex.Files[hdr.Name] = File{Name: hdr.Name, Size: hdr.Size, SHA256: hex.EncodeToString(h.Sum(nil))}
	if ex.zips != nil && strings.HasSuffix(hdr.Name, ".zip") {
		ex.zips.add(hdr.Name, ex.Path(hdr.Name))
	}
	return nil
}

// create creates the file of an entry, or a sink when Dir is "".
func (ex *Extracted) create(name string) (io.WriteCloser, error) {
	if ex.Dir == "" {
		return nopCloser{io.Discard}, nil
	}
	path := ex.Path(name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("%w: entry %s: %v", ErrHostile, name, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%w: entry %s: %v", ErrHostile, name, err)
	}
	return f, nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// List reads a bundle without writing it anywhere, checks every file's
// hash and size against the manifest and the manifest's signature against
// its own Signer (not against a trusted key: use Verify for that), and
// returns the manifest.
func List(ctx context.Context, r io.Reader, lim Limits) (Manifest, error) {
	ex, err := Extract(ctx, r, "", lim)
	if err != nil {
		return Manifest{}, err
	}
	m, _, err := OpenManifest(ex.Manifest, ex.Sig, nil)
	if err != nil {
		return Manifest{}, err
	}
	return m, checkFiles(ex, m)
}
