package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/modgate/modgate/cache"
)

// unreadableCache fails reads of one key, as a cache whose files went bad
// under it would, until the key is deleted.
type unreadableCache struct {
	Cache
	mu      sync.Mutex
	key     string
	broken  bool
	deleted int
}

var errIO = fmt.Errorf("%w: chunk 0: read cache/000001.vlog: %w", cache.ErrCorrupt, syscall.EIO)

func (c *unreadableCache) fails(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.broken && key == c.key
}

func (c *unreadableCache) Get(ctx context.Context, key string) (cache.Entry, error) {
	if c.fails(key) {
		return cache.Entry{}, errIO
	}
	return c.Cache.Get(ctx, key)
}

func (c *unreadableCache) OpenBlob(ctx context.Context, key string) (*cache.Blob, error) {
	if c.fails(key) {
		return nil, errIO
	}
	return c.Cache.OpenBlob(ctx, key)
}

func (c *unreadableCache) Delete(ctx context.Context, key string) error {
	c.mu.Lock()
	if key == c.key {
		c.broken = false
		c.deleted++
	}
	c.mu.Unlock()
	return c.Cache.Delete(ctx, key)
}

// TestGateUnreadableCachedObject checks that a cached object that cannot
// be read back (an I/O error, a checksum failure) is never served: it is
// dropped and fetched again online, and offline the answer is 504 with the
// reason.
func TestGateUnreadableCachedObject(t *testing.T) {
	for _, tt := range []struct{ name, ext, key string }{
		{"mod", ".mod", "mod/example.com/lib/@v/v1.1.0"},
		{"zip", ".zip", "zip/example.com/lib/@v/v1.1.0"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			uc := &unreadableCache{key: tt.key}
			wrap := func(c Cache) Cache { uc.Cache = c; return uc }
			tg := newTestGate(t, nil, gateOptions{Dir: dir, WrapCache: wrap})
			path := modPath(t, libV110, tt.ext)
			want := upstreamBytes(t, tg.fake, path)
			if r := get(t, tg.url, path); r.status != http.StatusOK {
				t.Fatalf("first: %d %s", r.status, r.body)
			}
			uc.broken = true
			r := get(t, tg.url, path)
			if r.status != http.StatusOK || !bytes.Equal(r.body, want) {
				t.Fatalf("online, unreadable: %d %q, want 200 with the upstream's bytes", r.status, r.body)
			}
			if n := tg.fake.Requests(path); n != 2 || uc.deleted != 1 {
				t.Errorf("online, unreadable: %d upstream requests and %d deletions, want 2 and 1", n, uc.deleted)
			}
			tg.close(t)

			uc = &unreadableCache{key: tt.key, broken: true}
			tg = newTestGate(t, tg.fake, gateOptions{Dir: dir, Offline: true, WrapCache: wrap})
			checkErrorBody(t, "offline, unreadable", get(t, tg.url, path), http.StatusGatewayTimeout,
				"unreadable", "input/output error", "offline")
			if uc.deleted != 1 {
				t.Errorf("offline, unreadable: %d deletions, want 1", uc.deleted)
			}
		})
	}
}

// TestErrorDiskFull checks the mapping of a full disk: 507 and a body
// that starts with "modgate: cache disk full: ", whatever wraps it.
func TestErrorDiskFull(t *testing.T) {
	df := &cache.DiskFullError{What: "storing zip/example.com/x/@v/v1.0.0 (48 MiB)", Reason: "only 64 MiB free"}
	for _, err := range []error{
		df,
		fmt.Errorf("storing zip/x: %w", fmt.Errorf("cache: put blob %q: %w", "zip/x", df)),
		spoolError("/data/spool/modgate-spool-1.zip", &writeErr{syscall.ENOSPC}),
	} {
		if got := statusOf(err); got != http.StatusInsufficientStorage {
			t.Errorf("statusOf(%v) = %d, want 507", err, got)
		}
		rec := &responseRecorder{header: http.Header{}}
		writeError(rec, err)
		if body := rec.body.String(); !strings.HasPrefix(body, "modgate: cache disk full: ") {
			t.Errorf("writeError(%v) body %q", err, body)
		}
	}
	if err := spoolError("/data/spool/x", errors.New("bad file descriptor")); errors.Is(err, cache.ErrDiskFull) {
		t.Errorf("spoolError of another write error: %v, want no disk full", err)
	}
}

type writeErr struct{ errno syscall.Errno }

func (e *writeErr) Error() string { return "write /data/spool/x: " + e.errno.Error() }
func (e *writeErr) Unwrap() error { return e.errno }
