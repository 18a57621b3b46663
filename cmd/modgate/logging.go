package main

import (
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// libraryLogger wraps the logger handed to a chatty library (certmagic):
// its info lines become debug lines, warnings and errors stay, and fields
// that hold a pointer's address ("0x36aa47a70600") are dropped.
func libraryLogger(log *zap.Logger) *zap.Logger {
	return log.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core { return demotedCore{c} }))
}

// demotedCore is a zapcore.Core that logs info entries at debug level and
// drops pointer fields.
type demotedCore struct{ zapcore.Core }

func demote(l zapcore.Level) zapcore.Level {
	if l == zapcore.InfoLevel {
		return zapcore.DebugLevel
	}
	return l
}

func (c demotedCore) Enabled(l zapcore.Level) bool { return c.Core.Enabled(demote(l)) }

func (c demotedCore) With(fields []zapcore.Field) zapcore.Core {
	return demotedCore{c.Core.With(withoutPointers(fields))}
}

func (c demotedCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	e.Level = demote(e.Level)
	if c.Core.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c demotedCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	e.Level = demote(e.Level)
	return c.Core.Write(e, withoutPointers(fields))
}

// withoutPointers drops string fields whose value is a pointer's address,
// which mean nothing to a reader of the log.
func withoutPointers(fields []zapcore.Field) []zapcore.Field {
	out := fields[:0:0]
	for _, f := range fields {
		if f.Type == zapcore.StringType && isPointer(f.String) {
			continue
		}
		out = append(out, f)
	}
	return out
}

func isPointer(s string) bool {
	rest, ok := strings.CutPrefix(s, "0x")
	return ok && len(rest) >= 6 && strings.Trim(rest, "0123456789abcdef") == ""
}

// The log buffer (--log-flush-interval).
//
// Writing each access-log line with its own write syscall was about 5% of
// the gate's CPU on cached small objects (docs/PERFORMANCE.md, row 6).
// Lines now collect in a buffer of logBufferSize bytes that is written when
// it is full, every flush interval, at a warning or an error (urgentCore),
// and when serve ends (SIGTERM, Ctrl-C: stop writes the rest). A SIGKILL or
// a crash of the process loses the info and debug lines of at most the last
// flush interval (and at most logBufferSize bytes); warnings and errors are
// never held back.

// defaultLogFlush is the default --log-flush-interval.
const defaultLogFlush = 200 * time.Millisecond

// logBufferSize is the size of the log buffer.
const logBufferSize = 256 << 10

// bufferedLog returns ws behind a buffer flushed every interval, and the
// function that writes the rest and stops the flushing. A zero interval
// returns ws unbuffered (behind a lock).
func bufferedLog(ws zapcore.WriteSyncer, interval time.Duration) (zapcore.WriteSyncer, func()) {
	if interval <= 0 {
		return zapcore.Lock(ws), func() { _ = ws.Sync() }
	}
	b := &zapcore.BufferedWriteSyncer{WS: ws, Size: logBufferSize, FlushInterval: interval}
	return b, func() { _ = b.Stop() }
}

// urgentCore writes warnings and errors through at once: it syncs (flushes
// the log buffer) after every entry at warn level or above.
type urgentCore struct{ zapcore.Core }

func (c urgentCore) With(fields []zapcore.Field) zapcore.Core { return urgentCore{c.Core.With(fields)} }

func (c urgentCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c urgentCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	err := c.Core.Write(e, fields)
	if e.Level >= zapcore.WarnLevel {
		// As zap itself does before a fatal entry: a pipe or a terminal
		// cannot fsync, so only the flush of the buffer matters.
		_ = c.Core.Sync()
	}
	return err
}
