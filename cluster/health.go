package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"
)

// ErrUnavailable means the cluster database cannot be reached. What needs
// it (new checksum-database verification, which needs the shared witness;
// policy and audit writes) fails closed with 503 until it is back; what a
// gate's first level holds is still served.
var ErrUnavailable = errors.New("the cluster database is unreachable")

// UnavailableError is ErrUnavailable with its cause. Its HTTPStatus is 503.
type UnavailableError struct{ Err error }

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("%v (%v): new checksum verification needs the shared witness, "+
		"so it fails until the database is back; cached modules are still served", ErrUnavailable, e.Err)
}

// Unwrap returns ErrUnavailable and the cause.
func (e *UnavailableError) Unwrap() []error { return []error{ErrUnavailable, e.Err} }

// HTTPStatus is 503 Service Unavailable.
func (e *UnavailableError) HTTPStatus() int { return http.StatusServiceUnavailable }

// health is what a DB knows of its database's reachability.
type health struct {
	down    atomic.Bool
	outages atomic.Int64
	mu      sync.Mutex
	reason  error
}

// Health reports whether the database is reachable, and why not.
func (db *DB) Health() (up bool, reason error) {
	if !db.health.down.Load() {
		return true, nil
	}
	db.health.mu.Lock()
	defer db.health.mu.Unlock()
	return false, db.health.reason
}

// Outages counts the times the database became unreachable.
func (db *DB) Outages() int64 { return db.health.outages.Load() }

// markDown records that the database is unreachable, because of err.
func (db *DB) markDown(err error) {
	db.health.mu.Lock()
	db.health.reason = err
	db.health.mu.Unlock()
	if db.health.down.CompareAndSwap(false, true) {
		db.health.outages.Add(1)
		db.log.Error("cluster database unreachable: serving the first level only; new verification fails with 503",
			zap.Error(err))
	}
}

// markUp records that the database answers again.
func (db *DB) markUp() {
	if db.health.down.CompareAndSwap(true, false) {
		db.log.Info("cluster database reachable again")
	}
}

// check fails fast with an UnavailableError while the database is known
// to be unreachable, instead of waiting for a connection timeout.
func (db *DB) check() error {
	if up, why := db.Health(); !up {
		return &UnavailableError{Err: why}
	}
	return nil
}

// classify turns an error of a database call into an UnavailableError
// when the database could not be reached (no answer from the server, as
// opposed to an SQL error it returned), and marks it down.
func (db *DB) classify(err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err // the caller gave up; the monitor judges the database
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && !strings.HasPrefix(pgErr.Code, "57") && !strings.HasPrefix(pgErr.Code, "08") {
		return err // the server answered: an SQL error, not an outage
	}
	db.markDown(err)
	return &UnavailableError{Err: err}
}

// Monitor pings the database every interval until ctx ends, marking it
// down when it does not answer within the interval and up when it does
// again: the pool reconnects by itself, and Health tells /readyz.
func (db *DB) Monitor(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, every)
		err := db.Pool.Ping(pctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			db.markDown(err)
		default:
			db.markUp()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
