package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5"
)

// readAhead is how many chunks a reader fetches ahead of the one it
// returns, each with its own query: the database reads and sends the next
// chunks while the caller checks and writes this one. Its memory is
// readAhead chunks.
const readAhead = 4

// Open returns a reader over the object stored under key, and what was
// recorded of it; found is false when none is. It checks that the object
// has the recorded number of chunks, each of the recorded length, and
// reports io.EOF only after the recorded number of bytes: any mismatch is
// an error wrapping ErrObjectCorrupt. It does not hash what it reads: the
// caller checks the bytes against meta.SHA256 (the gate does, before it
// stores or serves them), so that they are hashed once. Close the reader
// to stop the fetches ahead.
func (o *Objects) Open(ctx context.Context, key string) (*ObjectReader, ObjectMeta, bool, error) {
	if err := checkObjectKey(key); err != nil {
		return nil, ObjectMeta{}, false, err
	}
	var (
		meta              ObjectMeta
		id, rows          int64
		sum               []byte
		mark              int16
		chunkSize, chunks int32
	)
	err := o.pool.QueryRow(ctx, `SELECT id, size, sha256, mark, chunk_size, chunks,
		(SELECT count(*) FROM modgate_object_chunks c WHERE c.object_id = o.id)
		FROM modgate_objects o WHERE key = $1`, key).Scan(&id, &meta.Size, &sum, &mark, &chunkSize, &chunks, &rows)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ObjectMeta{}, false, nil
	}
	if err != nil {
		return nil, ObjectMeta{}, false, fmt.Errorf("cluster: open object %s: %w", key, err)
	}
	if rows != int64(chunks) {
		return nil, ObjectMeta{}, false, fmt.Errorf("%w: object %s has %d chunks, not the %d recorded",
			ErrObjectCorrupt, key, rows, chunks)
	}
	copy(meta.SHA256[:], sum)
	meta.Mark = byte(mark)
	r := &ObjectReader{o: o, key: key, id: id, meta: meta, chunkSize: int64(chunkSize), chunks: chunks}
	r.ctx, r.cancel = context.WithCancel(ctx)
	return r, meta, true, nil
}

// ObjectReader reads one stored object, checking it as it goes (see
// Objects.Open).
type ObjectReader struct {
	o         *Objects
	key       string
	id        int64
	meta      ObjectMeta
	chunkSize int64
	chunks    int32
	ctx       context.Context
	cancel    context.CancelFunc
	ahead     []chan chunkResult // the fetches of chunks next, next+1, ...
	launched  int32              // the next chunk to fetch
	next      int32              // the next chunk to return
	cur       []byte             // what is left of the current chunk
	read      int64
	err       error
}

// chunkResult is one chunk fetched.
type chunkResult struct {
	data []byte
	err  error
}

// Read implements io.Reader.
func (r *ObjectReader) Read(p []byte) (int, error) {
	for len(r.cur) == 0 && r.err == nil {
		r.err = r.loadChunk()
	}
	if len(r.cur) == 0 {
		return 0, r.err
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// fetchAhead starts the fetches of the next chunks, up to readAhead.
func (r *ObjectReader) fetchAhead() {
	for r.launched < r.chunks && len(r.ahead) < readAhead {
		ch, idx := make(chan chunkResult, 1), r.launched
		go func() {
			var data []byte
			err := r.o.pool.QueryRow(r.ctx, "SELECT data FROM modgate_object_chunks WHERE object_id = $1 AND idx = $2",
				r.id, idx).Scan(&data)
			ch <- chunkResult{data, err}
		}()
		r.ahead = append(r.ahead, ch)
		r.launched++
	}
}

// loadChunk returns the next chunk, checked, or at the end checks the
// size and returns io.EOF.
func (r *ObjectReader) loadChunk() error {
	if r.next == r.chunks {
		if r.read != r.meta.Size {
			return r.corrupt("%d bytes, not the %d recorded", r.read, r.meta.Size)
		}
		return io.EOF
	}
	r.fetchAhead()
	res := <-r.ahead[0]
	r.ahead = r.ahead[1:]
	switch want := min(r.chunkSize, r.meta.Size-r.read); {
	case errors.Is(res.err, pgx.ErrNoRows):
		return r.corrupt("chunk %d of %d is missing", r.next, r.chunks)
	case res.err != nil:
		return fmt.Errorf("cluster: reading object %s: %w", r.key, res.err)
	case int64(len(res.data)) != want:
		return r.corrupt("chunk %d has %d bytes, not %d", r.next, len(res.data), want)
	}
	r.read += int64(len(res.data))
	r.cur = res.data
	r.next++
	r.fetchAhead()
	return nil
}

func (r *ObjectReader) corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: object %s: %s", ErrObjectCorrupt, r.key, fmt.Sprintf(format, args...))
}

// Close stops the fetches ahead and waits for them.
func (r *ObjectReader) Close() error {
	r.cancel()
	for _, ch := range r.ahead {
		<-ch
	}
	r.ahead = nil
	return nil
}
