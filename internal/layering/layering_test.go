package layering

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

const mod = "github.com/modgate/modgate"

// pkg is what go list -json says of one package.
type pkg struct {
	ImportPath string
	Deps       []string
}

// listPackages runs go list -deps -json on the module's packages and
// returns them by import path, with their transitive dependencies.
func listPackages(t *testing.T) map[string]pkg {
	t.Helper()
	goCmd := filepath.Join(runtime.GOROOT(), "bin", "go")
	cmd := exec.Command(goCmd, "list", "-deps", "-json=ImportPath,Deps", mod+"/...")
	cmd.Dir = filepath.Join("..", "..")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	pkgs := map[string]pkg{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decoding go list output: %v", err)
		}
		if p.ImportPath == mod || strings.HasPrefix(p.ImportPath, mod+"/") {
			pkgs[p.ImportPath] = p
		}
	}
	return pkgs
}

// ours returns the module's packages among deps, without the module prefix.
func ours(deps []string) []string {
	var out []string
	for _, d := range deps {
		if rest, ok := strings.CutPrefix(d, mod+"/"); ok {
			out = append(out, rest)
		}
	}
	return out
}

// helper reports whether p is a small internal helper that every layer
// may use (not the test fakes or the bench, which sit above the gate).
func helper(p string) bool {
	return strings.HasPrefix(p, "internal/") &&
		!slices.Contains([]string{"internal/bench", "internal/fakeupstream", "internal/modfixture"}, p)
}

// TestLayering checks the direction of imports between modgate's packages.
func TestLayering(t *testing.T) {
	pkgs := listPackages(t)
	leaves := []string{"cache", "cache/bundle", "signer", "pki", "policy", "policy/vuln", "cluster"}
	tests := []struct {
		pkg   string
		allow func(dep string) bool
	}{
		{"internal/httperr", func(string) bool { return false }},
		{"internal/stall", func(string) bool { return false }},
		{"internal/atomicfile", func(string) bool { return false }},
		{"internal/secretfile", func(string) bool { return false }},
		{"internal/dnsname", func(string) bool { return false }},
		{"proxy/audit", func(d string) bool { return helper(d) || slices.Contains(leaves, d) }},
		{"proxy/egress", func(d string) bool { return helper(d) || d == "policy" }},
		{"proxy/admin", func(d string) bool {
			return helper(d) || slices.Contains(leaves, d) || d == "proxy/audit"
		}},
		{"proxy", func(d string) bool {
			return helper(d) || slices.Contains(leaves, d) || strings.HasPrefix(d, "proxy/")
		}},
	}
	for _, leaf := range leaves {
		tests = append(tests, struct {
			pkg   string
			allow func(dep string) bool
		}{leaf, helper})
	}
	for _, tt := range tests {
		t.Run(tt.pkg, func(t *testing.T) {
			p, ok := pkgs[mod+"/"+tt.pkg]
			if !ok {
				t.Fatalf("go list does not know %s", tt.pkg)
			}
			for _, d := range ours(p.Deps) {
				if !tt.allow(d) {
					t.Errorf("%s imports %s (directly or not), against the layout", tt.pkg, d)
				}
			}
		})
	}
	t.Run("nothing imports cmd", func(t *testing.T) {
		for path, p := range pkgs {
			for _, d := range ours(p.Deps) {
				if strings.HasPrefix(d, "cmd/") {
					t.Errorf("%s imports %s", path, d)
				}
			}
		}
	})
}
