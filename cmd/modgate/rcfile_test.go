package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReplaceBlock(t *testing.T) {
	block := blockBegin + "\nexport A=2\n" + blockEnd + "\n"
	old := blockBegin + "\nexport A=1\n" + blockEnd + "\n"
	tests := []struct {
		name, in, want, wantErr string
	}{
		{"empty file", "", block, ""},
		{"append after lines", "alias ll='ls -l'\n", "alias ll='ls -l'\n" + block, ""},
		{"append after an unterminated last line", "alias ll='ls -l'", "alias ll='ls -l'\n" + block, ""},
		{"replace in place", "a\n" + old + "b\n", "a\n" + block + "b\n", ""},
		{"replace a block at the end without newline", "a\n" + strings.TrimSuffix(old, "\n"), "a\n" + block, ""},
		{"two blocks from appending twice", "a\n" + old + "b\n" + old + "c\n", "a\n" + block + "b\nc\n", ""},
		{"CRLF lines", "a\r\n" + strings.ReplaceAll(old, "\n", "\r\n") + "b\r\n", "a\r\n" + block + "b\r\n", ""},
		{"a marker inside a line is not a block", "echo '" + blockBegin + "'\n", "echo '" + blockBegin + "'\n" + block, ""},
		{"unterminated block", "a\n" + blockBegin + "\nexport A=1\n", "", "has no"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := replaceBlock(tc.in, block)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %q, %v; want an error with %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v\nwant %q", got, err, tc.want)
			}
		})
	}
}

// TestClientEnvRCFileIdempotent runs the binary's client-env --rc-file twice on a file
// with lines of its own: one block, the lines kept, the mode kept; and a
// broken block changes nothing.
func TestClientEnvRCFileIdempotent(t *testing.T) {
	rc := filepath.Join(t.TempDir(), ".bashrc")
	if err := os.WriteFile(rc, []byte("alias ll='ls -l'\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := append(goldenArgs("bash", false), "--rc-file", rc)
	for i, want := range []string{"added the modgate block to", "replaced the modgate block in"} {
		code, out := runBinary(t, nil, args...)
		if code != exitOK || !strings.Contains(out, want) {
			t.Fatalf("run %d: exit %d, %q", i+1, code, out)
		}
	}
	b, _ := os.ReadFile(rc)
	golden, _ := os.ReadFile(filepath.Join("testdata", "clientenv", "bash-persist.golden"))
	if string(b) != "alias ll='ls -l'\n"+string(golden) {
		t.Errorf("rc file after two runs:\n%s", b)
	}
	if fi, _ := os.Stat(rc); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600 kept", fi.Mode())
	}
	broken := "x\n" + blockBegin + "\n"
	os.WriteFile(rc, []byte(broken), 0o600)
	if code, out := runBinary(t, nil, args...); code != exitFail || !strings.Contains(out, "fix the file by hand") {
		t.Errorf("unterminated block: exit %d %s", code, out)
	}
	if b, _ := os.ReadFile(rc); string(b) != broken {
		t.Errorf("a refused --rc-file changed the file: %q", b)
	}
	if code, out := runBinary(t, nil, "client-env", "--shell", "powershell", "--verifier", goldenVerifier, "--rc-file", rc); code != exitUsage {
		t.Errorf("--rc-file with powershell: exit %d %s", code, out)
	}
}
