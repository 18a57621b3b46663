package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"golang.org/x/mod/module"

	"github.com/modgate/modgate/internal/advice"
)

// TestAdviceAgrees checks that the README's advice table, client-env and
// doctor's fixes say what internal/advice says.
func TestAdviceAgrees(t *testing.T) {
	t.Run("README table", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
		if err != nil {
			t.Fatal(err)
		}
		head, rest, ok1 := strings.Cut(string(b), "<!-- advice:begin -->\n")
		table, tail, ok2 := strings.Cut(rest, "<!-- advice:end -->")
		if *update && ok1 && ok2 {
			table = advice.Markdown() + "\n"
			b = []byte(head + "<!-- advice:begin -->\n" + table + "<!-- advice:end -->" + tail)
			if err := os.WriteFile(filepath.Join("..", "..", "README.md"), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if !ok1 || !ok2 || table != advice.Markdown()+"\n" {
			t.Errorf("README.md between <!-- advice:begin --> and <!-- advice:end --> must be (go test -run TestAdviceAgrees -update writes it):\n%s", advice.Markdown())
		}
		if strings.Contains(string(b), "proxy.golang.org,direct") {
			t.Errorf("README.md recommends a GOPROXY with ,direct")
		}
	})
	t.Run("client-env sets exactly the advised variables", func(t *testing.T) {
		for _, shell := range []string{"bash", "zsh", "fish"} {
			code, stdout, stderr := runCmd(t, nil, goldenArgs(shell, false)...)
			if code != exitOK {
				t.Fatalf("client-env: %s", stderr)
			}
			var set []string
			for _, m := range regexp.MustCompile(`(?m)^(?:export|set -gx) ([A-Z_]+)[= ]`).FindAllStringSubmatch(stdout, -1) {
				set = append(set, m[1])
			}
			if !slices.Equal(set, advice.ClientEnvVars()) {
				t.Errorf("%s: client-env sets %v, advice says %v", shell, set, advice.ClientEnvVars())
			}
		}
	})
	t.Run("doctor's fixes", func(t *testing.T) {
		for _, tc := range []struct {
			check string
			goenv map[string]string
			env   map[string]string
			want  []string // in the fix
			not   []string // never in the fix
		}{
			{"GOPROXY", map[string]string{"GOPROXY": "off"}, nil, []string{"GOPROXY=" + advice.GOPROXY("")}, []string{"direct", "client-env"}},
			{"GOPROXY", map[string]string{"GOPROXY": "direct"}, map[string]string{"GOPROXY": "direct"}, []string{advice.GOPROXY("")}, []string{",direct", "client-env"}},
			{"GOPROXY", map[string]string{"GOPROXY": "off"}, map[string]string{"HTTPS_PROXY": ""}, []string{"GOPROXY=" + advice.GOPROXY("http://gate.example.com:3128")}, []string{"direct"}},
			{"GONOSUMDB/GOPRIVATE/GONOPROXY", map[string]string{"GONOSUMDB": "*"}, nil, []string{advice.PrivateVar + "='" + advice.PrivateExample + "'"}, []string{"GOPRIVATE="}},
			{"GOFLAGS", map[string]string{"GOFLAGS": "-insecure"}, map[string]string{"GOFLAGS": "-insecure"}, []string{"remove GOFLAGS"}, []string{"change it there to  ", "client-env"}},
			{"GOSUMDB", map[string]string{"GOSUMDB": "off"}, map[string]string{"GOSUMDB": "off"}, []string{goldenVerifier, "client-env"}, nil},
		} {
			r := runCheck(t, tc.check, tc.goenv, tc.env)
			for _, w := range tc.want {
				if !strings.Contains(r.Fix, w) {
					t.Errorf("%s %v %v: fix %q lacks %q", tc.check, tc.goenv, tc.env, r.Fix, w)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(r.Fix, n) {
					t.Errorf("%s %v %v: fix %q has %q", tc.check, tc.goenv, tc.env, r.Fix, n)
				}
			}
		}
	})
}

// runCheck runs one doctor check on a go env and environment over a
// client of gate.example.com:3128 whose GOSUMDB is the gate's key.
func runCheck(t *testing.T, check string, goenv, env map[string]string) result {
	t.Helper()
	ge := map[string]string{"GOPROXY": "https://proxy.golang.org", "GOSUMDB": goldenVerifier, "GOPATH": t.TempDir(), "GOMODCACHE": t.TempDir()}
	for k, v := range goenv {
		ge[k] = v
	}
	e := map[string]string{"HTTPS_PROXY": "http://gate.example.com:3128"}
	for k, v := range env {
		e[k] = v
	}
	st := &doctorState{
		opts: doctorOptions{proxy: "http://gate.example.com:3128"}, getenv: func(k string) string { return e[k] }, goenv: ge,
		gateKey: goldenVerifier, intercept: []string{"proxy.golang.org", "sum.golang.org"},
		module: module.Version{Path: "golang.org/x/mod", Version: "v0.20.0"},
	}
	if err := st.locateGate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range doctorChecks {
		if c.name == check {
			return c.run(context.Background(), st)
		}
	}
	t.Fatalf("no check %s", check)
	return result{}
}

// TestDoctorBinaryGOPROXYOverTLS runs the binary's doctor, with no
// --admin, for a correct client of the gate's HTTPS GOPROXY endpoint: no
// warning (the TLS check checks the gate's own certificate), and the key
// read from the endpoint's /.modgate/verifier.txt.
func TestDoctorBinaryGOPROXYOverTLS(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the client trusts the gate's CA through SSL_CERT_FILE, which only Linux reads")
	}
	dir := filepath.Join(t.TempDir(), "data")
	_, g := fakeGate(t, dir, "--tls-listen", "127.0.0.1:0", "--tls-names", "localhost")
	_, port, _ := net.SplitHostPort(g.tlsListen)
	c := newClient(t, g, viaGOPROXY, g.verifier, appMod)
	c.env = append(c.env, "GOPROXY=https://localhost:"+port)
	cmd := exec.Command(binary, "doctor", "--strict", "--module", "example.com/lib@v1.0.0")
	cmd.Env = c.env
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ok    TLS") || !strings.Contains(string(out), "0 failed, 0 warnings") ||
		!strings.Contains(string(out), "https://localhost:"+port+"/.modgate/verifier.txt") {
		t.Fatalf("doctor --strict: %v\n%s", err, out)
	}
}
