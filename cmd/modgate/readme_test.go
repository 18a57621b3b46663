package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/fakeupstream"
)

// readmeModule stands in for the module the README's snippets download;
// the fake upstream publishes it for TestREADMESnippets.
const readmeModule = `golang.org/x/mod v0.20.0: stands in for the module the README downloads.

-- go.mod --
module golang.org/x/mod

go 1.21
-- mod.go --
// Package mod is a stand-in served by fakeupstream.
package mod
`

// runnableRE matches the marker before a README snippet that
// TestREADMESnippets runs (see the README's "Contributing").
var runnableRE = regexp.MustCompile(`^<!-- runnable: (gate|client)( continued)? -->$`)

// snippet is a runnable shell snippet of the README.
type snippet struct {
	line      int    // the line of the fence
	kind      string // "gate" or "client"
	continued bool   // client: on the previous client snippet's machine
	body      string
}

// readmeSnippets extracts the runnable snippets of the README at path. A
// marker not followed by a ```sh fence is an error, so that a marker
// cannot silently stop checking anything.
func readmeSnippets(path string) ([]snippet, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []snippet
	var cur *snippet
	pending := (*snippet)(nil)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case cur != nil && line == "```":
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.body += line + "\n"
		case pending != nil && line == "```sh":
			pending.line, cur, pending = n, pending, nil
		case pending != nil:
			return nil, fmt.Errorf("%s:%d: a runnable marker must be followed by a ```sh fence, not %q", path, n, line)
		default:
			if m := runnableRE.FindStringSubmatch(line); m != nil {
				pending = &snippet{kind: m[1], continued: m[2] != ""}
			} else if strings.HasPrefix(line, "<!-- runnable") {
				return nil, fmt.Errorf("%s:%d: malformed marker %q: want <!-- runnable: gate|client[ continued] -->", path, n, line)
			}
		}
	}
	if cur != nil || pending != nil {
		return nil, fmt.Errorf("%s: a runnable snippet is not closed", path)
	}
	return out, sc.Err()
}

// machine is a home directory with a PATH that holds only modgate, go
// and coreutils: a workstation, or the gate's host.
type machine struct {
	home string
	env  []string
}

// coreutils are the coreutils commands a snippet may use.
var coreutils = []string{"cat", "cp", "mv", "rm", "ln", "ls", "mkdir", "rmdir", "chmod", "touch", "echo", "printf", "test",
	"true", "false", "env", "head", "tail", "tr", "od", "base64", "cut", "wc", "sort", "uniq", "tee", "dirname",
	"basename", "mktemp", "sleep", "date", "pwd", "readlink", "realpath", "sha256sum", "stat"}

// newMachine makes a home directory whose PATH directory holds links to
// the modgate binary, go and coreutils, and nothing else. Telemetry is off.
func newMachine(t *testing.T, home string, extraEnv ...string) *machine {
	t.Helper()
	bin := filepath.Join(home, ".local", "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	link := func(name, target string) {
		if err := os.Symlink(target, filepath.Join(bin, name)); err != nil {
			t.Fatal(err)
		}
	}
	link("modgate", binary)
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	link("go", goBin)
	for _, c := range coreutils {
		if p, err := exec.LookPath(c); err == nil {
			link(c, p)
		}
	}
	m := &machine{home: home, env: append([]string{
		"HOME=" + home, "PATH=" + bin, "XDG_CONFIG_HOME=" + filepath.Join(home, ".config"),
		"GOTOOLCHAIN=local", "LANG=C.UTF-8",
	}, extraEnv...)}
	off := exec.Command(goBin, "telemetry", "off")
	off.Env = m.env
	if out, err := off.CombinedOutput(); err != nil {
		t.Fatalf("go telemetry off: %v\n%s", err, out)
	}
	return m
}

// run runs a snippet with bash -e -o pipefail in the machine's home.
func (m *machine) run(t *testing.T, body string) (string, error) {
	t.Helper()
	script := filepath.Join(t.TempDir(), "snippet.sh")
	if err := os.WriteFile(script, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash is not installed")
	}
	cmd := exec.CommandContext(ctx, bash, "--noprofile", "--norc", "-e", "-o", "pipefail", script)
	cmd.Dir, cmd.Env = m.home, m.env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestREADMESnippets runs the README's runnable shell snippets: "gate"
// snippets on the gate's host (its data directory in the default place,
// MODGATE_ADMIN naming its admin listener), "client" snippets on a fresh
// workstation that has only the binary, go and coreutils. The gate runs
// on ephemeral ports in front of the fake upstream; the snippets' default
// addresses are replaced with its addresses.
func TestREADMESnippets(t *testing.T) {
	snippets, err := readmeSnippets(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if len(snippets) < 5 {
		t.Fatalf("the README has %d runnable snippets; the quick start, workstation, GOPROXY and Docker ones are marked", len(snippets))
	}
	root := t.TempDir()
	gateHome := filepath.Join(root, "gate")
	up := fakeupstream.Start(t, fakeupstream.Options{})
	if _, err := up.AddArchive("golang.org_x_mod_v0.20.0.txt", []byte(readmeModule)); err != nil {
		t.Fatal(err)
	}
	g := startGate(t, filepath.Join(gateHome, ".local", "share", "modgate"), "--upstream", up.URL, "--upstream-sumdb", up.VerifierKey())
	addrs := strings.NewReplacer(
		"127.0.0.1:3128", g.listen, "modgate.example.com:3128", g.listen,
		"127.0.0.1:3129", g.admin, "modgate.example.com:3129", g.admin)
	gateHost := newMachine(t, gateHome, "MODGATE_ADMIN=http://"+g.admin)
	if err := os.Symlink(binary, filepath.Join(gateHome, "modgate")); err != nil { // the quick start's ./modgate
		t.Fatal(err)
	}
	var client *machine
	for i, s := range snippets {
		t.Run(fmt.Sprintf("line%d-%s", s.line, s.kind), func(t *testing.T) {
			m := gateHost
			if s.kind == "client" {
				if !s.continued || client == nil {
					client = newMachine(t, filepath.Join(root, fmt.Sprintf("client%d", i)))
				}
				m = client
			}
			body := addrs.Replace(s.body)
			out, err := m.run(t, body)
			if err != nil {
				t.Fatalf("README.md:%d (%s): %v\n--- snippet\n%s--- output\n%s", s.line, s.kind, err, body, out)
			}
			t.Logf("README.md:%d:\n%s", s.line, out)
		})
	}
}

func TestReadmeSnippetsParse(t *testing.T) {
	tests := []struct {
		name, text, wantErr string
		want                int
	}{
		{"two snippets", "a\n<!-- runnable: gate -->\n```sh\necho 1\n```\n<!-- runnable: client continued -->\n```sh\necho 2\n```\n", "", 2},
		{"unmarked fences are skipped", "```sh\nrm -rf /\n```\n", "", 0},
		{"marker before another fence", "<!-- runnable: gate -->\n```powershell\nx\n```\n", "must be followed", 0},
		{"misspelled marker", "<!-- runnable: server -->\n```sh\nx\n```\n", "malformed marker", 0},
		{"unclosed", "<!-- runnable: gate -->\n```sh\nx\n", "not closed", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "README.md")
			os.WriteFile(path, []byte(tc.text), 0o644)
			got, err := readmeSnippets(path)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, %v; want an error with %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || len(got) != tc.want {
				t.Fatalf("got %d snippets, %v; want %d", len(got), err, tc.want)
			}
		})
	}
}
