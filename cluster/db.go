// Package cluster keeps the state that several gates share in one
// PostgreSQL database: the witness, policy, audit, verified objects and
// fetch leases (issue 12). A single gate with no database never loads it.
//
// The schema is versioned SQL embedded in the binary (migrations/), applied
// at Open under an advisory lock. Decision: embedded files and a table of
// applied versions rather than a migration library, because the runner is
// a few dozen lines, needs no driver adapter, records each applied version
// (so migrations written on parallel branches may interleave), and refuses
// a database that a newer gate migrated: a library would add a dependency
// and a "dirty" state to reason about for no gain here.
package cluster

import (
	"cmp"
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// ErrSchemaNewer means the database was migrated by a newer gate: this gate
// does not know its schema and refuses to start.
var ErrSchemaNewer = errors.New("the cluster database's schema is newer than this gate")

// lockMigrate is the advisory lock key held while migrating ("modgate\0").
const lockMigrate int64 = 0x6d6f6467617465

// DB is a connection pool to the cluster database, with its schema applied.
type DB struct {
	Pool   *pgxpool.Pool
	log    *zap.Logger
	health health // see Health and Monitor
}

// Config says how to reach the cluster database.
type Config struct {
	// URL is a postgres:// URL, with the usual sslmode options. Required.
	URL string
	// Password, when not empty, replaces the URL's password (a password
	// file given to the gate). PGPASSFILE works as well: pgx reads it.
	Password string
	// ConnectTimeout bounds each connection attempt when the URL has no
	// connect_timeout; zero means 5s, so a database that is down fails
	// requests quickly rather than hanging them.
	ConnectTimeout time.Duration
	Logger         *zap.Logger // nil means zap.NewNop()
}

// Open connects to the database at dbURL, applies the migrations this gate
// knows and that the database lacks, and returns the pool. The URL is a
// postgres:// URL; a password may also come from PGPASSFILE (pgx reads it).
func Open(ctx context.Context, dbURL string, log *zap.Logger) (*DB, error) {
	return Connect(ctx, Config{URL: dbURL, Logger: log})
}

// Connect is Open with a Config.
func Connect(ctx context.Context, c Config) (*DB, error) {
	log := c.Logger
	if log == nil {
		log = zap.NewNop()
	}
	cfg, err := pgxpool.ParseConfig(c.URL)
	if err != nil {
		// pgx's message may quote the URL, password included: never pass it on.
		return nil, fmt.Errorf("cluster database URL %s: not a valid postgres:// URL", Redact(c.URL))
	}
	if c.Password != "" {
		cfg.ConnConfig.Password = c.Password
	}
	// Objects (objects_reader.go) read a few chunks at once, next to
	// leases, witness and policy: more than pgx's default of 4 connections
	// unless the URL says (pool_max_conns).
	if !strings.Contains(c.URL, "pool_max_conns") {
		cfg.MaxConns = 16
	}
	// Decision: keep the connections of one object read (its streams and
	// the query that opens it) and the policy listener open, so that a
	// gate's first read from the second level does not wait for new
	// connections (bench scenario 12b), unless the URL says
	// (pool_min_conns).
	if !strings.Contains(c.URL, "pool_min_conns") {
		cfg.MinConns = min(readStreams+2, cfg.MaxConns)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = cmp.Or(c.ConnectTimeout, 5*time.Second)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("cluster database %s: %w", Redact(c.URL), err)
	}
	db := &DB{Pool: pool, log: log}
	if err := db.migrate(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("cluster database %s: %w", Redact(c.URL), err)
	}
	return db, nil
}

// Close closes the pool.
func (db *DB) Close() { db.Pool.Close() }

// Redact returns dbURL with any password replaced by "xxxxx", for logs and
// errors. A string that does not parse as a URL is replaced whole.
func Redact(dbURL string) string {
	u, err := url.Parse(dbURL)
	if err != nil || u.Scheme == "" {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns the embedded migrations in version order.
func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration file %s: name must be NNNN_what.sql", e.Name())
		}
		b, err := fs.ReadFile(migrationFiles, path.Join("migrations", e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: e.Name(), sql: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i := 1; i < len(out); i++ {
		if out[i].version == out[i-1].version {
			return nil, fmt.Errorf("migrations %s and %s share version %d", out[i-1].name, out[i].name, out[i].version)
		}
	}
	return out, nil
}

// migrate applies the missing migrations, each in its own transaction,
// while holding a session advisory lock so that gates starting together
// apply each one once.
func (db *DB) migrate(ctx context.Context) error {
	all, err := migrations()
	if err != nil {
		return err
	}
	conn, err := db.Pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", lockMigrate); err != nil {
		return fmt.Errorf("taking the migration lock: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", lockMigrate) //nolint:errcheck
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS modgate_schema (
		version    integer PRIMARY KEY,
		name       text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("creating modgate_schema: %w", err)
	}
	applied := map[int]bool{}
	rows, err := conn.Query(ctx, "SELECT version FROM modgate_schema")
	if err != nil {
		return err
	}
	vs, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		return err
	}
	known := map[int]bool{}
	for _, m := range all {
		known[m.version] = true
	}
	for _, v := range vs {
		applied[v] = true
		if !known[v] {
			return fmt.Errorf("%w: it has migration %d, which this gate does not know; upgrade this gate",
				ErrSchemaNewer, v)
		}
	}
	for _, m := range all {
		if applied[m.version] {
			continue
		}
		if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO modgate_schema (version, name) VALUES ($1, $2)", m.version, m.name)
			return err
		}); err != nil {
			return fmt.Errorf("applying migration %s: %w", m.name, err)
		}
		db.log.Info("cluster schema migrated", zap.String("migration", m.name))
	}
	return nil
}
