package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/modgate/modgate/internal/tmpfs"
)

// Sizes of the fault experiments: a 128 MiB tmpfs, 4 MiB value log files
// (8 MiB as Badger creates them) and 8 MiB memtables, so the reserve is
// 2×4 + 4×8 = 40 MiB, and a 16 MiB blob.
const (
	faultFS       = 128 << 20
	faultVlogFile = 4 << 20
	faultBlob     = 16 << 20
)

func faultConfig(dir, mode string) Config {
	c := Config{
		Dir: filepath.Join(dir, "cache"), GCInterval: -1, ValueLogFileSize: faultVlogFile,
		MemTableSize: 8 << 20, MinFree: FreeSpace{Bytes: 1},
		noAdmission: mode == "none" || mode == "prealloc" || mode == "options",
		noPrealloc:  mode == "none" || mode == "admission" || mode == "options",
	}
	if mode == "options" { // the smallest value log files Badger allows: smaller holes
		c.ValueLogFileSize, c.ChunkSize = 1<<20, 512<<10
	}
	return c
}

// TestDiskFullChild is the process of one fault experiment, started by
// TestDiskFullNeverFaults (a SIGBUS must kill a child, not the test).
func TestDiskFullChild(t *testing.T) {
	dir := os.Getenv("MODGATE_DISK_CHILD")
	if dir == "" {
		t.Skip("the process of one experiment of TestDiskFullNeverFaults")
	}
	mode, scenario := os.Getenv("MODGATE_DISK_MODE"), os.Getenv("MODGATE_DISK_SCENARIO")
	ctx := context.Background()
	s, err := Open(ctx, faultConfig(dir, mode))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	small := pattern(8<<10, 3)
	if err := s.Put(ctx, "mod/example.com/a/@v/v1.0.0.mod", small); err != nil {
		t.Fatal(err)
	}
	content := pattern(faultBlob, 1)
	switch scenario {
	case "static": // less free than the blob: it fits the spool, not the store
		tmpfs.FillTo(t, dir, "filler", faultBlob/2)
	case "race": // another writer takes every free block after a check
		s.disk = raceGuard(t, s.disk, dir)
	}
	err = s.PutBlob(ctx, "zip/example.com/big/@v/v1.0.0.zip", bytes.NewReader(content), int64(len(content)))
	fmt.Printf("RESULT: %v\n", err)
	if err == nil {
		return
	}
	if !errors.Is(err, ErrDiskFull) {
		t.Fatalf("PutBlob: %v, want ErrDiskFull", err)
	}
	// What was stored is still served; once space returns, stores resume.
	if e, err := s.Get(ctx, "mod/example.com/a/@v/v1.0.0.mod"); err != nil || !bytes.Equal(e.Value, small) {
		t.Fatalf("Get after the refusal: %v", err)
	}
	if err := os.Remove(filepath.Join(dir, "filler")); err != nil {
		t.Fatal(err)
	}
	s.disk = s.disk.withStatfs(statfs)
	if err := s.PutBlob(ctx, "zip/example.com/big/@v/v1.0.0.zip", bytes.NewReader(content), int64(len(content))); err != nil {
		t.Fatalf("PutBlob once space returned: %v", err)
	}
	if got := readBlob(t, s, "zip/example.com/big/@v/v1.0.0.zip"); !bytes.Equal(got, content) {
		t.Fatal("the blob stored after recovery reads back different")
	}
	fmt.Println("RECOVERED")
}

// raceGuard returns a copy of g whose statfs, from its second call on
// (after PutBlob's admission and its first chunk's), first fills the disk
// behind the check's back, as another writer would.
func raceGuard(t testing.TB, g *diskGuard, dir string) *diskGuard {
	var calls atomic.Int64
	inner := g.statfs
	return g.withStatfs(func(d string) (fsStat, error) {
		st, err := inner(d)
		if calls.Add(1) == 2 {
			tmpfs.FillTo(t, dir, "filler", 0)
		}
		return st, err
	})
}

// TestDiskFullNeverFaults measures which measure keeps a store on a disk
// that is too full from dying of SIGBUS: none; Badger options alone (the
// smallest value log files, 1 MiB); admission (statfs) only;
// preallocation (fallocate) only; or both (the default). Each experiment
// runs in a child process on its own tmpfs.
//
//   - static: the disk has room for less than the blob when the store
//     begins (the case: the zip was spooled, it cannot also be
//     stored);
//   - race: the disk has room, then another writer takes every free block
//     right after a check.
//
// Measured (Linux tmpfs): with no measure, and with Badger options alone
// (Badger has no option to write without memory maps), both cases end in
// SIGBUS; admission alone refuses the static case and dies in the race;
// preallocation alone and both end every case in ErrDiskFull, and recover
// once the space is back. Both are kept: admission also protects the
// table files of memtable flushes and compactions, which Badger writes
// through sparse maps that no preallocation reaches, and refuses before
// any byte is written.
func TestDiskFullNeverFaults(t *testing.T) {
	want := map[string]string{
		"none/static": "SIGBUS", "none/race": "SIGBUS",
		"options/static": "SIGBUS", "options/race": "SIGBUS",
		"admission/static": "refused", "admission/race": "SIGBUS",
		"prealloc/static": "refused", "prealloc/race": "refused",
		"both/static": "refused", "both/race": "refused",
	}
	for _, mode := range []string{"none", "options", "admission", "prealloc", "both"} {
		for _, scenario := range []string{"static", "race"} {
			name := mode + "/" + scenario
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				dir := tmpfs.Mount(t, faultFS)
				cmd := exec.Command(os.Args[0], "-test.run=^TestDiskFullChild$", "-test.v", "-test.count=1")
				cmd.Env = append(os.Environ(), "MODGATE_DISK_CHILD="+dir, "MODGATE_DISK_MODE="+mode, "MODGATE_DISK_SCENARIO="+scenario)
				out, err := cmd.CombinedOutput()
				got := outcome(string(out), err)
				t.Logf("%s: %s", name, got)
				if got != want[name] {
					t.Errorf("%s: got %s, want %s\n%s", name, got, want[name], tail(out))
				}
				if got == "refused" && !strings.Contains(string(out), "RECOVERED") {
					t.Errorf("%s: refused, but did not recover once space returned\n%s", name, tail(out))
				}
			})
		}
	}
}

// outcome classifies how an experiment's process ended.
func outcome(out string, err error) string {
	switch {
	case strings.Contains(out, "signal SIGBUS"):
		return "SIGBUS"
	case strings.Contains(out, "RESULT: <nil>"):
		return "stored"
	case strings.Contains(out, "RESULT: ") && strings.Contains(out, "cache disk full") && err == nil:
		return "refused"
	}
	return "failed (" + strconv.Quote(fmt.Sprint(err)) + ")"
}

func tail(out []byte) []byte {
	if len(out) > 4000 {
		return out[len(out)-4000:]
	}
	return out
}

// TestReadOnlyFilesystem checks that a store whose filesystem turns
// read-only refuses stores as for a full disk, still serves what it holds,
// and that a store on a read-only filesystem is refused at Open with an
// error that says so.
func TestReadOnlyFilesystem(t *testing.T) {
	ctx := context.Background()
	dir := tmpfs.Mount(t, 256<<20)
	cfg := Config{Dir: filepath.Join(dir, "cache"), GCInterval: -1, MinFree: FreeSpace{Bytes: 1},
		ValueLogFileSize: 4 << 20, MemTableSize: 8 << 20}
	s, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "mod/a", []byte("module a\n")); err != nil {
		t.Fatal(err)
	}
	// A filesystem with files open for writing cannot be remounted
	// read-only by hand (EBUSY); the kernel does it on I/O errors
	// (errors=remount-ro). statfs then reports ST_RDONLY, as here.
	real := s.disk
	s.disk = s.disk.withStatfs(func(d string) (fsStat, error) {
		st, err := statfs(d)
		st.readOnly = true
		return st, err
	})
	err = s.Put(ctx, "mod/b", []byte("module b\n"))
	if !errors.Is(err, ErrDiskFull) || !strings.Contains(err.Error(), "read-only") {
		t.Errorf("Put on a read-only filesystem: %v, want ErrDiskFull saying read-only", err)
	}
	if sp := s.Space(); !sp.ReadOnly || sp.Full() == "" || sp.Refused != 1 {
		t.Errorf("Space on a read-only filesystem: %+v (Full %q)", sp, sp.Full())
	}
	if e, err := s.Get(ctx, "mod/a"); err != nil || string(e.Value) != "module a\n" {
		t.Errorf("Get on a read-only filesystem: %q, %v", e.Value, err)
	}
	s.disk = real
	if err := s.Put(ctx, "mod/b", []byte("module b\n")); err != nil {
		t.Errorf("Put once writable again: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	tmpfs.Remount(t, dir, "ro")
	defer tmpfs.Remount(t, dir, "rw")
	_, err = Open(ctx, cfg)
	if err == nil || !strings.Contains(err.Error(), "read-only filesystem") {
		t.Errorf("Open on a read-only filesystem: %v, want an error saying so", err)
	}
}
