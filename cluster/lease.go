package cluster

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"
)

// DefaultLeaseTTL is how long a fetch lease lasts unless renewed, when
// LeasesConfig leaves it zero: a gate that dies while it fetches delays
// the others by at most this long.
const DefaultLeaseTTL = 30 * time.Second

// minLeaseTTL keeps renewals (every third of the TTL) from flooding the
// database.
const minLeaseTTL = 300 * time.Millisecond

// LeasesConfig configures Leases. The zero value of each field means its
// default.
type LeasesConfig struct {
	// TTL is how long a lease lasts unless its holder renews it; 0 means
	// DefaultLeaseTTL. The holder renews it every TTL/3 while it fetches.
	TTL time.Duration
	// Holder names this gate in the lease rows, for logs; "" means "unnamed".
	Holder string
	Logger *zap.Logger // nil means zap.NewNop()
}

// Leases hands out the cluster-wide leases that make one gate fetch an
// object from the upstream while the others wait for it (issue 12). A
// lease is a row with an expiry in the database's clock; its holder
// renews it until it releases it, so a gate that dies holding one blocks
// the others until the expiry and no longer.
type Leases struct {
	pool   *pgxpool.Pool
	ttl    time.Duration
	holder string
	log    *zap.Logger
}

// NewLeases returns the fetch leases of db. A TTL under 300ms is raised
// to 300ms.
func NewLeases(db *DB, cfg LeasesConfig) *Leases {
	if cfg.TTL == 0 {
		cfg.TTL = DefaultLeaseTTL
	}
	cfg.TTL = max(cfg.TTL, minLeaseTTL)
	if cfg.Holder == "" {
		cfg.Holder = "unnamed"
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	return &Leases{pool: db.Pool, ttl: cfg.TTL, holder: cfg.Holder, log: cfg.Logger}
}

// TTL returns the lease period.
func (l *Leases) TTL() time.Duration { return l.ttl }

// TryAcquire takes the lease on key if no other taking of it is in force
// (none, or an expired one). On success it returns the function that
// releases it, which the caller must call once, when the object is stored
// or the fetch has failed; until then the lease is renewed every TTL/3.
// When another gate holds the lease, release is nil and holder names that
// gate. It does not wait.
func (l *Leases) TryAcquire(ctx context.Context, key string) (release func(), holder string, err error) {
	if err := checkObjectKey(key); err != nil {
		return nil, "", err
	}
	token := rand.Text()
	var got string
	err = l.pool.QueryRow(ctx, `INSERT INTO modgate_fetch_leases AS l (key, token, holder, expires_at)
		VALUES ($1, $2, $3, now() + make_interval(secs => $4))
		ON CONFLICT (key) DO UPDATE SET token = excluded.token, holder = excluded.holder, expires_at = excluded.expires_at
		WHERE l.expires_at < now()
		RETURNING token`, key, token, l.holder, l.ttl.Seconds()).Scan(&got)
	if errors.Is(err, pgx.ErrNoRows) {
		// Held by another: say by whom (it may be gone by now).
		err = l.pool.QueryRow(ctx, "SELECT holder FROM modgate_fetch_leases WHERE key = $1", key).Scan(&holder)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, "", nil // released a moment ago: the caller tries again
		}
		if err != nil {
			return nil, "", fmt.Errorf("cluster: fetch lease %s: %w", key, err)
		}
		return nil, holder, nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("cluster: fetch lease %s: %w", key, err)
	}
	return l.keep(key, token), l.holder, nil
}

// keep renews the lease (key, token) until the returned function is
// called, which stops renewing and deletes the lease.
func (l *Leases) keep(key, token string) func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(l.ttl / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			tag, err := l.pool.Exec(ctx, `UPDATE modgate_fetch_leases SET expires_at = now() + make_interval(secs => $3)
				WHERE key = $1 AND token = $2`, key, token, l.ttl.Seconds())
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				l.log.Warn("renewing a fetch lease", zap.String("key", key), zap.Error(err))
			case tag.RowsAffected() == 0:
				// Expired and taken by another gate (this one stalled longer
				// than the TTL): that gate fetches too; nothing breaks.
				l.log.Warn("fetch lease lost to another gate", zap.String("key", key))
				return
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			<-done
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if _, err := l.pool.Exec(ctx, "DELETE FROM modgate_fetch_leases WHERE key = $1 AND token = $2",
				key, token); err != nil {
				// It expires by itself.
				l.log.Warn("releasing a fetch lease", zap.String("key", key), zap.Error(err))
			}
		})
	}
}
