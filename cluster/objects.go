package cluster

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"
)

// Errors of the object level.
var (
	// ErrObjectMismatch means the bytes given to Put are not what the caller
	// declared (size or SHA-256): nothing is stored.
	ErrObjectMismatch = errors.New("cluster: object bytes do not match their declared size and SHA-256")
	// ErrObjectCorrupt means the chunks read back are not those of the
	// object as recorded: one is missing, out of order, of the wrong
	// length, or there are more than recorded.
	ErrObjectCorrupt = errors.New("cluster: stored object does not match its record")
)

// DefaultChunkSize is the size of an object's chunks when ObjectsConfig
// leaves it zero: large enough that a 500 MiB zip is 500 rows, small
// enough that a row never strains a connection's buffers.
const DefaultChunkSize = 1 << 20

// maxKeyLen bounds a key (the gate's keys are module paths and versions,
// far shorter); PostgreSQL text holds no NUL byte.
const maxKeyLen = 2048

// ObjectMeta is what the object level records of an object when it is
// stored: its size, its SHA-256 (of the bytes as verified) and the trust
// mark the gate stored it with.
type ObjectMeta struct {
	Size   int64
	SHA256 [sha256.Size]byte
	Mark   byte
	// ChunksChecked, set by Open, says that every chunk has the SHA-256 of
	// its own bytes recorded, and that the reader checks each against it
	// before it returns any of the chunk's bytes. Objects stored before
	// migration 0052 have none: their bytes are checked only as a whole,
	// by the caller. Put ignores it: it always records them.
	ChunksChecked bool
}

// ObjectsConfig configures Objects. The zero value of each field means its
// default.
type ObjectsConfig struct {
	// ChunkSize is the largest chunk in bytes; 0 means DefaultChunkSize.
	ChunkSize int
	// Gate names this gate in the stored_by column; "" means "unnamed".
	Gate   string
	Logger *zap.Logger // nil means zap.NewNop()
}

// Objects is the cluster's second level of verified objects, in
// PostgreSQL: each object is a row and its bytes are chunks of bounded
// size, all written in one transaction, so that another gate sees an
// object whole or not at all. It stores what the gate gives it: the gate
// puts only verified objects, and checks every byte it reads back against
// the recorded SHA-256 before it stores or serves it.
type Objects struct {
	pool      *pgxpool.Pool
	chunkSize int
	gate      string
	log       *zap.Logger
}

// NewObjects returns the object level of db.
func NewObjects(db *DB, cfg ObjectsConfig) *Objects {
	if cfg.ChunkSize <= 0 {
		cfg.ChunkSize = DefaultChunkSize
	}
	if cfg.Gate == "" {
		cfg.Gate = "unnamed"
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	return &Objects{pool: db.Pool, chunkSize: cfg.ChunkSize, gate: cfg.Gate, log: cfg.Logger}
}

func checkObjectKey(key string) error {
	if key == "" || len(key) > maxKeyLen || !utf8.ValidString(key) || strings.ContainsRune(key, 0) {
		return fmt.Errorf("cluster: object key %q: want 1 to %d bytes of UTF-8 without NUL", key, maxKeyLen)
	}
	return nil
}

// Put stores exactly meta.Size bytes read from r under key, replacing any
// object stored there before. It hashes what it reads and commits only if
// r ends after meta.Size bytes that hash to meta.SHA256; otherwise it
// returns an error wrapping ErrObjectMismatch, and nothing changes. If
// another gate stores the same key at the same moment, the first commit
// wins and Put returns nil: both had verified the object.
func (o *Objects) Put(ctx context.Context, key string, r io.Reader, meta ObjectMeta) error {
	if err := checkObjectKey(key); err != nil {
		return err
	}
	if meta.Size < 0 {
		return fmt.Errorf("cluster: put object %s: negative size %d", key, meta.Size)
	}
	chunks := (meta.Size + int64(o.chunkSize) - 1) / int64(o.chunkSize)
	err := pgx.BeginFunc(ctx, o.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "DELETE FROM modgate_objects WHERE key = $1", key); err != nil {
			return err
		}
		var id int64
		if err := tx.QueryRow(ctx, `INSERT INTO modgate_objects (key, size, sha256, mark, chunk_size, chunks, stored_by)
			VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id`,
			key, meta.Size, meta.SHA256[:], int16(meta.Mark), o.chunkSize, chunks, o.gate).Scan(&id); err != nil {
			return err
		}
		src := &chunkSource{id: id, r: r, left: meta.Size, buf: make([]byte, o.chunkSize), hash: sha256.New()}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"modgate_object_chunks"},
			[]string{"object_id", "idx", "data", "sha256"}, src); err != nil {
			if src.err != nil {
				return src.err
			}
			return err
		}
		return src.finish(meta)
	})
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == "modgate_objects_pkey" {
		o.log.Debug("object stored by another gate at the same moment", zap.String("key", key))
		return nil
	}
	if err != nil {
		return fmt.Errorf("cluster: put object %s: %w", key, err)
	}
	return nil
}

// chunkSource feeds CopyFrom the chunks of one object, read from r.
type chunkSource struct {
	id   int64
	r    io.Reader
	left int64 // bytes still to read
	idx  int32
	buf  []byte
	sum  [sha256.Size]byte // of the current chunk
	row  []any
	hash interface {
		io.Writer
		Sum([]byte) []byte
	}
	err error // a read error or a mismatch, which ends the copy
}

func (s *chunkSource) Next() bool {
	if s.left == 0 || s.err != nil {
		return false
	}
	n := int(min(int64(len(s.buf)), s.left))
	if _, err := io.ReadFull(s.r, s.buf[:n]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			s.err = fmt.Errorf("%w: the reader ended %d bytes early", ErrObjectMismatch, s.left)
		} else {
			s.err = fmt.Errorf("reading the object: %w", err)
		}
		return false
	}
	data := s.buf[:n]
	s.hash.Write(data)
	s.sum = sha256.Sum256(data)
	// CopyFrom encodes the row before it asks for the next one, so the
	// buffers are reused.
	s.row = []any{s.id, s.idx, data, s.sum[:]}
	s.idx++
	s.left -= int64(n)
	return true
}

func (s *chunkSource) Values() ([]any, error) { return s.row, nil }

func (s *chunkSource) Err() error { return s.err }

// finish checks that the reader ended where it should and that the bytes
// hash to what the caller declared.
func (s *chunkSource) finish(meta ObjectMeta) error {
	if s.err != nil {
		return s.err
	}
	var one [1]byte
	if n, _ := io.ReadFull(s.r, one[:]); n > 0 {
		return fmt.Errorf("%w: the reader has more than %d bytes", ErrObjectMismatch, meta.Size)
	}
	if got := s.hash.Sum(nil); string(got) != string(meta.SHA256[:]) {
		return fmt.Errorf("%w: the bytes hash to %x, not %x", ErrObjectMismatch, got, meta.SHA256)
	}
	return nil
}

// Delete removes the object stored under key, if any.
func (o *Objects) Delete(ctx context.Context, key string) error {
	if err := checkObjectKey(key); err != nil {
		return err
	}
	if _, err := o.pool.Exec(ctx, "DELETE FROM modgate_objects WHERE key = $1", key); err != nil {
		return fmt.Errorf("cluster: delete object %s: %w", key, err)
	}
	return nil
}
