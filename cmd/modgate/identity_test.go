package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAdminCommandsCheckTheGatesIdentity points the admin commands of one
// data directory at another gate's admin listener: they refuse before
// sending anything, naming both keys, and the other gate's policy and
// audit log stay unchanged. With its own gate, the same commands work.
func TestAdminCommandsCheckTheGatesIdentity(t *testing.T) {
	dirA, dirB := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	_, a := fakeGate(t, dirA)
	_, b := fakeGate(t, dirB)
	adminB := "http://" + b.admin
	for _, args := range [][]string{
		{"witness", "status"},
		{"witness", "clear-fork", "--reason", "x"},
		{"policy", "list"},
		{"policy", "deny", "example.com/bad@v1.0.0", "--reason", "from the wrong data directory"},
		{"cache", "stats"},
	} {
		t.Run(strings.Join(args[:2], " "), func(t *testing.T) {
			code, out := runBinary(t, nil, append(args, "--data-dir", dirA, "--admin", adminB)...)
			if code != exitFail || !strings.Contains(out, "is not the gate of "+dirA) || !strings.Contains(out, b.verifier) || !strings.Contains(out, a.verifier) {
				t.Errorf("exit %d, want 1 naming both keys:\n%s", code, out)
			}
		})
	}
	if code, out := runBinary(t, nil, "policy", "log", "--data-dir", dirB, "--admin", adminB); code != exitOK || strings.Contains(out, "wrong data directory") {
		t.Errorf("gate B's audit log after the refused calls: exit %d\n%s", code, out)
	}
	if code, out := runBinary(t, nil, "witness", "status", "--data-dir", dirA, "--admin", "http://"+a.admin); code != exitOK {
		t.Errorf("witness status with the right gate: exit %d\n%s", code, out)
	}
	// A token from the environment and a data directory without note.pub:
	// nothing to compare, the token decides.
	tokenB := strings.TrimSpace(string(readFile(t, filepath.Join(dirB, adminTokenFile))))
	if code, out := runBinary(t, []string{"MODGATE_ADMIN_TOKEN=" + tokenB}, "policy", "list", "--data-dir", t.TempDir(), "--admin", adminB); code != exitOK {
		t.Errorf("policy list with MODGATE_ADMIN_TOKEN and no data directory: exit %d\n%s", code, out)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
