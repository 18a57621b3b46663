// Package tmpfs mounts small tmpfs filesystems for tests of full disks.
// Mounting needs root (CAP_SYS_ADMIN): where it is impossible, Mount
// skips the test and says why, except in CI (CI=true), where it fails,
// so that .ci/run always runs the disk tests.
package tmpfs

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// Mount mounts a tmpfs of size bytes on a fresh temporary directory and
// unmounts it when the test ends.
func Mount(t testing.TB, size int64) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0700", size), "tmpfs", dir).
		CombinedOutput()
	if err != nil {
		unavailable(t, fmt.Sprintf("cannot mount a tmpfs (needs root and CAP_SYS_ADMIN): %v: %s", err, bytes.TrimSpace(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// Remount remounts the tmpfs at dir with mode "ro" or "rw". No file of it
// may be open for writing when it turns read-only.
func Remount(t testing.TB, dir, mode string) {
	t.Helper()
	if out, err := exec.Command("mount", "-o", "remount,"+mode, dir).CombinedOutput(); err != nil {
		t.Fatalf("remount %s %s: %v: %s", mode, dir, err, out)
	}
}

func unavailable(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}
