package main

import (
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestParentProxyCredentials runs the real binary with the parent proxy's
// credentials in the URL, in a file and in the environment: each carries
// the upstream fetches, and /debug/pprof/cmdline never shows the password.
func TestParentProxyCredentials(t *testing.T) {
	parent := startParentProxy(t, "corp", "s3cret")
	plain := "http://" + parent.addr
	withCreds := (&url.URL{Scheme: "http", User: url.UserPassword("corp", "s3cret"), Host: parent.addr}).String()
	credFile := filepath.Join(t.TempDir(), "parent.auth")
	if err := os.WriteFile(credFile, []byte("corp:s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		env  string // MODGATE_PARENT_PROXY_AUTH
		args []string
	}{
		{"in the URL", "", []string{"--parent-proxy", withCreds}},
		{"in the URL, --flag=value", "", []string{"--parent-proxy=" + withCreds}},
		{"in a file", "", []string{"--parent-proxy", plain, "--parent-proxy-auth-file", credFile}},
		{"in the environment", "corp:s3cret", []string{"--parent-proxy", plain}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(parentProxyAuthEnv, tt.env)
			up, g := fakeGate(t, filepath.Join(t.TempDir(), "data"), append(tt.args, "--debug-listen", "127.0.0.1:0")...)
			r, err := http.Get("http://" + g.listen + "/example.com/dep/@v/list")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(r.Body)
			r.Body.Close()
			if r.StatusCode != http.StatusOK || !strings.Contains(strings.Join(parent.requests(), "\n"), "GET "+up.URL+"/example.com/dep/@v/list") {
				t.Fatalf("list through the parent proxy: %d %q; the parent saw %q", r.StatusCode, body, parent.requests())
			}
			m := regexp.MustCompile(`"msg":"modgate debug listener","debug":"([^"]+)"`).FindStringSubmatch(g.Log())
			if m == nil {
				t.Fatalf("no debug listener in the log:\n%s", g.Log())
			}
			resp, err := http.Get("http://" + m[1] + "/debug/pprof/cmdline")
			if err != nil {
				t.Fatal(err)
			}
			cmdline, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !strings.Contains(string(cmdline), "--parent-proxy") || strings.Contains(string(cmdline), "s3cret") {
				t.Errorf("/debug/pprof/cmdline: %d %q; want the command line without the password", resp.StatusCode, cmdline)
			}
			if strings.Contains(g.Log(), "s3cret") {
				t.Errorf("the log shows the password")
			}
		})
	}
}

// TestParentProxyCredentialsRefused checks the credential sources that
// serve refuses before it listens, without showing the password.
func TestParentProxyCredentialsRefused(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open.auth")
	if err := os.WriteFile(open, []byte("corp:s3cret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "good.auth")
	if err := os.WriteFile(good, []byte("corp:s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	noColon := filepath.Join(dir, "nocolon.auth")
	if err := os.WriteFile(noColon, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"file readable by others", nil, []string{"--parent-proxy", "http://127.0.0.1:9", "--parent-proxy-auth-file", open}, "chmod 600"},
		{"URL and file", nil, []string{"--parent-proxy", "http://corp:s3cret@127.0.0.1:9", "--parent-proxy-auth-file", good}, "give them once"},
		{"file and environment", map[string]string{parentProxyAuthEnv: "corp:s3cret"}, []string{"--parent-proxy", "http://127.0.0.1:9", "--parent-proxy-auth-file", good}, "give them once"},
		{"no user", nil, []string{"--parent-proxy", "http://127.0.0.1:9", "--parent-proxy-auth-file", noColon}, "want user:password"},
		{"no parent proxy", map[string]string{parentProxyAuthEnv: "corp:s3cret"}, nil, "without --parent-proxy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"serve", "--data-dir", filepath.Join(t.TempDir(), "data"), "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"}, tt.args...)
			code, stdout, stderr := runCmd(t, tt.env, args...)
			if code == 0 || !strings.Contains(stderr, tt.want) {
				t.Errorf("serve %q: exit %d, stderr %q; want a failure mentioning %q", tt.args, code, stderr, tt.want)
			}
			if strings.Contains(stdout+stderr, "s3cret") {
				t.Errorf("the output shows the password: %q", stdout+stderr)
			}
		})
	}
}
