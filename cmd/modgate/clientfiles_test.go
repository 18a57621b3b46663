package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGateServesClientFiles runs the binary: the proxy listener serves the
// CA and the verifier key at /.modgate/, and key verifier, ca cert and
// client-env fetch them with --gate on a machine without the data
// directory; key verifier needs only note.pub.
func TestGateServesClientFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	_, g := fakeGate(t, dir)
	caPEM, notePub := readFile(t, filepath.Join(dir, "ca.pem")), strings.TrimSpace(string(readFile(t, filepath.Join(dir, "note.pub"))))
	gate := "http://" + g.listen
	for _, tc := range []struct {
		path, want string
		status     int
	}{
		{"/.modgate/ca.pem", string(caPEM), 200},
		{"/.modgate/verifier.txt", notePub + "\n", 200},
		{"/.modgate/admin.token", "no such file", 404},
		{"/.modgate/note.key", "no such file", 404},
	} {
		resp, err := http.Get(gate + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.Contains(string(b), tc.want) {
			t.Errorf("GET %s: %d %q, want %d with %q", tc.path, resp.StatusCode, b, tc.status, tc.want)
		}
	}

	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"key verifier --gate", []string{"key", "verifier", "--gate", gate}, 0, notePub + "\n"},
		{"key verifier --gate host:port", []string{"key", "verifier", "--gate", g.listen}, 0, notePub + "\n"},
		{"ca cert --gate", []string{"ca", "cert", "--gate", gate}, 0, string(caPEM)},
		{"key verifier, no data directory", []string{"key", "verifier", "--data-dir", t.TempDir()}, 1, "--gate http://<gate>:3128"},
		{"ca cert, no data directory", []string{"ca", "cert", "--data-dir", t.TempDir()}, 1, "--gate http://<gate>:3128"},
		{"key verifier --gate of the admin listener", []string{"key", "verifier", "--gate", "http://" + g.admin}, 1, "404"},
		{"key verifier --gate not a URL", []string{"key", "verifier", "--gate", "ftp://x"}, 2, "--gate"},
		{"client-env --gate", []string{"client-env", "--shell", "bash", "--gate", gate, "--ca-file", "/etc/ca.pem"}, 0,
			"export GOSUMDB='" + notePub + "'"},
		{"client-env --proxy, no data directory", []string{"client-env", "--shell", "dockerfile", "--proxy", gate, "--data-dir", t.TempDir()}, 0,
			"ENV GOSUMDB=\"" + notePub + "\""},
		{"client-env, nothing to read the key from", []string{"client-env", "--shell", "bash", "--data-dir", t.TempDir()}, 1,
			"--gate http://<gate>:3128"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := runBinary(t, nil, tc.args...)
			if code != tc.code || !strings.Contains(out, tc.want) {
				t.Errorf("exit %d, want %d with %q:\n%s", code, tc.code, tc.want, out)
			}
			if tc.code == 0 && strings.HasPrefix(tc.name, "key") && out != tc.want {
				t.Errorf("output %q, want exactly %q", out, tc.want)
			}
		})
	}

	// A client machine with note.pub alone (no note.key, no CA key).
	pubOnly := t.TempDir()
	if err := os.WriteFile(filepath.Join(pubOnly, "note.pub"), []byte(notePub+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out := runBinary(t, nil, "key", "verifier", "--data-dir", pubOnly); code != 0 || out != notePub+"\n" {
		t.Errorf("key verifier with note.pub alone: exit %d %q", code, out)
	}
	if code, out := runBinary(t, nil, "client-env", "--shell", "dockerfile", "--proxy", gate, "--data-dir", pubOnly); code != 0 || !strings.Contains(out, notePub) {
		t.Errorf("client-env --shell dockerfile with note.pub alone: exit %d\n%s", code, out)
	}
}
