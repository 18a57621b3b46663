package signer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/tlog"
)

// The resolution of the history of witnessed tree heads: one entry a
// minute for HistoryFineFor, one an hour before that. The first entry
// ever recorded is kept as it is: it divides the records the witness can
// date from those it cannot.
const (
	// HistoryFine is the resolution of the recent history.
	HistoryFine = time.Minute
	// HistoryCoarse is the resolution of the history older than HistoryFineFor.
	HistoryCoarse = time.Hour
	// HistoryFineFor is how long the history keeps HistoryFine resolution.
	HistoryFineFor = 30 * 24 * time.Hour
)

// ErrHistory reports a stored history of witnessed tree heads that is not
// one modgate wrote: sizes and times that do not both grow.
var ErrHistory = errors.New("invalid witness history")

// historyDay is the span of one stored segment of the history.
const historyDay = 24 * time.Hour

// historyFormat is the first byte of a stored segment.
const historyFormat = 1

// HistoryEntry says that a tree head of Size records was first seen at Time.
type HistoryEntry struct {
	Size int64     `json:"size"`
	Time time.Time `json:"time"`
}

// HistoryStatus summarizes the history of witnessed tree heads.
type HistoryStatus struct {
	First   HistoryEntry `json:"first"`   // the first tree head the witness saw
	Latest  HistoryEntry `json:"latest"`  // the newest entry
	Entries int          `json:"entries"` // entries kept
	Bytes   int          `json:"bytes"`   // their stored size
}

// histEntry is a HistoryEntry in memory: 16 bytes, compared as integers.
type histEntry struct{ size, nanos int64 }

// history is the witness's record of when it first saw each tree size. It
// only grows: a tree head that is not newer than the last entry, or that
// the witness refused (a fork), never enters it. In memory it is one
// sorted slice, so dating a record is a binary search; in the Store it is
// one segment per day ("witness/<name>/history/<day>"), so recording a
// head rewrites at most one day.
type history struct {
	store  Store
	prefix string
	log    *zap.Logger
	shared bool // the Store is shared: segments are merged (see persistShared)

	mu      sync.RWMutex
	entries []histEntry // sizes and times strictly increase

	wmu       sync.Mutex // orders writes of segments
	compacted int64      // days before this one are at HistoryCoarse
}

func historyKeyPrefix(name string) string { return "witness/" + name + "/history/" }

func (h *history) dayKey(day int64) string { return h.prefix + fmt.Sprintf("%08d", day) }

func dayOf(nanos int64) int64 { return nanos / int64(historyDay) }

// loadHistory reads the stored history of database name. A shared Store's
// segments are written by several gates, whose entries near midnight may
// cross (see mergeHistory): they are merged rather than refused.
func loadHistory(ctx context.Context, store Store, name string, log *zap.Logger, shared bool) (*history, error) {
	h := &history{store: store, prefix: historyKeyPrefix(name), log: log, shared: shared}
	err := store.Scan(ctx, h.prefix, func(key string, value []byte) error {
		day, err := strconv.ParseInt(strings.TrimPrefix(key, h.prefix), 10, 64)
		if err != nil {
			return fmt.Errorf("%w: key %s", ErrHistory, key)
		}
		seg, err := decodeSegment(value)
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrHistory, key, err)
		}
		for _, e := range seg {
			if dayOf(e.nanos) != day {
				return fmt.Errorf("%w: %s holds an entry of another day", ErrHistory, key)
			}
			if shared {
				continue
			}
			if n := len(h.entries); n > 0 && (e.size <= h.entries[n-1].size || e.nanos < h.entries[n-1].nanos) {
				return fmt.Errorf("%w: %s: sizes and times must grow", ErrHistory, key)
			}
			h.entries = append(h.entries, e)
		}
		if shared {
			h.entries = mergeHistory(h.entries, seg)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("loading witness history: %w", err)
	}
	return h, nil
}

func decodeSegment(b []byte) ([]histEntry, error) {
	if len(b) == 0 || b[0] != historyFormat || (len(b)-1)%16 != 0 {
		return nil, errors.New("not a history segment")
	}
	seg := make([]histEntry, 0, (len(b)-1)/16)
	for p := b[1:]; len(p) > 0; p = p[16:] {
		e := histEntry{int64(binary.BigEndian.Uint64(p)), int64(binary.BigEndian.Uint64(p[8:]))}
		if e.size <= 0 {
			return nil, fmt.Errorf("tree size %d", e.size)
		}
		seg = append(seg, e)
	}
	return seg, nil
}

func encodeSegment(seg []histEntry) []byte {
	b := make([]byte, 1, 1+16*len(seg))
	b[0] = historyFormat
	for _, e := range seg {
		b = binary.BigEndian.AppendUint64(b, uint64(e.size))
		b = binary.BigEndian.AppendUint64(b, uint64(e.nanos))
	}
	return b
}

// record notes that a tree head of size records was accepted at now. A
// head within HistoryFine of the last entry replaces it (the first entry
// excepted), which dates the records in between later, never earlier.
func (h *history) record(ctx context.Context, size int64, now time.Time) {
	h.mu.Lock()
	n := len(h.entries)
	if size <= 0 || (n > 0 && size <= h.entries[n-1].size) {
		h.mu.Unlock()
		return
	}
	e := histEntry{size, now.UnixNano()}
	if n > 0 {
		last := h.entries[n-1]
		e.nanos = max(e.nanos, last.nanos) // a clock stepped back dates nothing earlier
		if n > 1 && e.nanos/int64(HistoryFine) == last.nanos/int64(HistoryFine) {
			h.entries = h.entries[:n-1]
		}
	}
	h.entries = append(h.entries, e)
	h.mu.Unlock()
	h.persist(ctx, dayOf(e.nanos), now)
}

// persist writes the segment of day, and compacts the days that have
// grown older than HistoryFineFor. A failed write is logged: the entry
// stays in memory, and after a restart the records it dates are dated by
// a later head, which errs towards newer.
func (h *history) persist(ctx context.Context, day int64, now time.Time) {
	h.wmu.Lock()
	defer h.wmu.Unlock()
	days := []int64{day}
	if limit := dayOf(now.Add(-HistoryFineFor).UnixNano()); limit > h.compacted {
		days = append(days, h.compact(limit)...)
		h.compacted = limit
	}
	for i, d := range days {
		h.mu.RLock()
		seg := h.segment(d)
		h.mu.RUnlock()
		var err error
		if h.shared && i == 0 { // compacted days (i > 0) are written as they are
			err = h.persistShared(ctx, d)
		} else {
			err = h.store.Store(ctx, h.dayKey(d), encodeSegment(seg))
		}
		if err != nil {
			h.log.Warn("cannot store the witness history", zap.Int64("day", d), zap.Error(err))
		}
	}
}

// segment returns the entries of day. h.mu is held.
func (h *history) segment(day int64) []histEntry {
	lo, _ := slices.BinarySearchFunc(
		h.entries,
		day*int64(historyDay),
		func(e histEntry, t int64) int { return cmpInt(e.nanos, t) },
	)
	hi, _ := slices.BinarySearchFunc(
		h.entries,
		(day+1)*int64(historyDay),
		func(e histEntry, t int64) int { return cmpInt(e.nanos, t) },
	)
	return slices.Clone(h.entries[lo:hi])
}

// compact keeps one entry an hour (the last of each hour, and the first
// entry of all) in the days before limit, and returns the days it changed.
func (h *history) compact(limit int64) []int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	var changed []int64
	out := h.entries[:0:0]
	for i, e := range h.entries {
		old := dayOf(e.nanos) < limit
		keep := !old || i == 0 || i == len(h.entries)-1 ||
			e.nanos/int64(HistoryCoarse) != h.entries[i+1].nanos/int64(HistoryCoarse)
		if keep {
			out = append(out, e)
		} else if d := dayOf(e.nanos); len(changed) == 0 || changed[len(changed)-1] != d {
			changed = append(changed, d)
		}
	}
	h.entries = out
	return changed
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// firstSeen dates record index; see Witness.FirstSeen.
func (h *history) firstSeen(index int64, now time.Time) (time.Time, int64, bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if len(h.entries) == 0 || index < h.entries[0].size {
		return time.Time{}, 0, false
	}
	lo, hi := 0, len(h.entries) // the first entry whose size exceeds index
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if h.entries[mid].size > index {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	i := lo
	if i == len(h.entries) { // in a tree accepted a moment ago, not recorded yet
		return now, index + 1, true
	}
	return time.Unix(0, h.entries[i].nanos), h.entries[i].size, true
}

// status summarizes the history; nil if it is empty.
func (h *history) status() *HistoryStatus {
	h.mu.RLock()
	defer h.mu.RUnlock()
	n := len(h.entries)
	if n == 0 {
		return nil
	}
	days := map[int64]bool{}
	for _, e := range h.entries {
		days[dayOf(e.nanos)] = true
	}
	return &HistoryStatus{
		First:   HistoryEntry{h.entries[0].size, time.Unix(0, h.entries[0].nanos).UTC()},
		Latest:  HistoryEntry{h.entries[n-1].size, time.Unix(0, h.entries[n-1].nanos).UTC()},
		Entries: n, Bytes: 16*n + len(days),
	}
}

// FirstSeen dates record index of the checksum database by the witness's
// own observation: it returns when the witness first saw a tree head that
// holds the record, and that head's size. The record was appended no
// later than that. ok is false for a record that was already in the first
// tree head the witness saw (or before any): the witness cannot date it.
// It costs a binary search over the history in memory.
func (w *Witness) FirstSeen(index int64) (t time.Time, size int64, ok bool) {
	return w.history.firstSeen(index, w.now())
}

// StoredRecord returns the index of the record of m that the witness has
// verified and stored, without asking the upstream; ok is false when none
// is stored.
func (w *Witness) StoredRecord(ctx context.Context, m module.Version) (index int64, ok bool, err error) {
	target, err := lookupTarget(m)
	if err != nil {
		return 0, false, err
	}
	rec, err := w.store.Load(ctx, w.lookupKey(target))
	if err != nil || rec == nil {
		return 0, false, err
	}
	id, _, _, err := tlog.ParseRecord(rec)
	if tree, _ := w.State(); err != nil || id >= tree.N {
		return 0, false, fmt.Errorf("%w: stored record for %s is not in the witnessed tree", ErrVerify, target)
	}
	return id, true, nil
}

// History summarizes the history of witnessed tree heads (nil before the
// first head is witnessed).
func (w *Witness) History() *HistoryStatus { return w.history.status() }

// ReadHistory summarizes the stored history of database name, for a tool
// that runs while the gate is stopped.
func ReadHistory(ctx context.Context, store Store, name string) (*HistoryStatus, error) {
	h, err := loadHistory(ctx, store, name, zap.NewNop(), false)
	if err != nil {
		return nil, err
	}
	return h.status(), nil
}

// PollOnce witnesses the upstream's newest tree head, so that the history
// of tree heads dates records whether or not clients ask for them. A
// failure is logged, not returned: the next poll tries again.
func (w *Witness) PollOnce(ctx context.Context) {
	_, tree, err := w.Latest(ctx)
	switch {
	case err == nil:
		w.log.Debug("polled the upstream's latest tree head", zap.String("db", w.name), zap.Int64("size", tree.N))
	case ctx.Err() == nil || errors.Is(err, ErrFork):
		w.log.Warn("cannot witness the upstream's latest tree head", zap.String("db", w.name), zap.Error(err))
	}
}

// Poll calls PollOnce every interval until ctx ends.
func (w *Witness) Poll(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.PollOnce(ctx)
		}
	}
}

// openHistory loads the history of tree heads. A witness state newer than
// the history (a gate from before the history existed, or one stopped
// between the two writes) is recorded as seen now: the records it adds
// are dated at the restart, later than they were appended, never earlier.
func (w *Witness) openHistory(ctx context.Context) error {
	h, err := loadHistory(ctx, w.store, w.name, w.log, w.shared)
	if err != nil {
		return err
	}
	w.history = h
	if tree, _ := w.State(); tree.N > 0 {
		h.record(ctx, tree.N, w.now())
	}
	return nil
}
