package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/")

// Fixed inputs of the golden files. The key's base64 holds both '+' and
// '/', which every shell must keep as they are.
const (
	goldenVerifier = "sum.golang.org+88428aed+AacuaC+19a1/mCg3VWVgcaJc3Asgp1NZqwYa5f/8MfGS"
	goldenProxy    = "http://gate.example.com:3128"
	goldenCA       = "/etc/modgate/ca.pem"
)

// goldenArgs are the client-env arguments of the golden files, reading the
// verifier from testdata/clientenv/data/note.pub.
func goldenArgs(shell string, persist bool) []string {
	args := []string{"client-env", "--shell", shell, "--proxy", goldenProxy, "--ca-file", goldenCA,
		"--data-dir", filepath.Join("testdata", "clientenv", "data"), "--no-proxy", "git.example.com,.golang.org"}
	if persist {
		args = append(args, "--persist")
	}
	return args
}

func TestClientEnvGolden(t *testing.T) {
	for _, shell := range clientShells {
		for _, persist := range []bool{false, true} {
			if persist && shell == "dockerfile" {
				continue
			}
			name := shell
			if persist {
				name += "-persist"
			}
			t.Run(name, func(t *testing.T) {
				code, stdout, stderr := runCmd(t, nil, goldenArgs(shell, persist)...)
				if code != exitOK {
					t.Fatalf("exit %d: %s", code, stderr)
				}
				checkGolden(t, filepath.Join("testdata", "clientenv", name+".golden"), stdout)
				latest := "pkg/sumdb/sum.golang.org/latest"
				if shell == "cmd" {
					latest = `pkg\sumdb\sum.golang.org\latest`
				}
				for _, want := range []string{goldenVerifier, "localhost,127.0.0.1,::1,git.example.com", "http://gate.example.com:3128/.modgate/ca.pem", latest} {
					if !strings.Contains(stdout, want) {
						t.Errorf("output lacks %q", want)
					}
				}
				if strings.Contains(stdout, "NO_PROXY=.golang.org") || strings.Contains(stdout, ",.golang.org") {
					t.Errorf("NO_PROXY keeps .golang.org, which the gate intercepts:\n%s", stdout)
				}
			})
		}
	}
}

// checkGolden compares got with the golden file, or rewrites it with -update.
func checkGolden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run TestClientEnvGolden -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (rerun with -update after checking the change):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func TestClientEnvUsage(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no shell", []string{"client-env", "--verifier", goldenVerifier}, exitUsage, "--shell"},
		{"unknown shell", []string{"client-env", "--shell", "tcsh", "--verifier", goldenVerifier}, exitUsage, "tcsh"},
		{"dockerfile persist", []string{"client-env", "--shell", "dockerfile", "--persist", "--verifier", goldenVerifier}, exitUsage, "--persist"},
		{"bad scope", []string{"client-env", "--shell", "cmd", "--scope", "all", "--verifier", goldenVerifier}, exitUsage, "--scope"},
		{"bad verifier", []string{"client-env", "--shell", "bash", "--verifier", "nope"}, exitUsage, "verifier key"},
		{"no key in data dir", []string{"client-env", "--shell", "bash", "--data-dir", dir}, exitFail, "--verifier"},
		{"bad proxy", []string{"client-env", "--shell", "bash", "--proxy", "ftp://x", "--verifier", goldenVerifier}, exitUsage, "--proxy"},
		{"quote in cmd", []string{"client-env", "--shell", "cmd", "--ca-file", `C:\a"b`, "--proxy", `http://a"b:1`, "--verifier", goldenVerifier}, exitFail, "double quote"},
		{"newline", []string{"client-env", "--shell", "bash", "--ca-file", "a\nb", "--verifier", goldenVerifier}, exitUsage, "control"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCmd(t, nil, tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want exit %d mentioning %q", code, stderr, tc.code, tc.want)
			}
		})
	}
}

// TestClientEnvDefaults reads the key from an initialized data directory
// and the proxy from MODGATE_LISTEN.
func TestClientEnvDefaults(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if code, _, stderr := runCmd(t, nil, "init", "--data-dir", dir); code != exitOK {
		t.Fatalf("init: %s", stderr)
	}
	_, vkey, _ := runCmd(t, nil, "key", "verifier", "--data-dir", dir)
	env := map[string]string{"MODGATE_DATA_DIR": dir, "MODGATE_LISTEN": "10.1.2.3:8080"}
	code, stdout, stderr := runCmd(t, env, "client-env", "--shell", "bash", "--scope", "machine")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"export GOSUMDB='" + strings.TrimSpace(vkey) + "'", "export HTTPS_PROXY='http://10.1.2.3:8080'",
		"export SSL_CERT_FILE='" + filepath.Join(dir, "ca.pem") + "'", "'http://10.1.2.3:8080/.modgate/ca.pem'"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	code, stdout, _ = runCmd(t, env, "client-env", "--shell", "powershell", "--persist", "--scope", "machine", "--admin", "https://admin.example.com:9000/")
	if code != exitOK || !strings.Contains(stdout, "'Machine')") || !strings.Contains(stdout, "'https://admin.example.com:9000/ca.pem'") {
		t.Errorf("powershell --scope machine --admin:\n%s", stdout)
	}
}

// shellCase is a real shell that runs client-env's output.
type shellCase struct {
	shell string
	// dump sources the file $1 and prints the environment, NUL-separated.
	dump []string
	// run runs the commands in the file $1.
	run []string
}

var shellCases = []shellCase{
	{"bash", []string{"bash", "--norc", "--noprofile", "-c", `. "$1" && env -0`, "bash"}, []string{"bash", "--norc", "--noprofile", "-e", "-c", `. "$1"`, "bash"}},
	{"zsh", []string{"zsh", "-f", "-c", `. "$1" && env -0`, "zsh"}, []string{"zsh", "-f", "-e", "-c", `. "$1"`, "zsh"}},
	{"fish", []string{"fish", "--no-config", "-c", `source $argv[1]; and env -0`}, []string{"fish", "--no-config", "-c", `source $argv[1]`}},
}

// TestClientEnvRealShells sources client-env's output in real shells and
// checks that it sets what it says, with values that need quoting; and
// runs its commented commands that delete stale notes.
func TestClientEnvRealShells(t *testing.T) {
	weird := "/tmp/it's a $HOME `x` \\ \"dir\"/ca.pem"
	proxy := "http://user:p%40ss@gate.example.com:3128"
	for _, sc := range shellCases {
		for _, persist := range []bool{false, true} {
			t.Run(sc.shell+map[bool]string{true: "-persist"}[persist], func(t *testing.T) {
				if _, err := exec.LookPath(sc.shell); err != nil {
					t.Skipf("%s is not installed (apt-get install %s to run this check)", sc.shell, sc.shell)
				}
				args := []string{"client-env", "--shell", sc.shell, "--verifier", goldenVerifier, "--proxy", proxy, "--ca-file", weird, "--no-proxy", "*.corp.example.com"}
				if persist {
					args = append(args, "--persist")
				}
				code, out, stderr := runCmd(t, nil, args...)
				if code != exitOK {
					t.Fatalf("exit %d: %s", code, stderr)
				}
				file := filepath.Join(t.TempDir(), "env")
				if err := os.WriteFile(file, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
				got := shellEnv(t, append(sc.dump, file), out)
				for k, want := range map[string]string{"HTTPS_PROXY": proxy, "NO_PROXY": "localhost,127.0.0.1,::1,*.corp.example.com", "GOSUMDB": goldenVerifier, "SSL_CERT_FILE": weird} {
					if got[k] != want {
						t.Errorf("%s: %s=%q, want %q", sc.shell, k, got[k], want)
					}
				}
				checkStaleNoteCommands(t, sc, out)
			})
		}
	}
}

// shellEnv runs argv and parses the NUL-separated environment it prints.
func shellEnv(t *testing.T, argv []string, script string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "XDG_CONFIG_HOME=" + t.TempDir()}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s\nscript:\n%s", argv[0], err, stderr.String(), script)
	}
	env := map[string]string{}
	for _, kv := range strings.Split(string(out), "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	return env
}

// checkStaleNoteCommands runs the commented rm line of the output in the
// shell, with GOPATH and GOMODCACHE holding spaces, and checks that it
// deletes the cached notes and nothing else.
func checkStaleNoteCommands(t *testing.T, sc shellCase, out string) {
	t.Helper()
	var cmds []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "#   rm ") {
			cmds = append(cmds, strings.TrimPrefix(l, "#   "))
		}
	}
	if len(cmds) != 1 {
		t.Fatalf("want one commented rm line, found %d:\n%s", len(cmds), out)
	}
	root := filepath.Join(t.TempDir(), "a dir")
	gopath, modcache := filepath.Join(root, "go path"), filepath.Join(root, "mod cache")
	latest := filepath.Join(gopath, "pkg", "sumdb", "sum.golang.org", "latest")
	lookup := filepath.Join(modcache, "cache", "download", "sumdb", "sum.golang.org", "lookup", "example.com", "lib@v1.0.0")
	keep := filepath.Join(modcache, "cache", "download", "sumdb", "sum.golang.org", "tile", "8", "0", "000")
	for _, f := range []string{latest, lookup, keep} {
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(t.TempDir(), "rm")
	if err := os.WriteFile(file, []byte(cmds[0]+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, sc.run[0], append(sc.run[1:], file)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + clientHome, "XDG_CONFIG_HOME=" + filepath.Join(clientHome, ".config"),
		"GOPATH=" + gopath, "GOMODCACHE=" + modcache, "GOTOOLCHAIN=local", "GOFLAGS=", "GOENV=off"}
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cmds[0], err, b)
	}
	for f, want := range map[string]bool{latest: false, filepath.Dir(lookup): false, keep: true} {
		if _, err := os.Stat(f); (err == nil) != want {
			t.Errorf("after %q: %s exists=%v, want %v", cmds[0], f, err == nil, want)
		}
	}
}
