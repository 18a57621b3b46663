package proxy

import (
	"context"
	"fmt"
	"io"
	"os"

	"go.uber.org/zap"

	"github.com/modgate/modgate/cache"
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
// longer holds is verified again (reverifyMod, reverifyZip), and fetched
// again when that fails.
func (g *Gate) trustHolds(req Request, mark byte) bool {
	if req.Kind != KindMod && req.Kind != KindZip {
		return true
	}
	if mark == trustSumDB || g.private(req.Module) {
		return true
	}
	g.log.Info("cached object not trusted under the policy in force: verifying it again",
		zap.String("module", req.Module), zap.String("version", req.Version), zap.String("kind", string(req.Kind)),
		zap.String("trust", trustName(mark)), zap.String("reason", "no private pattern matches the module any more"))
	return false
}

// untrustedOffline is the error for a cached object whose trust no longer
// holds while the gate is offline and cannot verify it again.
func untrustedOffline(req Request) error {
	return fmt.Errorf("%s: cached unverified (as a private module, or by an older modgate), no private "+
		"pattern matches it now, and its checksum-database record is not cached to verify it: %w",
		req.Target(), ErrOffline)
}

// reverifyMod checks a cached .mod whose trust mark no longer holds
// against the checksum database, as a fetched one is checked. It reports
// whether it passed; if so the copy is stored again, marked as verified,
// so the check is made once. A record the gate cannot read (offline, and
// never looked up) fails the check, and the caller fetches again or
// answers 504.
func (g *Gate) reverifyMod(ctx context.Context, req Request, key string, body []byte) bool {
	trust, err := checkMod(g, ctx, req, body, g.lookAhead(ctx, req, "/go.mod"))
	if err != nil || trust != trustSumDB {
		g.log.Info("cached object failed verification; fetching it again", zap.String("key", key), zap.Error(err))
		return false
	}
	if err := g.cfg.Cache.PutMarked(ctx, key, body, trust); err != nil {
		g.log.Warn("marking a verified cached object", zap.String("key", key), zap.Error(err))
	}
	return true
}

// reverifyZip is reverifyMod for a cached zip: it copies the blob to a
// spool file, hashes it as a fetched zip is hashed, and on success stores
// it again, marked as verified. It closes blob.
func (g *Gate) reverifyZip(ctx context.Context, req Request, key string, blob *cache.Blob) bool {
	defer blob.Close()
	f, err := os.CreateTemp(g.cfg.SpoolDir, "modgate-reverify-*.zip")
	if err != nil {
		g.log.Warn("verifying a cached zip again", zap.String("key", key), zap.Error(err))
		return false
	}
	defer os.Remove(f.Name())
	defer f.Close()
	size, err := io.Copy(f, blob)
	if err != nil {
		g.log.Warn("verifying a cached zip again", zap.String("key", key), zap.Error(err))
		return false
	}
	h, err := hashZip(f.Name())
	if err == nil {
		var trust byte
		if trust, err = g.checkSum(ctx, req, "", h); err == nil && trust != trustSumDB {
			err = fmt.Errorf("%s is not checked against the checksum database", req.Target())
		}
	}
	if err != nil {
		g.log.Info("cached object failed verification; fetching it again", zap.String("key", key), zap.Error(err))
		return false
	}
	if _, err := f.Seek(0, io.SeekStart); err == nil {
		err = g.cfg.Cache.PutBlobMarked(ctx, key, f, size, trustSumDB)
	}
	if err != nil {
		g.log.Warn("marking a verified cached zip", zap.String("key", key), zap.Error(err))
	}
	return true
}
