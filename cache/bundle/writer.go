package bundle

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/mod/sumdb/note"
)

// entryTime is the modification time of every entry: bundles of the same
// content are the same bytes.
var entryTime = time.Unix(0, 0).UTC()

// Compression says whether a Writer compresses the tar.
type Compression int

// The compressions a Writer supports.
const (
	Tar    Compression = iota // a plain tar
	TarZst                    // a tar compressed with zstd (.tar.zst)
)

// Writer writes a bundle as a stream: the files of the tree in strictly
// increasing name order (so the bytes depend on the content only), then
// the manifest and its signature. Nothing is buffered beyond the
// compressor's window.
type Writer struct {
	out   io.Writer
	zw    *zstd.Encoder
	tw    *tar.Writer
	last  string
	files []File
	done  bool
}

// NewWriter returns a Writer onto w.
func NewWriter(w io.Writer, c Compression) (*Writer, error) {
	bw := &Writer{out: w}
	if c == TarZst {
		// One goroutine: the output then does not depend on scheduling.
		zw, err := zstd.NewWriter(w, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedDefault))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		bw.zw, w = zw, zw
	}
	bw.tw = tar.NewWriter(w)
	return bw, nil
}

// Add writes the file name with exactly size bytes read from r. Names must
// be valid (see Extract) and strictly increase from one call to the next.
func (w *Writer) Add(name string, size int64, r io.Reader) error {
	if w.done {
		return errors.New("bundle: Add after Finish")
	}
	if err := checkName(name); err != nil {
		return err
	}
	if name == ManifestName || name == SigName {
		return fmt.Errorf("bundle: %s is written by Finish", name)
	}
	if name <= w.last {
		return fmt.Errorf("bundle: entry %s after %s: names must strictly increase", name, w.last)
	}
	h := sha256.New()
	if err := w.write(name, size, io.TeeReader(r, h)); err != nil {
		return err
	}
	w.last = name
	w.files = append(w.files, File{Name: name, Size: size, SHA256: hex.EncodeToString(h.Sum(nil))})
	return nil
}

// write writes one tar entry of a regular file.
func (w *Writer) write(name string, size int64, r io.Reader) error {
	hdr := &tar.Header{
		Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644,
		ModTime: entryTime, Format: tar.FormatPAX,
	}
	if err := w.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("bundle: writing %s: %w", name, err)
	}
	n, err := io.CopyN(w.tw, r, size)
	if err != nil {
		return fmt.Errorf("bundle: writing %s: %d of %d bytes: %w", name, n, size, err)
	}
	return nil
}

// Finish completes m with the files written (and the format), writes it
// and its signature by signer, and ends the stream. It does not close the
// underlying writer. It returns the manifest as written.
func (w *Writer) Finish(m Manifest, signer note.Signer) (Manifest, error) {
	if w.done {
		return Manifest{}, errors.New("bundle: Finish called twice")
	}
	w.done = true
	m.Format, m.Files = Format, w.files
	if m.Files == nil {
		m.Files = []File{}
	}
	b, err := MarshalManifest(m)
	if err != nil {
		return Manifest{}, err
	}
	sig, err := SignManifest(b, signer)
	if err != nil {
		return Manifest{}, err
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{ManifestName, b}, {SigName, sig}} {
		if err := w.write(f.name, int64(len(f.data)), bytesReader(f.data)); err != nil {
			return Manifest{}, err
		}
	}
	if err := w.tw.Close(); err != nil {
		return Manifest{}, fmt.Errorf("bundle: ending the tar: %w", err)
	}
	if w.zw != nil {
		if err := w.zw.Close(); err != nil {
			return Manifest{}, fmt.Errorf("bundle: ending the zstd stream: %w", err)
		}
	}
	return m, nil
}
