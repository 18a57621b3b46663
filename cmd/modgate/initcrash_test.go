package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modgate/modgate/pki"
	"github.com/modgate/modgate/signer"
)

// crashPoint is a step of a command that changes the data directory: the
// system call that makes path appear (mkdirat, openat with O_CREAT,
// linkat or renameat onto it).
type crashPoint struct{ syscall, path string }

// crashSyscalls are the calls whose paths name the steps.
const crashSyscalls = "mkdirat,openat,linkat,renameat,renameat2"

// tracedPath matches the path arguments of a strace line; the last one is
// the path the call creates.
var tracedPath = regexp.MustCompile(`"((?:[^"\\]|\\.)*)"`)

// needStrace returns the strace binary, or skips the test where it is
// missing or may not trace (no ptrace in the container); under CI=true it
// fails instead.
func needStrace(t *testing.T) string {
	t.Helper()
	skip := t.Skipf
	if os.Getenv("CI") == "true" {
		skip = t.Fatalf // CI must run it: the project's machines have strace
	}
	st, err := exec.LookPath("strace")
	if err != nil {
		skip("interrupting modgate at each step needs strace (apt-get install strace)")
	}
	if out, err := exec.Command(st, "-f", "-qq", "-o", os.DevNull, "-e", "trace=none", "true").CombinedOutput(); err != nil {
		skip("strace cannot trace here: %v %s", err, out)
	}
	return st
}

// crashPoints runs args once under strace until it exits or ready says
// it is up, and returns its steps inside dir, in order, each once.
func crashPoints(t *testing.T, st, dir string, ready func(log string) bool, args ...string) []crashPoint {
	t.Helper()
	trace := filepath.Join(t.TempDir(), "trace")
	log := runTraced(t, st, []string{"-o", trace, "-e", "trace=" + crashSyscalls}, ready, args...)
	b, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[crashPoint]bool{}
	var points []crashPoint
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || strings.Contains(line, "= -1 ") {
			continue
		}
		sc, _, ok := strings.Cut(f[1], "(")
		if !ok || (sc == "openat" && !strings.Contains(line, "O_CREAT")) {
			continue
		}
		paths := tracedPath.FindAllStringSubmatch(line, -1)
		if len(paths) == 0 {
			continue
		}
		p := paths[len(paths)-1][1]
		base := filepath.Base(p)
		if !strings.HasPrefix(p, dir+"/") && p != dir || strings.Contains(base, ".tmp") || strings.HasPrefix(base, "modgate-spool-") {
			continue // outside, or a temporary name that differs from run to run
		}
		if cp := (crashPoint{sc, p}); !seen[cp] {
			seen[cp] = true
			points = append(points, cp)
		}
	}
	if len(points) < 3 {
		t.Fatalf("only %d steps found; the trace:\n%s\nthe output:\n%s", len(points), b, log)
	}
	return points
}

// runTraced runs args under strace with the given strace options, until it
// exits or ready(its output) (then it is killed), and returns its output.
func runTraced(t *testing.T, st string, opts []string, ready func(string) bool, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, st, append(append([]string{"-f", "-qq"}, opts...), args...)...)
	cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+t.TempDir())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return out.String()
		case <-tick.C:
			if ready != nil && ready(out.String()) {
				syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				<-done
				return out.String()
			}
		}
	}
}

// TestInitCrashAtEachStep kills `modgate init`, and a first `modgate
// serve` on an empty data directory, at each step that creates something
// in the data directory (SIGKILL as the step's system call is made), then
// runs them again: they must complete, and leave keys that load and a gate
// that serves.
func TestInitCrashAtEachStep(t *testing.T) {
	st := needStrace(t)
	dir := filepath.Join(t.TempDir(), "data")
	serving := func(log string) bool { return strings.Contains(log, `"msg":"modgate serving"`) }
	tests := []struct {
		name  string
		args  []string
		ready func(string) bool
		rerun func(*testing.T, string, crashPoint) bool
	}{
		{"init", []string{binary, "init", "--data-dir", dir}, nil, rerunInit},
		{"first serve", []string{binary, "serve", "--data-dir", dir, "--offline", "--listen", "127.0.0.1:0",
			"--admin-listen", "127.0.0.1:0"}, serving, rerunServe},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os.RemoveAll(dir)
			points := crashPoints(t, st, dir, tt.ready, tt.args...)
			for _, cp := range points {
				os.RemoveAll(dir)
				opts := []string{"-o", os.DevNull, "-e", "trace=" + cp.syscall, "-P", cp.path,
					"-e", "inject=" + cp.syscall + ":signal=SIGKILL"}
				log := runTraced(t, st, opts, tt.ready, tt.args...)
				if serving(log) {
					t.Logf("%s %s: not reached before serving", cp.syscall, cp.path)
				}
				checkRecovers(t, dir, cp, tt.rerun)
			}
			t.Logf("%d steps interrupted", len(points))
		})
	}
}

// rerunInit runs init again on dir, as an operator would after a crash.
func rerunInit(t *testing.T, dir string, cp crashPoint) bool {
	t.Helper()
	out, err := exec.Command(binary, "init", "--data-dir", dir).CombinedOutput()
	if err != nil {
		t.Errorf("after a crash at %s %s, init: %v\n%s", cp.syscall, cp.path, err, out)
	}
	return err == nil
}

// rerunServe starts serve again on dir: it must get ready.
func rerunServe(t *testing.T, dir string, _ crashPoint) bool {
	t.Helper()
	startGate(t, dir, "--offline").stop()
	return true
}

// checkRecovers reruns the command after a crash at cp, then checks the
// keys, the CA and the token, and that serve starts on dir.
func checkRecovers(t *testing.T, dir string, cp crashPoint, rerun func(*testing.T, string, crashPoint) bool) {
	t.Helper()
	if !rerun(t, dir, cp) {
		return
	}
	if _, err := pki.Load(dir); err != nil {
		t.Errorf("after a crash at %s %s, the CA: %v", cp.syscall, cp.path, err)
	}
	if _, _, err := signer.LoadKey(dir); err != nil {
		t.Errorf("after a crash at %s %s, the note key: %v", cp.syscall, cp.path, err)
	}
	if tok, err := signer.ReadSecret(filepath.Join(dir, adminTokenFile)); err != nil || len(tok) < 32 {
		t.Errorf("after a crash at %s %s, the admin token: %q %v", cp.syscall, cp.path, tok, err)
	}
	startGate(t, dir, "--offline").stop()
}
