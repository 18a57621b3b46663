package policy

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modgate/modgate/internal/atomicfile"
	"go.uber.org/zap"
)

// ErrFileInvalid is returned by Update while the file on disk holds a
// hand edit that was refused (or the file is gone): writing the changed
// policy would silently discard that edit. Fix the file, or Replace it.
var ErrFileInvalid = errors.New("policy: the policy file on disk is invalid")

// DefaultWatchInterval is how often Watch checks the file when its
// interval is 0.
const DefaultWatchInterval = 2 * time.Second

// maxRefusedContent bounds Event.Content.
const maxRefusedContent = 64 << 10

// EventKind says what happened to a File's policy.
type EventKind string

// The kinds of Event.
const (
	// Reloaded: a valid edit of the file on disk took effect.
	Reloaded EventKind = "reload"
	// Refused: the file on disk is invalid or unreadable; the last good
	// policy stays in force.
	Refused EventKind = "invalid"
	// Updated: Update or Replace changed the policy.
	Updated EventKind = "update"
)

// Event tells OnChange hooks what happened.
type Event struct {
	Kind EventKind
	// Path is the policy file.
	Path string
	// Before is the policy in force before the event, After the one in
	// force after it (the same as Before when Refused).
	Before, After *Policy
	// Content is what the file held when it was Refused (at most 64 KiB).
	Content []byte
	// Err says why the file was Refused.
	Err error
}

// File is a policy kept in a file on disk: Current is always a valid
// policy; Update and Replace change it by rewriting the file atomically;
// Watch (or Reload) takes hand edits into effect and refuses invalid ones.
// It is safe for concurrent use.
type File struct {
	path string
	log  *zap.Logger
	cur  atomic.Pointer[Policy]

	mu      sync.Mutex // serializes reloads and writes
	hash    [sha256.Size]byte
	refused *[sha256.Size]byte // the content last refused, reported once

	hooksMu sync.Mutex
	hooks   []func(context.Context, Event)

	src Source // the shared policy (OpenSource), or nil for the file's own
	ver int64  // the version of src in force
}

// OpenFile reads and parses the policy file at path. A missing file gives
// an error wrapping fs.ErrNotExist; an invalid one the *ValidationErrors
// of Parse. A nil log means zap.NewNop().
func OpenFile(ctx context.Context, path string, log *zap.Logger) (*File, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	p, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	f := &File{path: path, log: log, hash: sha256.Sum256(data)}
	f.cur.Store(p)
	return f, nil
}

// Path returns the file's path.
func (f *File) Path() string { return f.path }

// Current returns the policy in force. It is never nil; it must not be
// modified (Clone it).
func (f *File) Current() *Policy { return f.cur.Load() }

// OnChange adds a hook called after every Event, outside the File's
// locks, with the context of the call that caused it.
func (f *File) OnChange(fn func(ctx context.Context, ev Event)) {
	f.hooksMu.Lock()
	f.hooks = append(f.hooks, fn)
	f.hooksMu.Unlock()
}

func (f *File) fire(ctx context.Context, events ...Event) {
	f.hooksMu.Lock()
	hooks := append([]func(context.Context, Event){}, f.hooks...)
	f.hooksMu.Unlock()
	for _, ev := range events {
		for _, h := range hooks {
			h(ctx, ev)
		}
	}
}

// Watch checks the file every interval (0 means DefaultWatchInterval)
// until ctx ends, as Reload does.
func (f *File) Watch(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f.Reload(ctx)
		}
	}
}

// Reload checks the file now. If its content changed (by SHA-256) and is
// a valid policy, that policy takes effect (a Reloaded event). If it is
// invalid, unreadable or gone, the error is logged and returned, the last
// good policy stays (a Refused event, once per distinct content).
func (f *File) Reload(ctx context.Context) error {
	f.mu.Lock()
	ev, err := f.syncLocked(ctx)
	f.mu.Unlock()
	if ev != nil {
		f.fire(ctx, *ev)
	}
	return err
}

// syncLocked loads the file if it changed since it was last loaded or
// written; see Reload.
func (f *File) syncLocked(ctx context.Context) (*Event, error) {
	if f.src != nil {
		return f.syncSourceLocked(ctx)
	}
	data, err := readStable(f.path)
	if errors.Is(err, errUnstable) {
		return nil, nil // being written: look again next time
	}
	var p *Policy
	if err == nil {
		h := sha256.Sum256(data)
		if h == f.hash {
			f.refused = nil
			return nil, nil
		}
		if f.refused != nil && *f.refused == h {
			return nil, fmt.Errorf("%w: %s", ErrFileInvalid, f.path)
		}
		if p, err = Parse(data); err == nil {
			before := f.cur.Load()
			f.cur.Store(p)
			f.hash, f.refused = h, nil
			f.log.Info("policy file reloaded", zap.String("path", f.path), zap.Int("rules", len(p.Rules)))
			return &Event{Kind: Reloaded, Path: f.path, Before: before, After: p}, nil
		}
		f.refused = &h
	} else {
		h := sha256.Sum256(nil)
		if f.refused != nil && *f.refused == h {
			return nil, fmt.Errorf("%w: %v", ErrFileInvalid, err)
		}
		f.refused = &h
	}
	f.log.Error("policy file refused; the last good policy stays in force", zap.String("path", f.path), zap.Error(err))
	cur := f.cur.Load()
	if len(data) > maxRefusedContent {
		data = data[:maxRefusedContent]
	}
	ev := &Event{Kind: Refused, Path: f.path, Before: cur, After: cur, Content: data, Err: err}
	return ev, fmt.Errorf("%w: %w", ErrFileInvalid, err)
}

// Update applies fn to a copy of the current policy, validates the result,
// writes it to the file atomically and puts it in force. A hand edit not
// yet loaded is loaded first; while the file on disk is invalid, Update
// fails with ErrFileInvalid. An error from fn is returned unchanged.
func (f *File) Update(ctx context.Context, fn func(*Policy) error) (before, after *Policy, err error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	f.mu.Lock()
	ev, err := f.syncLocked(ctx)
	if err == nil {
		before, after, err = f.applyLocked(ctx, fn)
	}
	f.mu.Unlock()
	f.fireAll(ctx, ev, before, after, err)
	return before, after, err
}

// Replace puts p in force, if valid, and writes it to the file
// atomically, whatever the file held.
func (f *File) Replace(ctx context.Context, p *Policy) (before, after *Policy, err error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	f.mu.Lock()
	ev, _ := f.syncLocked(ctx)
	before, after, err = f.applyLocked(ctx, func(q *Policy) error {
		*q = *p.Clone()
		return nil
	})
	f.mu.Unlock()
	f.fireAll(ctx, ev, before, after, err)
	return before, after, err
}

func (f *File) fireAll(ctx context.Context, ev *Event, before, after *Policy, err error) {
	var events []Event
	if ev != nil {
		events = append(events, *ev)
	}
	if err == nil {
		events = append(events, Event{Kind: Updated, Path: f.path, Before: before, After: after})
	}
	f.fire(ctx, events...)
}

// applyLocked changes the policy with fn, validates, writes and swaps.
func (f *File) applyLocked(ctx context.Context, fn func(*Policy) error) (before, after *Policy, err error) {
	if f.src != nil {
		return f.applySourceLocked(ctx, fn)
	}
	before = f.cur.Load()
	next, data, err := changed(before, fn)
	if err != nil {
		return nil, nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if err := writeAtomic(f.path, data); err != nil {
		return nil, nil, err
	}
	f.hash, f.refused = sha256.Sum256(data), nil
	f.cur.Store(next)
	f.log.Info("policy file written", zap.String("path", f.path), zap.Int("rules", len(next.Rules)))
	return before, next, nil
}

// changed applies fn to a copy of p and returns the copy, normalized and
// valid, with the bytes that store it.
func changed(p *Policy, fn func(*Policy) error) (*Policy, []byte, error) {
	next := p.Clone()
	if err := fn(next); err != nil {
		return nil, nil, err
	}
	next.normalize()
	if err := next.Validate(); err != nil {
		return nil, nil, err
	}
	data, err := next.encodeChecked()
	if err != nil {
		return nil, nil, err
	}
	return next, data, nil
}

// ErrRoundTrip is wrapped by the error of a policy whose file would not
// read back as the same policy: nothing is written (a modgate bug).
var ErrRoundTrip = errors.New("policy: the file would not read back as written")

// encodeChecked marshals a valid, normalized p and checks the exact bytes
// the way OpenFile and the watcher will read them (size included), so that
// no write can leave a file that the gate refuses, even at start. Its
// errors are *ValidationError (for a file over MaxFileSize) or wrap
// ErrRoundTrip.
func (p *Policy) encodeChecked() ([]byte, error) {
	data, err := p.Marshal()
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, &ValidationError{Problem: fmt.Sprintf("the policy file would be %d bytes, over the limit of %d "+
			"(non-ASCII text is written escaped, up to 10 bytes a character): remove rules or shorten reasons",
			len(data), MaxFileSize)}
	}
	back, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRoundTrip, err)
	}
	if !reflect.DeepEqual(back, p) {
		return nil, fmt.Errorf("%w: it reads back as a different policy", ErrRoundTrip)
	}
	return data, nil
}

// readFile reads a policy file of at most MaxFileSize bytes.
func readFile(path string) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("policy: reading %s: %w", path, err)
	}
	return data, nil
}

var errUnstable = errors.New("policy: file changed while being read")

// readStable reads the file and reports errUnstable if its size or
// modification time changed while it was read (a writer at work).
func readStable(path string) ([]byte, error) {
	st1, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	st2, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	if st1.Size() != st2.Size() || !st1.ModTime().Equal(st2.ModTime()) ||
		int64(len(data)) != st2.Size() && len(data) <= MaxFileSize {
		return nil, errUnstable
	}
	return data, nil
}

// writeAtomic replaces the file at path (following a symbolic link) with
// data, atomically and durably (atomicfile.Write). The file keeps its
// mode; a new file gets 0644.
func writeAtomic(path string, data []byte) error {
	target := path
	if t, err := filepath.EvalSymlinks(path); err == nil {
		target = t
	}
	mode := fs.FileMode(0o644)
	if fi, err := os.Stat(target); err == nil {
		mode = fi.Mode().Perm()
	}
	if err := atomicfile.Write(target, data, mode); err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	return nil
}
