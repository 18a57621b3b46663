package main

import (
	"strings"

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
