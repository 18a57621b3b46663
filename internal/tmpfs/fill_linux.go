package tmpfs

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// Free returns the bytes available on the filesystem of dir.
func Free(t testing.TB, dir string) int64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}

// FillTo leaves at most free bytes available on the filesystem of dir by
// growing the file dir/name (remove it to free the space again).
func FillTo(t testing.TB, dir, name string, free int64) {
	t.Helper()
	avail := Free(t, dir)
	if avail <= free {
		return
	}
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Fallocate(int(f.Fd()), 0, fi.Size(), avail-free); err != nil {
		t.Fatalf("filling %s: %v", dir, err)
	}
}
