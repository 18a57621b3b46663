package cache

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strings"
	"time"
)

// Prefixes of the internal Badger keys; see the package documentation.
const (
	prefixValue = "v/"
	prefixBlob  = "b/"
	prefixChunk = "c/"
)

const (
	valueFormat    = 1 // format byte of a small value record
	valueHeaderLen = 1 + 8
	manifestFormat = 1 // format byte of a blob manifest
	chunkKeyLen    = len(prefixChunk) + 8 + 4
	genPrefixLen   = len(prefixChunk) + 8
)

// checkKey rejects keys that the store cannot hold.
func checkKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty key", ErrInvalidKey)
	case len(key) > MaxKeyLen:
		return fmt.Errorf("%w: key of %d bytes is longer than %d", ErrInvalidKey, len(key), MaxKeyLen)
	case strings.IndexByte(key, 0) >= 0:
		return fmt.Errorf("%w: key %q contains a NUL byte", ErrInvalidKey, key)
	}
	return nil
}

// kindOf returns the part of key before its first '/' (the whole key if it
// has none).
func kindOf(key []byte) []byte {
	for i, c := range key {
		if c == '/' {
			return key[:i]
		}
	}
	return key
}

func valueKey(key string) []byte { return append([]byte(prefixValue), key...) }
func blobKey(key string) []byte  { return append([]byte(prefixBlob), key...) }

// genPrefix returns the common prefix of the chunk keys of generation gen.
func genPrefix(gen uint64) []byte {
	k := make([]byte, genPrefixLen, chunkKeyLen)
	copy(k, prefixChunk)
	binary.BigEndian.PutUint64(k[len(prefixChunk):], gen)
	return k
}

// chunkKey returns the key of chunk index of generation gen.
func chunkKey(gen uint64, index uint32) []byte {
	return binary.BigEndian.AppendUint32(genPrefix(gen), index)
}

// parseChunkKey returns the generation of a chunk key.
func parseChunkKey(k []byte) (gen uint64, ok bool) {
	if len(k) != chunkKeyLen || string(k[:len(prefixChunk)]) != prefixChunk {
		return 0, false
	}
	return binary.BigEndian.Uint64(k[len(prefixChunk):]), true
}

// encodeValue returns the stored record of a small value.
func encodeValue(value []byte, stored time.Time) []byte {
	rec := make([]byte, valueHeaderLen, valueHeaderLen+len(value))
	rec[0] = valueFormat
	binary.BigEndian.PutUint64(rec[1:], uint64(stored.UnixNano()))
	return append(rec, value...)
}

// decodeValue splits a small value record into its stored time and value.
// The value aliases rec.
func decodeValue(rec []byte) ([]byte, time.Time, error) {
	if len(rec) < valueHeaderLen || rec[0] != valueFormat {
		return nil, time.Time{}, fmt.Errorf("%w: bad value record", ErrCorrupt)
	}
	stored := time.Unix(0, int64(binary.BigEndian.Uint64(rec[1:]))).UTC()
	return rec[valueHeaderLen:], stored, nil
}

// manifest describes a complete blob.
type manifest struct {
	size      int64
	chunkSize int64
	chunks    uint32
	gen       uint64
	stored    time.Time
	sum       [sha256.Size]byte
	mark      byte // the caller's mark: Badger's user metadata, not encoded
}

// encode returns the stored form of m: a format byte, size, chunk size and
// chunk count as uvarints, then generation and stored time (8 bytes each)
// and the SHA-256.
func (m manifest) encode() []byte {
	b := make([]byte, 0, 1+3*binary.MaxVarintLen64+16+sha256.Size)
	b = append(b, manifestFormat)
	b = binary.AppendUvarint(b, uint64(m.size))
	b = binary.AppendUvarint(b, uint64(m.chunkSize))
	b = binary.AppendUvarint(b, uint64(m.chunks))
	b = binary.BigEndian.AppendUint64(b, m.gen)
	b = binary.BigEndian.AppendUint64(b, uint64(m.stored.UnixNano()))
	return append(b, m.sum[:]...)
}

// decodeManifest parses and checks a stored manifest.
func decodeManifest(b []byte) (manifest, error) {
	var m manifest
	bad := func(what string) (manifest, error) {
		return manifest{}, fmt.Errorf("%w: blob manifest: %s", ErrCorrupt, what)
	}
	if len(b) == 0 || b[0] != manifestFormat {
		return bad("unknown format")
	}
	b = b[1:]
	var fields [3]uint64
	for i := range fields {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return bad("truncated")
		}
		fields[i], b = v, b[n:]
	}
	if len(b) != 16+sha256.Size {
		return bad("truncated")
	}
	m.size, m.chunkSize, m.chunks = int64(fields[0]), int64(fields[1]), uint32(fields[2])
	m.gen = binary.BigEndian.Uint64(b)
	m.stored = time.Unix(0, int64(binary.BigEndian.Uint64(b[8:]))).UTC()
	copy(m.sum[:], b[16:])
	if m.size < 0 || m.chunkSize <= 0 || fields[2] != uint64(chunkCount(m.size, m.chunkSize)) {
		return bad("size, chunk size and chunk count disagree")
	}
	return m, nil
}

// chunkCount is the number of chunks of a blob of size bytes.
func chunkCount(size, chunkSize int64) int64 {
	return (size + chunkSize - 1) / chunkSize
}

// chunkLen is the length of chunk index of m.
func (m manifest) chunkLen(index int64) int64 {
	return min(m.chunkSize, m.size-index*m.chunkSize)
}
