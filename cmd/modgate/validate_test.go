package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// runBinary runs the modgate binary with args and env (added to a clean
// HOME), and returns its exit code and output.
func runBinary(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append([]string{"HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH")}, env...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), string(out)
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, string(out)
}

// TestServeValidatesBeforeTouchingDisk runs serve with one bad setting
// each: it exits 2 naming the setting, creates no data directory and
// prints no client lines.
func TestServeValidatesBeforeTouchingDisk(t *testing.T) {
	cfgDir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(cfgDir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	listCfg := write("list.yaml", "listen:\n  - 127.0.0.1:0\n  - 127.0.0.1:1\n")
	okListCfg := write("oklist.yaml", "listen: 127.0.0.1:1\nprivate:\n  - a.example/*\n  - b.example/*\nlist-ttl: 1m\n")
	badPolicy := write("policy.yaml", "mode: enforce\nrules:\n  - id: x\n    action: deny\n")
	tests := []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"listen without port", []string{"--listen", "127.0.0.1"}, nil, "--listen \"127.0.0.1\": want host:port"},
		{"listen port out of range", []string{"--listen", "127.0.0.1:70000"}, nil, "not a number from 0 to 65535"},
		{"admin-listen without port", []string{"--admin-listen", "localhost"}, nil, "--admin-listen"},
		{"debug-listen bad", []string{"--debug-listen", "x"}, nil, "--debug-listen"},
		{"listen from the environment", nil, []string{"MODGATE_LISTEN=a,b"}, "--listen"},
		{"a YAML list for listen", []string{"--config", listCfg}, nil, "listen takes one value, not a list"},
		{"a bad value after good lists", []string{"--config", okListCfg, "--parent-proxy", "ftp://x"}, nil, "--parent-proxy"},
		{"missing upstream CA", []string{"--upstream-ca", filepath.Join(cfgDir, "none.pem")}, nil, "--upstream-ca"},
		{"allow-range", []string{"--allow-range", "10.0.0.0/33"}, nil, "--allow-range"},
		{"missing policy", []string{"--policy", filepath.Join(cfgDir, "none.yaml")}, nil, "--policy"},
		{"invalid policy", []string{"--policy", badPolicy}, nil, "modgate policy check"},
		{"two errors at once", []string{"--listen", "x", "--admin-listen", "y"}, nil, "--admin-listen \"y\""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dataDir := filepath.Join(t.TempDir(), "data")
			code, out := runBinary(t, tc.env, append([]string{"serve", "--data-dir", dataDir}, tc.args...)...)
			if code != exitUsage || !strings.Contains(out, tc.want) {
				t.Errorf("exit %d, want 2 with %q:\n%s", code, tc.want, out)
			}
			if _, err := os.Stat(dataDir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the data directory was created: %v", err)
			}
			if strings.Contains(out, "HTTPS_PROXY") || strings.Contains(out, "initialized") {
				t.Errorf("printed client lines:\n%s", out)
			}
		})
	}
	dataDir := filepath.Join(t.TempDir(), "data")
	if code, out := runBinary(t, nil, "init", "--data-dir", dataDir, "--listen", "gate.example.com"); code != exitUsage || !strings.Contains(out, "--listen") {
		t.Errorf("init --listen without port: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(dataDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("init created the data directory: %v", err)
	}
}
