package proxy

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"go.uber.org/zap"
)

// storeGrace is how long the store of a zip read from the second level
// waits for a first answer to open its spool. Decision: that store waits
// until no answer reads the spool, because on two cores Badger's write of
// a large value competed with the answer it was meant to spare (half the
// gate's CPU in the profile of bench 12b); the answer needs only the
// spool.
const storeGrace = 100 * time.Millisecond

// streamShared copies the zip under key from the second level's reader sr
// to a spool file that the requests for it read as it grows (a zipStream,
// as for a fetch from the upstream). sr fails unless the bytes match the
// recorded size and SHA-256. When meta.ChunksChecked, the second level
// checked each chunk against its own SHA-256 before sr returned it, so all
// but the last holdBack bytes go out as they arrive; otherwise none goes
// out before the whole zip matches. Either way the answers complete only
// once the whole zip matches its SHA-256, and are cut short if it does
// not. Then the zip is stored in the Cache, once no answer reads the
// spool. On error nothing is kept; a failed store is logged, since the
// answers have completed.
func (g *Gate) streamShared(ctx context.Context, key string, sr io.Reader, meta SharedMeta) error {
	if meta.Size > maxZipSize {
		return fmt.Errorf("%w: %d bytes, over the zip limit", ErrSharedCorrupt, meta.Size)
	}
	s := newZipStream(ctx, nil)
	s.shared, s.mark = true, meta.Mark
	if !meta.ChunksChecked {
		s.hold = meta.Size
	}
	g.streams.add(key, s)
	defer g.streams.remove(key, s)
	f, err := os.CreateTemp(g.cfg.SpoolDir, "modgate-spool-shared-*.zip")
	if err != nil {
		err = fmt.Errorf("spooling: %w", err)
		s.fail(err)
		return err
	}
	defer s.close(func() {
		f.Close()
		os.Remove(f.Name())
	})
	if err := reserve(f, meta.Size); err != nil {
		err = spoolError(f.Name(), err)
		s.fail(err)
		return err
	}
	s.started(f.Name(), meta.Size)
	// Chunk-sized writes: a default 32 KiB copy makes thousands of
	// syscalls for a large zip.
	sw := &spoolWriter{f: f, watch: s}
	if _, err := io.CopyBuffer(sw, sr, make([]byte, 1<<20)); err != nil {
		if sw.err != nil {
			err = spoolError(f.Name(), sw.err)
		}
		s.fail(err)
		return err
	}
	s.verify()
	wctx, wcancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout) // answers never hold the store longer
	s.awaitReaders(wctx, storeGrace)
	wcancel()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
	defer cancel()
	_, err = f.Seek(0, io.SeekStart)
	if err == nil {
		err = g.cfg.Cache.PutBlobMarked(sctx, key, f, meta.Size, meta.Mark)
	}
	if err != nil {
		g.log.Warn("a zip from the second level could not be stored in the cache", zap.String("key", key),
			zap.Error(err))
	}
	return nil
}
