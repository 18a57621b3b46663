package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// envMap turns a KEY=value list into a getenv function; the last wins.
func envMap(list []string) env {
	m := map[string]string{}
	for _, kv := range list {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return func(k string) string { return m[k] }
}

// runDoctor runs doctor for a client and returns its report and error.
func runDoctor(t *testing.T, c *goClient, g *gateProc, module string) (report, error) {
	t.Helper()
	var out bytes.Buffer
	o := doctorOptions{admin: "http://" + g.admin, module: module, json: true, timeout: 30 * time.Second}
	in := doctorInputs{getenv: envMap(c.env), goEnv: goEnvJSON(c.env), roots: goRoots}
	err := doctor(context.Background(), o, in, &out)
	var rep report
	if jerr := json.Unmarshal(out.Bytes(), &rep); jerr != nil {
		t.Fatalf("doctor --json: %v\n%s", jerr, out.String())
	}
	return rep, err
}

// verdicts maps check names to verdicts.
func verdicts(rep report) map[string]result {
	m := map[string]result{}
	for _, r := range rep.Checks {
		m[r.Check] = r
	}
	return m
}

// staleNote writes a tree note signed by another key named sum.golang.org
// where the client caches its latest note.
func staleNote(t *testing.T, c *goClient) string {
	t.Helper()
	skey, _, err := note.GenerateKey(rand.Reader, "sum.golang.org")
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := note.Sign(&note.Note{Text: string(tlog.FormatTree(tlog.Tree{N: 7}))}, s)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(filepath.Dir(c.dir), "gopath", "pkg", "sumdb", "sum.golang.org", "latest")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, msg, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestDoctorAgainstGate runs doctor for real clients of a gate in front of
// the fake upstream: healthy ones, one with a stale note, one without the CA.
func TestDoctorAgainstGate(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the clients trust the gate's CA through SSL_CERT_FILE, which only Linux reads")
	}
	up, g := fakeGate(t, filepath.Join(t.TempDir(), "data"))
	const mod = "example.com/lib@v1.0.0"
	empty := filepath.Join(t.TempDir(), "empty.pem")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		mode    clientMode
		gosumdb string
		setup   func(t *testing.T, c *goClient) string // returns what the fix must name
		fails   map[string]string                      // check -> a word of its fix
		warns   []string
	}{
		{name: "healthy, intercepted", mode: viaIntercept, gosumdb: g.verifier},
		{name: "healthy, GOPROXY endpoint", mode: viaGOPROXY, gosumdb: g.verifier},
		{name: "GOPROXY endpoint and GOVULNDB", mode: viaGOPROXY, gosumdb: g.verifier,
			setup: func(t *testing.T, c *goClient) string {
				c.env = append(c.env, "GOVULNDB=http://"+g.listen+"/vuln")
				return ""
			}},
		{name: "default upstream key", mode: viaIntercept, gosumdb: up.VerifierKey(), warns: []string{"GOSUMDB"}},
		{name: "stale note", mode: viaIntercept, gosumdb: g.verifier, setup: staleNote,
			fails: map[string]string{"cached notes": "rm -rf '"}},
		{name: "missing CA", mode: viaIntercept, gosumdb: g.verifier,
			setup: func(t *testing.T, c *goClient) string { c.env = append(c.env, "SSL_CERT_FILE="+empty); return empty },
			fails: map[string]string{"TLS": "/ca.pem", "lookup": ""}, warns: []string{"vulndb"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, g, tc.mode, tc.gosumdb, appMod)
			mustName := ""
			if tc.setup != nil {
				mustName = tc.setup(t, c)
			}
			rep, err := runDoctor(t, c, g, mod)
			if (err != nil) != (len(tc.fails) > 0) {
				t.Errorf("doctor error %v, want one: %v", err, len(tc.fails) > 0)
			}
			for _, r := range rep.Checks {
				want := verdictOK
				if _, ok := tc.fails[r.Check]; ok {
					want = verdictFail
				} else if slices.Contains(tc.warns, r.Check) {
					want = verdictWarn
				}
				if r.Verdict != want {
					t.Errorf("%s: %s %q (fix %q), want %s", r.Check, r.Verdict, r.Message, r.Fix, want)
				}
				if fix, ok := tc.fails[r.Check]; ok && (!strings.Contains(r.Fix, fix) || (r.Check == "cached notes" && !strings.Contains(r.Fix, mustName))) {
					t.Errorf("%s: fix %q lacks %q or %q", r.Check, r.Fix, fix, mustName)
				}
			}
			if len(rep.Checks) != len(doctorChecks) {
				t.Errorf("%d checks reported, want %d", len(rep.Checks), len(doctorChecks))
			}
			if tc.name == "stale note" {
				// The fix works: after it, the go command downloads again.
				if _, err := c.run("mod", "download", mod); err == nil {
					t.Fatalf("go mod download with a stale note succeeded")
				}
				fix := verdicts(rep)["cached notes"].Fix
				if out, err := exec.Command("sh", "-c", fix).CombinedOutput(); err != nil {
					t.Fatalf("%s: %v\n%s", fix, err, out)
				}
				c.must("mod", "download", mod)
			}
		})
	}
}

// TestDoctorBinary runs the real modgate doctor as a client would, with
// its environment, and checks the exit codes and the text report.
func TestDoctorBinary(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the clients trust the gate's CA through SSL_CERT_FILE, which only Linux reads")
	}
	_, g := fakeGate(t, filepath.Join(t.TempDir(), "data"))
	c := newClient(t, g, viaIntercept, g.verifier, appMod)
	doctorCmd := func() (int, string) {
		cmd := exec.Command(binary, "doctor", "--admin", "http://"+g.admin, "--module", "example.com/lib@v1.0.0")
		cmd.Env = c.env
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), string(out)
		} else if err != nil {
			t.Fatal(err)
		}
		return 0, string(out)
	}
	code, out := doctorCmd()
	if code != 0 || !strings.Contains(out, "12 checks: 0 failed, 0 warnings") {
		t.Fatalf("healthy client: exit %d\n%s", code, out)
	}
	staleNote(t, c)
	code, out = doctorCmd()
	if code != 1 || !strings.Contains(out, "fail  cached notes") || !strings.Contains(out, "fix: rm -rf") || !strings.Contains(out, "doctor: 1 of 12 checks failed") {
		t.Fatalf("stale note: exit %d\n%s", code, out)
	}
}

// TestDoctorEnvChecks drives the checks that read only go env and the
// environment, with a fake go env.
func TestDoctorEnvChecks(t *testing.T) {
	_, otherName, err := note.GenerateKey(rand.Reader, "sum.example.com")
	if err != nil {
		t.Fatal(err)
	}
	base := map[string]string{"GOPROXY": "https://proxy.golang.org,direct", "GOSUMDB": goldenVerifier, "GOPATH": t.TempDir(), "GOMODCACHE": t.TempDir()}
	for _, tc := range []struct {
		name   string
		goenv  map[string]string
		env    map[string]string
		check  string
		want   string
		inMsg  string
		fixHas string
	}{
		{"GOPROXY off", map[string]string{"GOPROXY": "off"}, nil, "GOPROXY", verdictFail, "downloads no modules", "go env -w GOPROXY="},
		{"GOPROXY direct first, set in env", map[string]string{"GOPROXY": "direct"}, map[string]string{"GOPROXY": "direct"}, "GOPROXY", verdictWarn, "around the gate", "the environment sets GOPROXY"},
		{"GOPROXY another proxy", map[string]string{"GOPROXY": "https://goproxy.io"}, nil, "GOPROXY", verdictWarn, "neither", ""},
		{"GOPROXY is the gate", map[string]string{"GOPROXY": "http://gate.example.com:3128"}, nil, "GOPROXY", verdictOK, "endpoint", ""},
		{"GOSUMDB off", map[string]string{"GOSUMDB": "off"}, nil, "GOSUMDB", verdictFail, "verifies no checksums", goldenVerifier},
		{"GOSUMDB default", map[string]string{"GOSUMDB": "sum.golang.org"}, nil, "GOSUMDB", verdictWarn, "default key", goldenVerifier},
		{"GOSUMDB other name", map[string]string{"GOSUMDB": otherName}, nil, "GOSUMDB", verdictFail, "gate serves sum.golang.org", ""},
		{"GOSUMDB with URL", map[string]string{"GOSUMDB": goldenVerifier + " https://sum.example.com"}, nil, "GOSUMDB", verdictWarn, "names the URL", ""},
		{"GOSUMDB invalid", map[string]string{"GOSUMDB": "sum.golang.org+zz"}, nil, "GOSUMDB", verdictFail, "GOSUMDB=", ""},
		{"GOSUMDB gate", nil, nil, "GOSUMDB", verdictOK, "the gate's key", ""},
		{"GONOSUMDB star", map[string]string{"GONOSUMDB": "*"}, nil, "GONOSUMDB/GOPRIVATE/GONOPROXY", verdictWarn, "GONOSUMDB=* exempts", "go env -w GONOSUMDB='git.example.com/*'"},
		{"GOPRIVATE github.com", map[string]string{"GOPRIVATE": "github.com"}, nil, "GONOSUMDB/GOPRIVATE/GONOPROXY", verdictWarn, "exempts github.com/spf13/cobra", ""},
		{"GOPRIVATE narrow", map[string]string{"GOPRIVATE": "git.corp.example.com/*", "GONOSUMDB": "git.corp.example.com/*"}, nil, "GONOSUMDB/GOPRIVATE/GONOPROXY", verdictOK, "no public module", ""},
		{"GOFLAGS insecure", map[string]string{"GOFLAGS": "-mod=mod -insecure"}, nil, "GOFLAGS", verdictWarn, "-insecure", "go env -w GOFLAGS=-mod=mod"},
		{"GOFLAGS insecure alone", map[string]string{"GOFLAGS": "-insecure"}, nil, "GOFLAGS", verdictWarn, "-insecure", "go env -u GOFLAGS"},
		{"GOFLAGS insecure alone, in env", map[string]string{"GOFLAGS": "-insecure"}, map[string]string{"GOFLAGS": "-insecure"}, "GOFLAGS", verdictWarn, "-insecure", "remove GOFLAGS from the environment"},
		{"GOFLAGS harmless", map[string]string{"GOFLAGS": "-mod=mod -trimpath"}, nil, "GOFLAGS", verdictOK, "no flag", ""},
		{"GOINSECURE", map[string]string{"GOINSECURE": "example.com"}, nil, "GOINSECURE", verdictWarn, "plain HTTP", "go env -u GOINSECURE"},
		{"HTTPS_PROXY unset", nil, map[string]string{"HTTPS_PROXY": ""}, "HTTPS_PROXY", verdictFail, "directly", "client-env"},
		{"https_proxy lower case", nil, map[string]string{"HTTPS_PROXY": "", "https_proxy": "gate.example.com:3128"}, "HTTPS_PROXY", verdictOK, "http://gate.example.com:3128", ""},
		{"HTTPS_PROXY not the gate", nil, map[string]string{"HTTPS_PROXY": "http://squid.example.com:3128"}, "HTTPS_PROXY", verdictWarn, "is not the gate", "http://gate.example.com:3128"},
		{"NO_PROXY sum.golang.org", nil, map[string]string{"NO_PROXY": "localhost,sum.golang.org,.corp"}, "NO_PROXY", verdictFail, "sum.golang.org sends", "NO_PROXY=localhost,.corp"},
		{"no_proxy star", nil, map[string]string{"no_proxy": "*"}, "NO_PROXY", verdictFail, "* sends", ""},
		{"NO_PROXY other port", nil, map[string]string{"NO_PROXY": "proxy.golang.org:8443,::1"}, "NO_PROXY", verdictOK, "leaves", ""},
		{"stale note unreadable key", map[string]string{"GOSUMDB": "off"}, nil, "cached notes", verdictWarn, "not checked", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			goenv := map[string]string{}
			for k, v := range base {
				goenv[k] = v
			}
			for k, v := range tc.goenv {
				goenv[k] = v
			}
			envm := map[string]string{"HTTPS_PROXY": "http://gate.example.com:3128"}
			for k, v := range tc.env {
				envm[k] = v
			}
			st := &doctorState{
				opts: doctorOptions{proxy: "http://gate.example.com:3128"}, getenv: func(k string) string { return envm[k] }, goenv: goenv,
				gateKey: goldenVerifier, intercept: []string{"proxy.golang.org", "sum.golang.org"},
				module: module.Version{Path: "golang.org/x/mod", Version: "v0.20.0"},
			}
			if err := st.locateGate(); err != nil {
				t.Fatal(err)
			}
			var r result
			for _, c := range doctorChecks {
				if c.name == tc.check {
					r = c.run(context.Background(), st)
				}
			}
			if r.Verdict != tc.want || !strings.Contains(r.Message, tc.inMsg) || !strings.Contains(r.Fix, tc.fixHas) {
				t.Errorf("%s: %s %q fix %q; want %s with %q, fix with %q", tc.check, r.Verdict, r.Message, r.Fix, tc.want, tc.inMsg, tc.fixHas)
			}
		})
	}
}

// TestUnixRootsMatchCryptoX509 checks that doctor reads the roots the way
// crypto/x509 does, for this process's environment.
func TestUnixRootsMatchCryptoX509(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the copy of loadSystemRoots is for Linux")
	}
	sys, err := x509.SystemCertPool()
	if err != nil {
		t.Skipf("no system roots: %v", err)
	}
	mine, err := goRoots(os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	if !mine.Equal(sys) {
		t.Errorf("goRoots(os.Getenv) differs from x509.SystemCertPool()")
	}
	dir := t.TempDir()
	empty, err := goRoots(envMap([]string{"SSL_CERT_FILE=" + filepath.Join(dir, "none.pem"), "SSL_CERT_DIR=" + dir}))
	if err != nil || !empty.Equal(x509.NewCertPool()) {
		t.Errorf("missing SSL_CERT_FILE and empty SSL_CERT_DIR: %v, want an empty pool", err)
	}
}

func TestNoProxyMatches(t *testing.T) {
	for _, tc := range []struct {
		entry, host string
		want        bool
	}{
		{"*", "proxy.golang.org", true},
		{"golang.org", "proxy.golang.org", true},
		{"golang.org", "golang.org", true},
		{".golang.org", "proxy.golang.org", true},
		{".golang.org", "golang.org", false},
		{"*.golang.org", "sum.golang.org", true},
		{"proxy.golang.org:443", "proxy.golang.org", true},
		{"proxy.golang.org:80", "proxy.golang.org", false},
		{"xgolang.org", "proxy.golang.org", false},
		{"PROXY.golang.org", "proxy.golang.org", true},
		{"10.0.0.0/8", "10.1.2.3", true},
		{"10.0.0.0/8", "proxy.golang.org", false},
		{"::1", "proxy.golang.org", false},
		{"", "proxy.golang.org", false},
	} {
		if got := noProxyMatches(tc.entry, tc.host, "443"); got != tc.want {
			t.Errorf("noProxyMatches(%q, %q) = %v, want %v", tc.entry, tc.host, got, tc.want)
		}
	}
}
