package fakeupstream

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
)

// wantModules are the module versions that other packages' tests rely on.
var wantModules = []module.Version{
	{Path: "example.com/Upper", Version: "v1.0.0"},
	{Path: "example.com/bad", Version: "v1.1.0"},
	{Path: "example.com/bad", Version: "v1.2.0"},
	{Path: "example.com/dep", Version: "v1.0.0"},
	{Path: "example.com/fresh", Version: "v1.0.0"},
	{Path: "example.com/lib", Version: "v1.0.0"},
	{Path: "example.com/lib", Version: "v1.1.0"},
	{Path: "example.com/lib", Version: "v1.2.0"},
	{Path: "example.com/retracted", Version: "v1.0.0"},
	{Path: "example.com/retracted", Version: "v1.1.0"},
}

func TestModulesLoaded(t *testing.T) {
	s, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := s.Modules()
	for _, m := range wantModules {
		if !slices.Contains(got, m) {
			t.Errorf("module %s not loaded", m)
		}
	}
	if !slices.IsSortedFunc(got, func(a, b module.Version) int {
		return strings.Compare(a.Path, b.Path)
	}) {
		t.Errorf("Modules() not sorted by path: %v", got)
	}
	for _, m := range got {
		mv := s.lookup(m)
		f, err := modfile.Parse("go.mod", mv.goMod, nil)
		if err != nil {
			t.Errorf("%s: .mod: %v", m, err)
			continue
		}
		if f.Module.Mod.Path != m.Path || f.Go == nil || f.Go.Version != "1.21" {
			t.Errorf("%s: .mod declares %q go %v, want %q go 1.21", m, f.Module.Mod.Path, f.Go, m.Path)
		}
	}
}

func TestRetractedFixture(t *testing.T) {
	s, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	mv := s.lookup(module.Version{Path: "example.com/retracted", Version: "v1.1.0"})
	f, err := modfile.Parse("go.mod", mv.goMod, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Retract) != 1 || f.Retract[0].Low != "v1.0.0" || f.Retract[0].Rationale != "broken" {
		t.Errorf("retract directives = %+v, want v1.0.0 // broken", f.Retract)
	}
}

func TestInfoTime(t *testing.T) {
	now := time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC)
	s, err := New(Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		mod  module.Version
		want string
	}{
		{module.Version{Path: "example.com/fresh", Version: "v1.0.0"}, "2030-05-06T07:08:09Z"},
		{module.Version{Path: "example.com/dep", Version: "v1.0.0"}, DefaultInfoTime},
		{module.Version{Path: "example.com/lib", Version: "v1.2.0"}, "2024-03-01T00:00:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.mod.String(), func(t *testing.T) {
			var info struct{ Version, Time string }
			if err := json.Unmarshal(s.lookup(tt.mod).info, &info); err != nil {
				t.Fatal(err)
			}
			if info.Version != tt.mod.Version || info.Time != tt.want {
				t.Errorf("info = %+v, want Version %s Time %s", info, tt.mod.Version, tt.want)
			}
		})
	}
}

func TestVersionFromName(t *testing.T) {
	tests := []struct {
		name    string
		want    module.Version
		wantErr bool
	}{
		{"example.com_lib_v1.0.0.txt", module.Version{Path: "example.com/lib", Version: "v1.0.0"}, false},
		{"example.com_!upper_v1.0.0.txt", module.Version{Path: "example.com/Upper", Version: "v1.0.0"}, false},
		{"example.com_a_b_v2.0.0-!pre.txt", module.Version{Path: "example.com/a/b", Version: "v2.0.0-PRE"}, true},
		{"example.com_a_v1.0.0-!p!r!e.txt", module.Version{Path: "example.com/a", Version: "v1.0.0-PRE"}, false},
		{"example.com_Upper_v1.0.0.txt", module.Version{}, true},
		{"example.com_lib.txt", module.Version{}, true},
		{"example.com_lib_v1.0.txt", module.Version{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := versionFromName(tt.name)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseArchiveErrors(t *testing.T) {
	tests := []struct {
		name, data, wantErr string
	}{
		{"example.com_x_v1.0.0.txt", "-- .mod --\nmodule example.com/y\n-- x.go --\npackage x\n", "declares module"},
		{"example.com_x_v1.0.0.txt", "-- .info --\n{\"Version\":\"v1.0.1\",\"Time\":\"NOW\"}\n", "Version"},
		{"example.com_x_v1.0.0.txt", "-- .info --\n{\"Version\":\"v1.0.0\",\"Time\":\"yesterday\"}\n", "parsing time"},
		{"example.com_x_v1.0.0.txt", "-- .info --\nnot json\n", "invalid character"},
		{"example.com_x_v1.0.0.txt", "-- sub/go.mod --\nmodule example.com/x/sub\n-- x.go --\npackage x\n", ""},
		{"example.com_x_v1.0.0.txt", "-- a.go --\npackage x\n-- A.go --\npackage x\n", "create zip"},
	}
	for _, tt := range tests {
		t.Run(tt.wantErr, func(t *testing.T) {
			_, err := parseArchive(tt.name, []byte(tt.data), time.Now())
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	empty := t.TempDir()
	badName := t.TempDir()
	if err := os.WriteFile(filepath.Join(badName, "notamodule.txt"), []byte("-- x.go --\npackage x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		dir  string
	}{
		{"empty dir", empty},
		{"missing dir", filepath.Join(empty, "nope")},
		{"bad archive name", badName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(Options{Dir: tt.dir}); err == nil {
				t.Fatal("New succeeded, want an error")
			}
		})
	}
}
