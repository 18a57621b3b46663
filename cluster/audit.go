package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// AuditTable keeps the audit log of every gate in the table modgate_audit:
// the entries the audit log writes as JSON under time-ordered keys, with
// their time, who, action, subject, rule and reason also as columns for
// SQL. It is the store behind a gate's audit log (cmd/modgate adapts it
// to audit.Store), which enforces the retention.
type AuditTable struct{ DB *DB }

// auditColumns are the fields of an audit entry that are also columns.
type auditColumns struct {
	Time    time.Time `json:"time"`
	Who     string    `json:"who"`
	Action  string    `json:"action"`
	Subject string    `json:"subject"`
	Rule    string    `json:"rule"`
	Reason  string    `json:"reason"`
}

// Put stores the JSON entry value under key, replacing one stored there
// (an aggregated would_deny entry is written again as its count grows).
func (s AuditTable) Put(ctx context.Context, key string, value []byte) error {
	if err := s.DB.check(); err != nil {
		return err
	}
	var c auditColumns
	if err := json.Unmarshal(value, &c); err != nil {
		return fmt.Errorf("cluster database: audit entry %s is not JSON: %w", key, err)
	}
	_, err := s.DB.Pool.Exec(ctx, `INSERT INTO modgate_audit (key, time, who, action, subject, rule, reason, entry)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (key) DO UPDATE SET time = EXCLUDED.time, who = EXCLUDED.who, action = EXCLUDED.action,
			subject = EXCLUDED.subject, rule = EXCLUDED.rule, reason = EXCLUDED.reason, entry = EXCLUDED.entry`,
		key, c.Time, c.Who, c.Action, c.Subject, c.Rule, c.Reason, string(value))
	if err != nil {
		return fmt.Errorf("cluster database: storing audit entry %s: %w", key, s.DB.classify(err))
	}
	return nil
}

// Delete removes the entry under key; an absent key is no error.
func (s AuditTable) Delete(ctx context.Context, key string) error {
	if err := s.DB.check(); err != nil {
		return err
	}
	if _, err := s.DB.Pool.Exec(ctx, "DELETE FROM modgate_audit WHERE key = $1", key); err != nil {
		return fmt.Errorf("cluster database: deleting audit entry %s: %w", key, s.DB.classify(err))
	}
	return nil
}

// Scan calls fn for each entry whose key has the prefix, in key order
// (time order), with the entry's JSON. It stops at fn's first error. The
// rows are streamed, so fn must not use the table.
func (s AuditTable) Scan(ctx context.Context, prefix string, fn func(key string, value []byte) error) error {
	if err := s.DB.check(); err != nil {
		return err
	}
	rows, err := s.DB.Pool.Query(ctx, `SELECT key, entry::text FROM modgate_audit
		WHERE key >= $1 AND starts_with(key, $1) ORDER BY key`, prefix)
	if err != nil {
		return fmt.Errorf("cluster database: scanning the audit log: %w", s.DB.classify(err))
	}
	defer rows.Close()
	var (
		key, value string
		fnErr      error
	)
	_, err = pgx.ForEachRow(rows, []any{&key, &value}, func() error {
		fnErr = fn(key, []byte(value))
		return fnErr
	})
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		return fmt.Errorf("cluster database: scanning the audit log: %w", s.DB.classify(err))
	}
	return nil
}
