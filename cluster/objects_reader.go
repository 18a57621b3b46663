package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// readStreams is how many queries a reader runs at once, each streaming
// every readStreams-th chunk in order (chunk i comes from stream
// i%readStreams): the database reads and sends the chunks in parallel
// while the caller checks and writes the ones before. Each stream holds
// at most streamAhead chunks ready, so a reader's memory is about
// readStreams*(streamAhead+1)+1 chunks.
const (
	readStreams = 4
	streamAhead = 1
)

// The reader's queries: the object's record with a count of its chunks
// (and of those without a sum), and the chunks of one stream.
const (
	openObjectSQL = `SELECT o.id, o.size, o.sha256, o.mark, o.chunk_size, o.chunks, c.n, c.unchecked
		FROM modgate_objects o, LATERAL (SELECT count(*) AS n, count(*) FILTER (WHERE sha256 IS NULL) AS unchecked
			FROM modgate_object_chunks WHERE object_id = o.id) c
		WHERE o.key = $1`
	streamChunksSQL = `SELECT idx, data, sha256 FROM modgate_object_chunks
		WHERE object_id = $1 AND idx % $2 = $3 ORDER BY idx`
)

// Open returns a reader over the object stored under key, and what was
// recorded of it; found is false when none is. It checks that the object
// has the recorded number of chunks, each of the recorded length, and
// reports io.EOF only after the recorded number of bytes: any mismatch is
// an error wrapping ErrObjectCorrupt. When meta.ChunksChecked, it also
// checks each chunk against the SHA-256 recorded with it before it returns
// any of its bytes (the streams hash in parallel). It does not hash the
// whole object: the caller checks the bytes against meta.SHA256 (the gate
// does, before the last of them leave it). Close the reader to stop the
// fetches ahead.
func (o *Objects) Open(ctx context.Context, key string) (*ObjectReader, ObjectMeta, bool, error) {
	if err := checkObjectKey(key); err != nil {
		return nil, ObjectMeta{}, false, err
	}
	var (
		meta                ObjectMeta
		id, rows, unchecked int64
		sum                 []byte
		mark                int16
		chunkSize, chunks   int32
	)
	err := o.pool.QueryRow(ctx, openObjectSQL, key).Scan(&id, &meta.Size, &sum, &mark, &chunkSize, &chunks, &rows,
		&unchecked)
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
	meta.ChunksChecked = unchecked == 0
	r := &ObjectReader{key: key, meta: meta, chunkSize: int64(chunkSize), chunks: chunks}
	r.start(ctx, o.pool, id, meta.ChunksChecked)
	return r, meta, true, nil
}

// ObjectReader reads one stored object, checking it as it goes (see
// Objects.Open).
type ObjectReader struct {
	key       string
	meta      ObjectMeta
	chunkSize int64
	chunks    int32
	cancel    context.CancelFunc
	streams   []chan chunkResult // stream j sends chunks j, j+len(streams), ... in order
	wg        sync.WaitGroup     // the streams running
	free      chan []byte        // chunk buffers to reuse: fresh 1 MiB ones cost page faults and GC
	buf       []byte             // the buffer of the current chunk
	next      int32              // the next chunk to return
	cur       []byte             // what is left of the current chunk
	read      int64
	err       error
}

// chunkResult is one chunk fetched, or the error that ended a stream.
type chunkResult struct {
	idx  int32
	data []byte
	err  error
}

// start starts the streams of object id; checked says every chunk has its
// SHA-256.
func (r *ObjectReader) start(ctx context.Context, pool *pgxpool.Pool, id int64, checked bool) {
	ctx, r.cancel = context.WithCancel(ctx)
	k := max(1, min(readStreams, int(r.chunks)))
	r.free = make(chan []byte, k*(streamAhead+2)+1)
	for j := range k {
		ch := make(chan chunkResult, streamAhead)
		r.streams = append(r.streams, ch)
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer close(ch)
			stream(ctx, pool, id, k, j, checked, ch, r.free)
		}()
	}
}

// chunkRow copies the current row of rows (idx, data and sha256, in
// binary) into a chunkResult, into a buffer from free when there is one:
// the row's own bytes are valid only until the next row. When checked, the
// chunk must have a SHA-256 and match it.
func chunkRow(rows pgx.Rows, checked bool, free chan []byte) chunkResult {
	fd, vals := rows.FieldDescriptions(), rows.RawValues()
	if len(fd) != 3 || len(vals) != 3 || fd[0].Format != pgx.BinaryFormatCode || fd[1].Format != pgx.BinaryFormatCode ||
		fd[2].Format != pgx.BinaryFormatCode || len(vals[0]) != 4 || vals[1] == nil {
		return chunkResult{err: errors.New("unexpected row format")}
	}
	idx := int32(binary.BigEndian.Uint32(vals[0]))
	if checked {
		if sum := sha256.Sum256(vals[1]); len(vals[2]) != len(sum) || string(vals[2]) != string(sum[:]) {
			return chunkResult{err: fmt.Errorf("%w: chunk %d does not match its SHA-256", ErrObjectCorrupt, idx)}
		}
	}
	var buf []byte
	select {
	case buf = <-free:
	default:
	}
	return chunkResult{idx: idx, data: append(buf, vals[1]...)}
}

// stream runs one query for chunks j, j+k, j+2k, ... of object id, in
// order, and sends them to ch. It ends after the last row, on error
// (sent), or when ctx is done.
func stream(ctx context.Context, pool *pgxpool.Pool, id int64, k, j int, checked bool, ch chan<- chunkResult,
	free chan []byte) {
	send := func(c chunkResult) bool {
		select {
		case ch <- c:
			return true
		case <-ctx.Done():
			return false
		}
	}
	rows, err := pool.Query(ctx, streamChunksSQL, id, k, j)
	if err != nil {
		send(chunkResult{err: err})
		return
	}
	defer rows.Close()
	for rows.Next() {
		c := chunkRow(rows, checked, free)
		if !send(c) || c.err != nil {
			return
		}
	}
	if err := rows.Err(); err != nil {
		send(chunkResult{err: err})
	}
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

// loadChunk returns the next chunk, checked, or at the end checks the
// size and returns io.EOF.
func (r *ObjectReader) loadChunk() error {
	if r.next == r.chunks {
		for _, ch := range r.streams {
			if res, ok := <-ch; ok {
				if res.err != nil {
					return fmt.Errorf("cluster: reading object %s: %w", r.key, res.err)
				}
				return r.corrupt("more than the %d chunks recorded", r.chunks)
			}
		}
		if r.read != r.meta.Size {
			return r.corrupt("%d bytes, not the %d recorded", r.read, r.meta.Size)
		}
		return io.EOF
	}
	res, ok := <-r.streams[int(r.next)%len(r.streams)]
	switch want := min(r.chunkSize, r.meta.Size-r.read); {
	case ok && res.err != nil:
		return fmt.Errorf("cluster: reading object %s: %w", r.key, res.err)
	case !ok || res.idx != r.next:
		return r.corrupt("chunk %d of %d is missing", r.next, r.chunks)
	case int64(len(res.data)) != want:
		return r.corrupt("chunk %d has %d bytes, not %d", r.next, len(res.data), want)
	}
	r.read += int64(len(res.data))
	r.recycle()
	r.cur, r.buf = res.data, res.data
	r.next++
	return nil
}

func (r *ObjectReader) corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: object %s: %s", ErrObjectCorrupt, r.key, fmt.Sprintf(format, args...))
}

// recycle gives the buffer of the chunk read whole to the streams, to
// reuse.
func (r *ObjectReader) recycle() {
	if r.buf != nil {
		select {
		case r.free <- r.buf[:0]:
		default:
		}
	}
	r.buf, r.cur = nil, nil
}

// Close stops the streams and waits for them to end.
func (r *ObjectReader) Close() error {
	r.cancel()
	r.wg.Wait()
	return nil
}
