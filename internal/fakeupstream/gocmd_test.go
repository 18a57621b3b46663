package fakeupstream

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/module"
)

// goEnv returns the environment for a go command that uses s as its only
// module proxy and checksum database, with a fresh GOPATH.
func goEnv(t *testing.T, s *Server) []string {
	gopath := t.TempDir()
	return append(os.Environ(),
		"GOENV=off",
		"GOTOOLCHAIN=local",
		"GO111MODULE=on",
		"GOWORK=off",
		"GOPROXY="+s.URL,
		"GOSUMDB="+s.VerifierKey()+" "+s.SumDBURL(),
		"GONOSUMDB=",
		"GONOSUMCHECK=",
		"GOPRIVATE=",
		"GONOPROXY=",
		"GOINSECURE=",
		"GOPATH="+gopath,
		"GOMODCACHE="+filepath.Join(gopath, "pkg", "mod"),
		"GOFLAGS=-mod=mod -modcacherw",
	)
}

// runGo runs the go command in dir and returns its combined output. It
// fails t if the command fails.
func runGo(t *testing.T, goCmd, dir string, env []string, args ...string) string {
	t.Helper()
	out, err := tryGo(t, goCmd, dir, env, args...)
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// tryGo runs the go command in dir and returns its combined output.
func tryGo(t *testing.T, goCmd, dir string, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), goCmd, args...)
	cmd.Dir, cmd.Env = dir, env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// lookGo returns the go command, or skips t.
func lookGo(t *testing.T) string {
	t.Helper()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("the go command is not on PATH: %v", err)
	}
	if testing.Short() {
		t.Skip("runs the go command; skipped in -short mode")
	}
	return goCmd
}

const mainGoMod = `module example.com/main

go 1.21

require (
	example.com/Upper v1.0.0
	example.com/lib v1.2.0
)
`

const mainGo = `package main

import (
	"fmt"

	"example.com/Upper"
	"example.com/lib"
)

func main() { fmt.Println(upper.Shout(lib.Hello())) }
`

func TestGoCommand(t *testing.T) {
	goCmd := lookGo(t)
	s := Start(t, Options{})
	dir := t.TempDir()
	for name, data := range map[string]string{"go.mod": mainGoMod, "main.go": mainGo} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	env := goEnv(t, s)
	runGo(t, goCmd, dir, env, "mod", "download", "example.com/lib@v1.2.0", "example.com/Upper@v1.0.0")
	runGo(t, goCmd, dir, env, "mod", "verify")
	if out := runGo(t, goCmd, dir, env, "run", "."); !strings.Contains(out, "hello from lib v1.2.0 and dep v1.0.0!") {
		t.Errorf("go run printed %q", out)
	}
	sum, err := os.ReadFile(filepath.Join(dir, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range s.Modules() {
		if m.Path != "example.com/lib" || m.Version != "v1.2.0" {
			continue
		}
		zipH1, modH1 := s.GoSum(m)
		for _, line := range []string{m.Path + " " + m.Version + " " + zipH1, m.Path + " " + m.Version + "/go.mod " + modH1} {
			if !strings.Contains(string(sum), line+"\n") {
				t.Errorf("go.sum lacks %q:\n%s", line, sum)
			}
		}
	}
	out := runGo(t, goCmd, dir, env, "list", "-m", "-retracted", "-f", "{{.Retracted}}", "example.com/retracted@v1.0.0")
	if !strings.Contains(out, "broken") {
		t.Errorf("go list -retracted printed %q, want the rationale \"broken\"", out)
	}
	t.Logf("requests: %q", s.RequestLog())
	if s.Requests("/sumdb/"+s.Name()+"/lookup/example.com/lib@v1.2.0") != 1 || s.Requests("/example.com/!upper/@v/v1.0.0.zip") != 1 {
		t.Errorf("the go command did not use the checksum database: %q", s.RequestLog())
	}
}

func TestGoCommandRejectsFaults(t *testing.T) {
	goCmd := lookGo(t)
	dep := module.Version{Path: "example.com/dep", Version: "v1.0.0"}
	tests := []struct {
		name    string
		fault   func(s *Server)
		arg     string
		wantErr string
	}{
		{"zip mismatch", func(s *Server) { s.SetZipMismatch(dep, true) }, "example.com/dep@v1.0.0", "verifying module: checksum mismatch"},
		{"mod mismatch", func(s *Server) { s.SetModMismatch(dep, true) }, "example.com/dep@v1.0.0", "go.mod: checksum mismatch"},
		{"info version", func(s *Server) { s.SetInfoVersion(dep, "v1.0.1") }, "example.com/dep@v1.0.0", "v1.0.1"},
		{"status", func(s *Server) { s.SetStatus("/example.com/dep/", 403) }, "example.com/dep@v1.0.0", "403 Forbidden"},
		{"fork", func(s *Server) { s.Fork() }, "example.com/dep@v1.0.0", "misbehavior"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Start(t, Options{})
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.com/main\n\ngo 1.21\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			env := goEnv(t, s)
			// Remember a tree head first, so that a fork shows.
			runGo(t, goCmd, dir, env, "mod", "download", "example.com/lib@v1.0.0")
			tt.fault(s)
			out, err := tryGo(t, goCmd, dir, env, "mod", "download", tt.arg)
			if err == nil || !strings.Contains(out, tt.wantErr) {
				t.Errorf("go mod download %s: %v, want a failure mentioning %q:\n%s", tt.arg, err, tt.wantErr, out)
			}
		})
	}
}
