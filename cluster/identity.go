package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
)

// ErrIdentity means a gate's enterprise note key or CA certificate differs
// from the ones the cluster recorded from its first gate: the gate must not
// join, or the cluster would speak with two keys.
var ErrIdentity = errors.New("this gate's keys differ from the cluster's")

// Identity is what makes the gates of one cluster one: the enterprise
// verifier key clients pin as GOSUMDB, and the CA certificate they trust.
type Identity struct {
	Verifier string // the enterprise note verifier key (note.pub)
	CACert   []byte // the CA certificate, DER
}

// CheckIdentity records id as the cluster's identity if none is recorded
// yet (the first gate), and otherwise checks that id is the recorded one.
// It reports whether it recorded id. A mismatch is ErrIdentity, with what
// differs and what to do.
func (db *DB) CheckIdentity(ctx context.Context, id Identity) (first bool, err error) {
	if id.Verifier == "" || len(id.CACert) == 0 {
		return false, errors.New("cluster identity: the verifier key and the CA certificate are required")
	}
	tag, err := db.Pool.Exec(ctx, `INSERT INTO modgate_identity (verifier, ca_cert) VALUES ($1, $2)
		ON CONFLICT (singleton) DO NOTHING`, id.Verifier, id.CACert)
	if err != nil {
		return false, fmt.Errorf("recording the cluster identity: %w", err)
	}
	if tag.RowsAffected() == 1 {
		return true, nil
	}
	var have Identity
	if err := db.Pool.QueryRow(ctx, "SELECT verifier, ca_cert FROM modgate_identity").
		Scan(&have.Verifier, &have.CACert); err != nil {
		return false, fmt.Errorf("reading the cluster identity: %w", err)
	}
	const fix = "give this gate the cluster's note.key, note.pub, ca.pem and ca-key.pem " +
		"(copy them from a gate of the cluster, or mount the same Secret), or use another database"
	if have.Verifier != id.Verifier {
		return false, fmt.Errorf("%w: its enterprise verifier key is %s, the cluster's is %s: %s",
			ErrIdentity, id.Verifier, have.Verifier, fix)
	}
	if !bytes.Equal(have.CACert, id.CACert) {
		return false, fmt.Errorf("%w: its CA certificate (SHA-256 %s) is not the cluster's (SHA-256 %s): %s",
			ErrIdentity, fingerprint(id.CACert), fingerprint(have.CACert), fix)
	}
	return false, nil
}

func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:8])
}
