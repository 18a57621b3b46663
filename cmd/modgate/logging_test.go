package main

import (
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestLibraryLogger(t *testing.T) {
	tests := []struct {
		name     string
		level    zapcore.Level // the logger's level
		log      func(*zap.Logger)
		want     int
		wantLvl  zapcore.Level
		noFields []string
	}{
		{"info is hidden at info", zapcore.InfoLevel, func(l *zap.Logger) { l.Info("obtained") }, 0, 0, nil},
		{"info shows as debug at debug", zapcore.DebugLevel, func(l *zap.Logger) { l.Info("obtained") }, 1, zapcore.DebugLevel, nil},
		{"warnings stay", zapcore.InfoLevel, func(l *zap.Logger) { l.Warn("renewal failed") }, 1, zapcore.WarnLevel, nil},
		{"errors stay", zapcore.InfoLevel, func(l *zap.Logger) { l.Error("could not obtain") }, 1, zapcore.ErrorLevel, nil},
		{"pointers dropped", zapcore.DebugLevel, func(l *zap.Logger) {
			l.With(zap.String("cache", "0x36aa47a70600")).Warn("x", zap.String("ptr", "0xc000123456"), zap.String("id", "0x1"))
		}, 1, zapcore.WarnLevel, []string{"cache", "ptr"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			core, logs := observer.New(tc.level)
			tc.log(libraryLogger(zap.New(core)))
			if logs.Len() != tc.want {
				t.Fatalf("%d entries, want %d", logs.Len(), tc.want)
			}
			if tc.want == 0 {
				return
			}
			e := logs.All()[0]
			if e.Level != tc.wantLvl {
				t.Errorf("level %v, want %v", e.Level, tc.wantLvl)
			}
			for _, f := range tc.noFields {
				if _, ok := e.ContextMap()[f]; ok {
					t.Errorf("field %s kept: %v", f, e.ContextMap())
				}
			}
			if tc.noFields != nil && e.ContextMap()["id"] != "0x1" {
				t.Errorf("a short hex value is not a pointer: %v", e.ContextMap())
			}
		})
	}
}
