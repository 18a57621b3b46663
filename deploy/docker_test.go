package deploy

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/modgate/modgate/internal/fakeupstream"
)

// The names the tests give what they build and run.
const (
	imageTag    = "modgate:test"        // the repository's Dockerfile
	clientTag   = "modgate-client:test" // the small Go project built through the gate
	testVersion = "v0.0.0-dockertest"   // --build-arg VERSION
	dataDir     = "/var/lib/modgate"    // the image's data directory (its VOLUME)
)

// gateContainer is the image running as the gate, on the host's network.
type gateContainer struct {
	name, volume string
	listen       string // host:port of the proxy listener
	admin        string // host:port of the admin listener
}

// TestDocker builds the repository's Dockerfile unchanged on local
// stand-ins of its base images, runs the image as the gate in front of
// the fake upstream, and runs a Docker build of a small Go project through
// it. Every container uses the host's network: all traffic stays on
// loopback.
func TestDocker(t *testing.T) {
	d := findDocker(t)
	standIns(t, d)
	d.must(t, "build", "--network", "host", "--build-arg", "VERSION="+testVersion, "-t", imageTag, repoRoot)

	t.Run("version", func(t *testing.T) {
		out := d.stdout(t, "run", "--rm", "--network", "none", imageTag, "version")
		if !strings.Contains(out, testVersion) {
			t.Errorf("docker run %s version printed %q, want %s", imageTag, out, testVersion)
		}
	})

	t.Run("image config", func(t *testing.T) {
		got := d.stdout(t, "image", "inspect", "-f",
			"{{.Config.User}} {{json .Config.Volumes}} {{json .Config.Healthcheck.Test}} {{json .Config.Cmd}}", imageTag)
		want := `65532:65532 {"/var/lib/modgate":{}} ["CMD","/modgate","healthcheck"] ["serve"]`
		if strings.TrimSpace(got) != want {
			t.Errorf("image config %s, want %s", got, want)
		}
	})

	up := fakeupstream.Start(t, fakeupstream.Options{})
	g := runGate(t, d, up)

	t.Run("data directory", func(t *testing.T) { checkDataDir(t, d, g) })
	t.Run("readyz", func(t *testing.T) {
		if code, body := get(t, "http://"+g.admin+"/readyz"); code != http.StatusOK {
			t.Errorf("/readyz: %d %s", code, body)
		}
	})
	t.Run("healthcheck", func(t *testing.T) { checkHealthy(t, d, g) })
	t.Run("ca cert and key verifier", func(t *testing.T) { checkCLI(t, d, g) })
	t.Run("docker build through the gate", func(t *testing.T) { checkClientBuild(t, d, g, up) })
}

// runGate runs the image as uid 65532 with a new named volume, listening
// on free loopback ports, with its own HEALTHCHECK every second, and waits
// until /readyz answers 200.
func runGate(t *testing.T, d docker, up *fakeupstream.Server) gateContainer {
	t.Helper()
	g := gateContainer{name: uniqueName("modgate-test"), volume: uniqueName("modgate-test-data")}
	g.listen, g.admin = freeAddr(t), freeAddr(t)
	d.must(t, "volume", "create", g.volume)
	t.Cleanup(func() { d.run("volume", "rm", "-f", g.volume) })
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := d.run("logs", "--tail", "40", g.name)
			t.Logf("docker logs %s:\n%s", g.name, out)
		}
		d.run("rm", "-f", g.name)
	})
	d.must(t, "run", "-d", "--name", g.name, "--network", "host", "--user", "65532:65532",
		"--health-interval", "1s", "-v", g.volume+":"+dataDir,
		"-e", "MODGATE_LISTEN="+g.listen, "-e", "MODGATE_ADMIN_LISTEN="+g.admin,
		imageTag, "serve", "--upstream", up.URL, "--upstream-sumdb", up.VerifierKey())
	ready := waitFor(60*time.Second, func() bool {
		resp, err := http.Get("http://" + g.admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if !ready {
		t.Fatalf("the gate's /readyz did not answer 200 in 60s")
	}
	return g
}

// checkDataDir checks that the new named volume became a data directory
// of mode 0700 owned by 65532, with private keys of mode 0600. The
// distroless image has no shell, so the golang stand-in looks.
func checkDataDir(t *testing.T, d docker, g gateContainer) {
	out := d.stdout(t, "run", "--rm", "--network", "none", "-v", g.volume+":/data:ro", "golang:1.26",
		"stat", "-c", "%a %u:%g %n", "/data", "/data/ca-key.pem", "/data/note.key", "/data/admin.token")
	want := []string{
		"700 65532:65532 /data", "600 65532:65532 /data/ca-key.pem",
		"600 65532:65532 /data/note.key", "600 65532:65532 /data/admin.token",
	}
	if got := strings.Split(strings.TrimSpace(out), "\n"); !slices.Equal(got, want) {
		t.Errorf("data directory:\n%s\nwant:\n%s", out, strings.Join(want, "\n"))
	}
}

// checkHealthy waits for the container's own HEALTHCHECK (modgate
// healthcheck, every second here) to report healthy.
func checkHealthy(t *testing.T, d docker, g gateContainer) {
	var status string
	healthy := waitFor(60*time.Second, func() bool {
		status = strings.TrimSpace(d.stdout(t, "inspect", "-f", "{{.State.Health.Status}}", g.name))
		return status == "healthy"
	})
	if !healthy {
		t.Errorf("health status %q after 60s: %s", status, d.stdout(t, "inspect", "-f", "{{json .State.Health}}", g.name))
	}
}

// checkCLI runs `ca cert` and `key verifier` in new containers on the
// gate's volume, and compares them with what the running gate serves.
func checkCLI(t *testing.T, d docker, g gateContainer) {
	caPEM := d.stdout(t, "run", "--rm", "--network", "none", "-v", g.volume+":"+dataDir, imageTag, "ca", "cert")
	block, _ := pem.Decode([]byte(caPEM))
	if block == nil {
		t.Fatalf("ca cert printed no PEM block:\n%s", caPEM)
	}
	if _, err := x509.ParseCertificate(block.Bytes); err != nil {
		t.Errorf("ca cert: %v", err)
	}
	if _, served := get(t, "http://"+g.admin+"/ca.pem"); served != caPEM {
		t.Errorf("ca cert printed\n%s\nthe gate serves /ca.pem\n%s", caPEM, served)
	}
	verifier := strings.TrimSpace(d.stdout(t, "run", "--rm", "--network", "none", "-v", g.volume+":"+dataDir, imageTag,
		"key", "verifier"))
	v, err := note.NewVerifier(verifier)
	if err != nil {
		t.Fatalf("key verifier printed %q: %v", verifier, err)
	}
	if v.Name() != "sum.golang.org" {
		t.Errorf("verifier key named %q, want sum.golang.org", v.Name())
	}
	if _, served := get(t, "http://"+g.admin+"/verifier.txt"); strings.TrimSpace(served) != verifier {
		t.Errorf("key verifier printed %q, the gate serves /verifier.txt %q", verifier, served)
	}
}

// get fetches url and returns its status and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// clientGoMod is the small Go project's go.mod: modules of the fake
// upstream, so that every download goes through the gate to it.
const clientGoMod = `module example.com/app

go 1.21

require (
	example.com/lib v1.2.0
	example.com/dep v1.0.0 // indirect
)
`

// clientSteps follow the client-env lines in the project's Dockerfile:
// download the modules, then print the signatures of the stored tree note.
const clientSteps = `WORKDIR /src
COPY go.mod ./
RUN go mod download -x
RUN grep '^— ' "$(go env GOPATH)/pkg/sumdb/sum.golang.org/latest"
`

// checkClientBuild makes a Dockerfile from `modgate client-env --shell
// dockerfile` with the CA in the build context, and builds it with
// HTTPS_PROXY pointing at the gate: the tree note carries both
// signatures. The same build with a GOSUMDB key that is not the gate's
// fails.
func checkClientBuild(t *testing.T, d docker, g gateContainer, up *fakeupstream.Server) {
	proxyURL := "http://" + g.listen
	lines := d.stdout(t, "run", "--rm", "--network", "none", "-v", g.volume+":"+dataDir, imageTag,
		"client-env", "--shell", "dockerfile", "--proxy", proxyURL)
	_, verifier := get(t, "http://"+g.admin+"/verifier.txt")
	verifier = strings.TrimSpace(verifier)
	_, caPEM := get(t, "http://"+g.admin+"/ca.pem")
	build := func(t *testing.T, dockerfile string) (string, error) {
		dir := t.TempDir()
		for name, body := range map[string]string{"Dockerfile": dockerfile, "go.mod": clientGoMod, "modgate-ca.pem": caPEM} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		t.Cleanup(func() { d.run("rmi", "-f", clientTag) })
		return d.run("build", "--no-cache", "--progress", "plain", "--network", "host",
			"--build-arg", "HTTPS_PROXY="+proxyURL, "--build-arg", "NO_PROXY=localhost,127.0.0.1,::1",
			"-t", clientTag, dir)
	}
	dockerfile := "FROM golang:1.26\n" + lines + clientSteps
	if !strings.Contains(dockerfile, `ENV GOSUMDB="`+verifier+`"`) {
		t.Fatalf("client-env lines lack ENV GOSUMDB=%q:\n%s", verifier, lines)
	}

	t.Run("gate's key", func(t *testing.T) {
		out, err := build(t, dockerfile)
		if err != nil {
			t.Fatalf("docker build: %v\n%s\nDockerfile:\n%s", err, tail(out, 60), dockerfile)
		}
		if !strings.Contains(out, "https://proxy.golang.org/example.com/lib/@v/v1.2.0.zip") {
			t.Errorf("go mod download -x shows no intercepted download of example.com/lib:\n%s", tail(out, 60))
		}
		checkSignatures(t, out, verifier, up.VerifierKey())
	})

	t.Run("another key", func(t *testing.T) {
		_, other, err := note.GenerateKey(rand.Reader, "sum.golang.org")
		if err != nil {
			t.Fatal(err)
		}
		out, err := build(t, strings.Replace(dockerfile, verifier, other, 1))
		if err == nil {
			t.Fatalf("docker build with GOSUMDB=%s (not the gate's key) succeeded:\n%s", other, tail(out, 40))
		}
		i := strings.Index(out, "no verifiable signatures")
		if i < 0 || !strings.Contains(out, "verifying") {
			t.Fatalf("the build log lacks go's verification error:\n%s", tail(out, 40))
		}
		start := strings.LastIndex(out[:i], "\n") + 1
		end := i + strings.Index(out[i:]+"\n", "\n")
		t.Logf("build log: %s", out[start:end])
	})
}

// sigLine matches a note signature line printed by a RUN step in a
// --progress plain build log.
var sigLine = regexp.MustCompile(`— sum\.golang\.org ([A-Za-z0-9+/=]+)\s*$`)

// checkSignatures checks that the build log shows exactly two signatures
// on the stored tree note, by the keys named.
func checkSignatures(t *testing.T, log string, keys ...string) {
	t.Helper()
	var got []uint32
	for _, line := range strings.Split(log, "\n") {
		m := sigLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		sig, err := base64.StdEncoding.DecodeString(m[1])
		if err != nil || len(sig) < 4 {
			t.Fatalf("signature line %q: %v", line, err)
		}
		got = append(got, binary.BigEndian.Uint32(sig))
		t.Logf("build log: %s", strings.TrimSpace(line))
	}
	var want []uint32
	for _, k := range keys {
		v, err := note.NewVerifier(k)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, v.KeyHash())
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("tree note signed by key hashes %08x, want %08x:\n%s", got, want, tail(log, 40))
	}
}
