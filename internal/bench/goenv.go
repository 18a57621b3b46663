package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// goEnv runs the go command with a HOME of its own whose go telemetry is
// off (otherwise the go command may leave a telemetry process behind).
type goEnv struct {
	home string
	work string
	n    int
}

func newGoEnv(ctx context.Context, work string) (*goEnv, error) {
	e := &goEnv{home: filepath.Join(work, "home"), work: work}
	if err := os.MkdirAll(e.home, 0o755); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, "go", "telemetry", "off")
	cmd.Env = append(os.Environ(), e.homeEnv()...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go telemetry off: %v\n%s", err, out)
	}
	return e, nil
}

func (e *goEnv) homeEnv() []string {
	return []string{"HOME=" + e.home, "XDG_CONFIG_HOME=" + filepath.Join(e.home, ".config"), "GOTOOLCHAIN=local"}
}

// command runs go with the caller's environment (for the network phase)
// plus extra, in dir, and returns its standard output.
func (e *goEnv) command(ctx context.Context, dir string, extra []string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), e.homeEnv()...), extra...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		err = fmt.Errorf("go %v: %v\n%s", args, err, stderr.Bytes())
	}
	return out, err
}

// download runs go mod download of the workload in a fresh client (empty
// GOPATH, GOMODCACHE and GOCACHE) whose environment is the minimum plus
// extra (GOPROXY, GOSUMDB, HTTPS_PROXY, SSL_CERT_FILE), and returns its
// wall time. The client's directories are removed afterwards, untimed.
func (e *goEnv) download(ctx context.Context, fx *fixture, extra []string) (time.Duration, error) {
	d, _, err := e.downloadCPU(ctx, fx, extra)
	return d, err
}

// downloadCPU is download that also returns the CPU time (user + system)
// the go command used.
func (e *goEnv) downloadCPU(ctx context.Context, fx *fixture, extra []string) (time.Duration, time.Duration, error) {
	e.n++
	root := filepath.Join(e.work, fmt.Sprintf("client%03d", e.n))
	defer removeAll(root)
	app := filepath.Join(root, "app")
	if err := os.MkdirAll(app, 0o755); err != nil {
		return 0, 0, err
	}
	for _, name := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(fx.workload, name))
		if err != nil {
			return 0, 0, err
		}
		if err := os.WriteFile(filepath.Join(app, name), b, 0o644); err != nil {
			return 0, 0, err
		}
	}
	env := append([]string{
		"PATH=" + os.Getenv("PATH"),
		"GOPATH=" + filepath.Join(root, "gopath"), "GOMODCACHE=" + filepath.Join(root, "modcache"),
		"GOCACHE=" + filepath.Join(root, "gocache"), "GOFLAGS=-mod=mod",
		"GONOSUMDB=", "GOPRIVATE=", "GONOPROXY=", "GOINSECURE=", "NO_PROXY=", "no_proxy=",
		"HTTPS_PROXY=", "https_proxy=", "HTTP_PROXY=", "http_proxy=",
	}, e.homeEnv()...)
	env = append(env, extra...)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "mod", "download")
	cmd.Dir = app
	cmd.Env = env
	settleDisk()
	start := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(start)
	if err != nil {
		return 0, 0, fmt.Errorf("go mod download %v: %v\n%s", extra, err, tail(out, 2000))
	}
	return d, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), nil
}

// tail returns at most the last n bytes of b.
func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
