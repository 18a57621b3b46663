package cluster

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// WitnessChannel is the LISTEN channel on which every change of the
// witness's own state (its keys under "witness/") is announced, with the
// key as the payload; see Watch.
const WitnessChannel = "modgate_witness"

// WitnessStore keeps the witness's state in the table modgate_witness, one
// row per key, so that every gate of the cluster witnesses one timeline.
// It implements the witness's Store contract (signer.Store): Load returns
// nil for an absent key, Swap is one conditional SQL statement (a real
// compare-and-swap: of two gates swapping from one value, one wins), Scan
// runs in bytewise key order, Delete of an absent key is no error.
type WitnessStore struct{ DB *DB }

// Load returns the value stored under key, or nil and no error if none is.
func (s WitnessStore) Load(ctx context.Context, key string) ([]byte, error) {
	if err := s.DB.check(); err != nil {
		return nil, err
	}
	var v []byte
	err := s.DB.Pool.QueryRow(ctx, "SELECT value FROM modgate_witness WHERE key = $1", key).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cluster database: loading %s: %w", key, s.DB.classify(err))
	}
	return nonNil(v), nil
}

// Store stores value under key.
func (s WitnessStore) Store(ctx context.Context, key string, value []byte) error {
	if err := s.DB.check(); err != nil {
		return err
	}
	_, err := s.DB.Pool.Exec(ctx, `INSERT INTO modgate_witness (key, value) VALUES ($1, $2)
		ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()`, key, nonNil(value))
	if err != nil {
		return fmt.Errorf("cluster database: storing %s: %w", key, s.DB.classify(err))
	}
	return nil
}

// Swap stores new under key if the current value equals old (nil: the key
// is absent) and reports whether it did.
func (s WitnessStore) Swap(ctx context.Context, key string, old, new []byte) (bool, error) {
	if err := s.DB.check(); err != nil {
		return false, err
	}
	var (
		tag pgconn.CommandTag
		err error
	)
	if old == nil {
		tag, err = s.DB.Pool.Exec(ctx, `INSERT INTO modgate_witness (key, value) VALUES ($1, $2)
			ON CONFLICT (key) DO NOTHING`, key, nonNil(new))
	} else {
		tag, err = s.DB.Pool.Exec(ctx, `UPDATE modgate_witness SET value = $3, updated_at = now()
			WHERE key = $1 AND value = $2`, key, old, nonNil(new))
	}
	if err != nil {
		return false, fmt.Errorf("cluster database: swapping %s: %w", key, s.DB.classify(err))
	}
	return tag.RowsAffected() == 1, nil
}

// Scan calls fn for each key with the prefix, in bytewise key order. The
// rows are read first, so fn may use the store.
func (s WitnessStore) Scan(ctx context.Context, prefix string, fn func(key string, value []byte) error) error {
	if err := s.DB.check(); err != nil {
		return err
	}
	rows, err := s.DB.Pool.Query(ctx, `SELECT key, value FROM modgate_witness
		WHERE key >= $1 AND starts_with(key, $1) ORDER BY key`, prefix)
	if err != nil {
		return fmt.Errorf("cluster database: scanning %s: %w", prefix, s.DB.classify(err))
	}
	type kv struct {
		key   string
		value []byte
	}
	all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (kv, error) {
		var e kv
		err := r.Scan(&e.key, &e.value)
		return e, err
	})
	if err != nil {
		return fmt.Errorf("cluster database: scanning %s: %w", prefix, s.DB.classify(err))
	}
	for _, e := range all {
		if err := fn(e.key, nonNil(e.value)); err != nil {
			return err
		}
	}
	return nil
}

// Delete removes the value stored under key; an absent key is no error.
func (s WitnessStore) Delete(ctx context.Context, key string) error {
	if err := s.DB.check(); err != nil {
		return err
	}
	if _, err := s.DB.Pool.Exec(ctx, "DELETE FROM modgate_witness WHERE key = $1", key); err != nil {
		return fmt.Errorf("cluster database: deleting %s: %w", key, s.DB.classify(err))
	}
	return nil
}

// nonNil returns b, or an empty slice for nil: a stored empty value is
// present, and Load tells it from an absent one.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
