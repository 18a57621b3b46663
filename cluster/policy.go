package cluster

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// PolicyChannel is the LISTEN channel on which every change of the shared
// policy is announced, with its new version as the payload; see Watch.
const PolicyChannel = "modgate_policy"

// PolicySource keeps the policy every gate enforces in the table
// modgate_policy: one document with a version. It implements the policy's
// Source contract (policy.Source): Load returns nil and 0 before the
// first Store; Store is a compare-and-swap on the version.
type PolicySource struct{ DB *DB }

// Load returns the stored policy document and its version, or nil and 0.
func (s PolicySource) Load(ctx context.Context) ([]byte, int64, error) {
	if err := s.DB.check(); err != nil {
		return nil, 0, err
	}
	var (
		data []byte
		ver  int64
	)
	err := s.DB.Pool.QueryRow(ctx, "SELECT document, version FROM modgate_policy").Scan(&data, &ver)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("cluster database: loading the policy: %w", s.DB.classify(err))
	}
	return nonNil(data), ver, nil
}

// Store stores data if the stored version is still version (0: none is
// stored) and returns the new version; ok is false when another gate
// stored first.
func (s PolicySource) Store(ctx context.Context, data []byte, version int64) (int64, bool, error) {
	if err := s.DB.check(); err != nil {
		return 0, false, err
	}
	var (
		next int64
		err  error
	)
	if version == 0 {
		err = s.DB.Pool.QueryRow(ctx, `INSERT INTO modgate_policy (document, version) VALUES ($1, 1)
			ON CONFLICT (singleton) DO NOTHING RETURNING version`, nonNil(data)).Scan(&next)
	} else {
		err = s.DB.Pool.QueryRow(ctx, `UPDATE modgate_policy SET document = $1, version = version + 1,
			updated_at = now() WHERE version = $2 RETURNING version`, nonNil(data), version).Scan(&next)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("cluster database: storing the policy: %w", s.DB.classify(err))
	}
	return next, true, nil
}
