package bundle

import (
	"archive/zip"
	"fmt"
	"runtime"
	"sync"

	"golang.org/x/mod/sumdb/dirhash"
)

// zipHasher computes the h1: hashes of zips on GOMAXPROCS workers while
// Extract goes on reading, so that Verify finds them done.
type zipHasher struct {
	maxSize int64
	jobs    chan [2]string // name, path
	wg      sync.WaitGroup
	once    sync.Once

	mu     sync.Mutex
	hashes map[string]zipHash
}

type zipHash struct {
	h1  string
	err error
}

func newZipHasher(maxSize int64) *zipHasher {
	z := &zipHasher{maxSize: maxSize, jobs: make(chan [2]string, 64), hashes: map[string]zipHash{}}
	for range runtime.GOMAXPROCS(0) {
		z.wg.Go(func() {
			for j := range z.jobs {
				h1, err := hashZip(j[1], z.maxSize)
				z.mu.Lock()
				z.hashes[j[0]] = zipHash{h1, err}
				z.mu.Unlock()
			}
		})
	}
	return z
}

func (z *zipHasher) add(name, path string) { z.jobs <- [2]string{name, path} }

// wait ends the workers once every zip added is hashed.
func (z *zipHasher) wait() {
	z.once.Do(func() { close(z.jobs) })
	z.wg.Wait()
}

// hash returns the h1: hash of the zip name, computing it if it was not.
func (z *zipHasher) hash(name, path string) (string, error) {
	if z != nil {
		z.mu.Lock()
		h, ok := z.hashes[name]
		z.mu.Unlock()
		if ok {
			return h.h1, h.err
		}
	}
	return hashZip(path, DefaultMaxFile)
}

// hashZip is dirhash.HashZip after a check that the files the zip
// declares add up to at most maxSize bytes: archive/zip never reads past
// a file's declared size, so a zip bomb inside a zip stops there.
func hashZip(path string, maxSize int64) (string, error) {
	r, err := zip.OpenReader(path)
	if err != nil {
		return "", err
	}
	var total uint64
	for _, f := range r.File {
		total += f.UncompressedSize64
		if total > uint64(maxSize) {
			r.Close()
			return "", fmt.Errorf("its files declare more than %d bytes uncompressed", maxSize)
		}
	}
	r.Close()
	return dirhash.HashZip(path, dirhash.Hash1)
}
