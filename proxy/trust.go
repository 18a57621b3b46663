package proxy

import (
	"fmt"

	"go.uber.org/zap"
)

// Trust marks: how a cached .mod or .zip was trusted when it was stored.
// Each is kept with the object itself (cache.Entry.Mark, cache.Blob.Mark),
// written in the same commit, so an object never carries another's mark.
const (
	// trustUnknown is the mark of objects stored before marks existed:
	// they may have been stored as private, so they count as private.
	trustUnknown byte = 0
	// trustSumDB: its hash matched the verified checksum-database record.
	trustSumDB byte = 1
	// trustPrivate: a private pattern matched its module, so it was not
	// checked against the checksum database.
	trustPrivate byte = 2
)

// trustName names a mark for logs.
func trustName(mark byte) string {
	switch mark {
	case trustSumDB:
		return "sumdb"
	case trustPrivate:
		return "private"
	case trustUnknown:
		return "unknown"
	}
	return fmt.Sprintf("mark %d", mark)
}

// trustHolds reports whether a cached object of req stored with mark may
// be served under the configuration and policy in force. Only .mod and
// .zip are checked against the checksum database: an object verified
// there always may; one stored as private (or unmarked) only while a
// private pattern still matches its module. An object whose trust no
// longer holds is fetched and verified again.
func (g *Gate) trustHolds(req Request, mark byte) bool {
	if req.Kind != KindMod && req.Kind != KindZip {
		return true
	}
	if mark == trustSumDB || g.private(req.Module) {
		return true
	}
	g.log.Info("cached object no longer trusted: verifying it again",
		zap.String("module", req.Module), zap.String("version", req.Version), zap.String("kind", string(req.Kind)),
		zap.String("trust", trustName(mark)), zap.String("reason", "no private pattern matches the module any more"))
	return false
}

// untrustedOffline is the error for a cached object whose trust no longer
// holds while the gate is offline and cannot verify it again.
func untrustedOffline(req Request) error {
	return fmt.Errorf("%s: cached as a private module, but no private pattern matches it now, "+
		"so it must be verified against the checksum database: %w", req.Target(), ErrOffline)
}
