package main

import (
	"bytes"
	"context"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runCmd runs the command line with env and returns the exit code and output.
func runCmd(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	code := run(ctx, args, func(k string) string { return env[k] }, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestInitCreatesSecretsOnceAndPrintsClientLines(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	code, _, stderr := runCmd(t, nil, "init", "--data-dir", dir)
	if code != exitOK {
		t.Fatalf("init: exit %d\n%s", code, stderr)
	}
	for _, want := range []string{"HTTPS_PROXY=http://127.0.0.1:3128", "SSL_CERT_FILE=" + dir + "/ca.pem",
		"GOSUMDB='sum.golang.org+", "Import-Certificate", "pkg/sumdb/sum.golang.org/latest"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("init output lacks %q:\n%s", want, stderr)
		}
	}
	modes := map[string]os.FileMode{
		"":            0o700,
		"ca-key.pem":  0o600,
		"note.key":    0o600,
		"admin.token": 0o600,
		"ca.pem":      0o644,
		"note.pub":    0o644,
	}
	before := map[string][]byte{}
	for name, mode := range modes {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s has mode %v, want %v", name, fi.Mode().Perm(), mode)
		}
		if name != "" {
			before[name], _ = os.ReadFile(filepath.Join(dir, name))
		}
	}
	code, _, stderr = runCmd(t, nil, "init", "--data-dir", dir)
	if code != exitOK || !strings.Contains(stderr, "already initialized") {
		t.Fatalf("second init: exit %d\n%s", code, stderr)
	}
	for name, b := range before {
		if after, _ := os.ReadFile(filepath.Join(dir, name)); !bytes.Equal(after, b) {
			t.Errorf("second init changed %s", name)
		}
	}

	code, stdout, _ := runCmd(t, nil, "key", "verifier", "--data-dir", dir)
	if code != exitOK || strings.Count(stdout, "\n") != 1 || !strings.HasPrefix(stdout, "sum.golang.org+") {
		t.Errorf("key verifier: exit %d, output %q", code, stdout)
	}
	code, stdout, _ = runCmd(t, map[string]string{"MODGATE_DATA_DIR": dir}, "ca", "cert")
	if block, _ := pem.Decode([]byte(stdout)); code != exitOK || block == nil || block.Type != "CERTIFICATE" {
		t.Errorf("ca cert (data dir from MODGATE_DATA_DIR): exit %d, output %q", code, stdout)
	}
}

func TestServeRefusesReadableSecrets(t *testing.T) {
	for _, secret := range []string{"note.key", "ca-key.pem", "admin.token"} {
		t.Run(secret, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			if code, _, stderr := runCmd(t, nil, "init", "--data-dir", dir); code != exitOK {
				t.Fatalf("init: %s", stderr)
			}
			if err := os.Chmod(filepath.Join(dir, secret), 0o644); err != nil {
				t.Fatal(err)
			}
			code, _, stderr := runCmd(
				t,
				nil,
				"serve",
				"--data-dir",
				dir,
				"--listen",
				"127.0.0.1:0",
				"--admin-listen",
				"127.0.0.1:0",
			)
			if code != exitFail || !strings.Contains(stderr, secret) || !strings.Contains(stderr, "chmod 600") {
				t.Errorf("serve with a readable %s: exit %d\n%s", secret, code, stderr)
			}
		})
	}
}

func TestSettingsFromFlagsEnvAndConfig(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "modgate.yaml")
	tests := []struct {
		name     string
		config   string
		env      map[string]string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"unknown config setting", "listne: 1.2.3.4:1\n", nil, nil, exitUsage, `unknown setting "listne"`},
		{"bad config value", "offline: maybe\n", nil, nil, exitUsage, "offline"},
		{"bad env value", "", map[string]string{"MODGATE_OFFLINE": "maybe"}, nil, exitUsage, "MODGATE_OFFLINE"},
		{"bad upstream from config", "upstream: ftp://example.com\n", nil, nil, exitUsage, "--upstream"},
		{
			"env beats config",
			"upstream: ftp://example.com\n",
			map[string]string{"MODGATE_UPSTREAM": "gopher://x"},
			nil,
			exitUsage,
			"gopher://x",
		},
		{
			"flag beats env",
			"",
			map[string]string{"MODGATE_UPSTREAM": "gopher://x"},
			[]string{"--upstream", "mailto:y"},
			exitUsage,
			"mailto:y",
		},
		{"bad sumdb key", "", nil, []string{"--upstream-sumdb", "nonsense"}, exitUsage, "invalid verifier key"},
		{"unknown flag", "", nil, []string{"--no-such-flag"}, exitUsage, "unknown flag"},
		{"bad log level", "", nil, []string{"--log-level", "loud"}, exitUsage, "--log-level"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"serve", "--data-dir", filepath.Join(dir, "data")}
			if tc.config != "" {
				if err := os.WriteFile(cfg, []byte(tc.config), 0o644); err != nil {
					t.Fatal(err)
				}
				args = append(args, "--config", cfg)
			}
			code, _, stderr := runCmd(t, tc.env, append(args, tc.args...)...)
			if code != tc.wantCode || !strings.Contains(stderr, tc.wantErr) {
				t.Errorf("exit %d (want %d), stderr:\n%s\nwant it to mention %q", code, tc.wantCode, stderr, tc.wantErr)
			}
		})
	}
}

// TestUsageExitCodes checks that every kind of command-line mistake exits
// 2 with cobra's message (through SetFlagErrorFunc, the Args validators
// and Find), and that a command that runs and fails exits 1.
func TestUsageExitCodes(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name   string
		args   []string
		want   int
		wantIn string
	}{
		{"unknown command", []string{"bogus"}, exitUsage, `unknown command "bogus"`},
		{"unknown subcommand of NoArgs", []string{"version", "extra"}, exitUsage, `unknown command "extra"`},
		{"too many args", []string{"ca", "issue-client", "a", "b", "--data-dir", dir}, exitUsage, "accepts 1 arg"},
		{"too few args", []string{"ca", "issue-client", "--data-dir", dir}, exitUsage, "accepts 1 arg"},
		{"unknown flag", []string{"version", "--nope"}, exitUsage, "unknown flag"},
		{"flag needs an argument", []string{"key", "verifier", "--data-dir"}, exitUsage, "flag needs an argument"},
		{"invalid flag value", []string{"healthcheck", "--timeout", "soon"}, exitUsage, "invalid argument"},
		{"runs and fails", []string{"key", "verifier", "--data-dir", dir}, exitFail, "note.pub"},
		{"ok", []string{"version"}, exitOK, "modgate "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, code := runCLI(t, tt.args...)
			if code != tt.want || !strings.Contains(out, tt.wantIn) {
				t.Errorf("modgate %v: exit %d, want %d, with %q in:\n%s", tt.args, code, tt.want, tt.wantIn, out)
			}
		})
	}
}
