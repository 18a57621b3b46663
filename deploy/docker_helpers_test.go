// Package deploy holds the tests of the deployment files that need a
// Docker engine: the repository's Dockerfile, built unchanged on local
// stand-ins of its base images, the image it makes, and a Docker build of
// a small Go project through that image's gate. The folder has no code of
// its own: the tests sit next to the files they check (deploy/ and the
// Dockerfile), with their own test binary and timeout.
package deploy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// repoRoot is the repository, the build context of its Dockerfile.
const repoRoot = ".."

// dockerTimeout bounds one docker command (an image build included).
const dockerTimeout = 8 * time.Minute

// docker runs a Docker client that builds with BuildKit against a running
// engine.
type docker struct {
	bin string
}

// findDocker returns a usable Docker client. Without one, the test skips
// and says why; with CI=true it fails instead, since .ci/run installs and
// starts Docker. MODGATE_TEST_DOCKER names the client to use; otherwise
// the first of docker on PATH and /usr/bin/docker that works is used.
func findDocker(t *testing.T) docker {
	t.Helper()
	candidates := []string{os.Getenv("MODGATE_TEST_DOCKER")}
	if candidates[0] == "" {
		candidates = []string{"docker", "/usr/bin/docker"}
	}
	var reasons []string
	for _, c := range candidates {
		bin, err := exec.LookPath(c)
		if err != nil {
			reasons = append(reasons, fmt.Sprintf("%s: not installed", c))
			continue
		}
		if err := usable(bin); err != nil {
			reasons = append(reasons, fmt.Sprintf("%s: %v", bin, err))
			continue
		}
		return docker{bin: bin}
	}
	why := "no usable Docker client and engine (" + strings.Join(reasons, "; ") + ")"
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true: the Docker tests must run: %s", why)
	}
	t.Skipf("%s; .ci/run installs docker.io and starts dockerd", why)
	return docker{}
}

// usable checks that bin reaches an engine and builds with BuildKit:
// its own (a client before 23.0) or the buildx plugin.
func usable(bin string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "version", "--format", "{{.Client.Version}} {{.Server.Version}}").CombinedOutput()
	if err != nil {
		return fmt.Errorf("no engine: %v: %s", err, firstLine(out))
	}
	client, _, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
	major, err := strconv.Atoi(strings.SplitN(client, ".", 2)[0])
	if err != nil {
		return fmt.Errorf("client version %q: %w", client, err)
	}
	if major < 23 {
		return nil
	}
	if out, err := exec.CommandContext(ctx, bin, "buildx", "version").CombinedOutput(); err != nil {
		return errors.New("client " + client + " builds with BuildKit only through buildx, which is missing: " + firstLine(out))
	}
	return nil
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return s
}

// run runs the client with DOCKER_BUILDKIT=1 and returns its output.
func (d docker) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), dockerTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, d.bin, args...)
	cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=1")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// must runs the client and fails the test if it fails.
func (d docker) must(t *testing.T, args ...string) string {
	t.Helper()
	out, err := d.run(args...)
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, tail(out, 60))
	}
	return out
}

// stdout runs the client and returns its standard output alone.
func (d docker) stdout(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), dockerTimeout)
	defer cancel()
	var stderr strings.Builder
	cmd := exec.CommandContext(ctx, d.bin, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{"..."}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// standIns builds the local stand-ins of the Dockerfile's base images
// (or keeps the cached ones) with testdata/standins.sh.
func standIns(t *testing.T, d docker) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join("testdata", "standins.sh"), d.bin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("testdata/standins.sh: %v\n%s", err, out)
	}
	t.Logf("stand-in base images:\n%s", out)
}

// freeAddr returns a loopback address on which nothing listened a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// uniqueName is a container or volume name no other run uses.
func uniqueName(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, os.Getpid(), time.Now().UnixNano())
}

// waitFor polls cond every 250ms until it returns true or limit passes.
func waitFor(limit time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(250 * time.Millisecond)
	}
}
