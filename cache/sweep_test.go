package cache

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// writeOrphan writes n chunks of a fresh generation without a manifest, as a
// PutBlob interrupted by a crash would leave them.
func writeOrphan(t testing.TB, s *Store, n int) uint64 {
	t.Helper()
	gen := s.beginGen()
	defer s.endGen(gen)
	for i := range n {
		if err := s.setChunk(gen, uint32(i), pattern(s.chunkSize, byte(i))); err != nil {
			t.Fatal(err)
		}
	}
	return gen
}

func TestSweep(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name        string
		orphans     []int // chunks of each orphan generation
		reopen      bool  // sweep by reopening a disk store instead of calling Sweep
		wantRemoved int
	}{
		{"nothing to sweep", nil, false, 0},
		{"one orphan", []int{3}, false, 3},
		{"several orphans", []int{1, 4, 2}, false, 7},
		{"on open", []int{2, 5}, true, 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			core, logs := observer.New(zapcore.InfoLevel)
			cfg := Config{InMemory: true, ChunkSize: 4, Logger: zap.New(core), Now: fixedNow}
			if tt.reopen {
				cfg.InMemory, cfg.Dir = false, t.TempDir()
			}
			s, err := Open(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			live := pattern(10, 1)
			if err := s.PutBlob(ctx, "zip/live", bytes.NewReader(live), 10); err != nil {
				t.Fatal(err)
			}
			for _, n := range tt.orphans {
				writeOrphan(t, s, n)
			}
			if tt.reopen {
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				if s, err = Open(ctx, cfg); err != nil {
					t.Fatal(err)
				}
			} else if err := s.Sweep(ctx); err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			checkBlob(t, s, "zip/live", live)
			if n := countChunks(t, s); n != 3 {
				t.Errorf("%d chunks after the sweep, want the live blob's 3", n)
			}
			if got := sweptChunks(logs); got != tt.wantRemoved {
				t.Errorf("swept %d chunks, want %d", got, tt.wantRemoved)
			}
		})
	}
}

// sweptChunks adds up the chunks that the sweeps logged as deleted.
func sweptChunks(logs *observer.ObservedLogs) int {
	n := 0
	for _, e := range logs.FilterMessage("swept orphan blob chunks").All() {
		n += int(e.ContextMap()["chunks"].(int64))
	}
	return n
}

func TestSweepSparesPutBlobInProgress(t *testing.T) {
	s := newMemStore(t, 4)
	ctx := context.Background()
	gen := s.beginGen()
	for i := range 3 {
		if err := s.setChunk(gen, uint32(i), []byte("abcd")); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if n := countChunks(t, s); n != 3 {
		t.Errorf("Sweep deleted chunks of a PutBlob in progress: %d left, want 3", n)
	}
	s.endGen(gen)
	if err := s.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if n := countChunks(t, s); n != 0 {
		t.Errorf("%d chunks left once the generation is no longer in flight", n)
	}
}

func TestSweepWhilePutting(t *testing.T) {
	s := newMemStore(t, 4)
	ctx := context.Background()
	done := make(chan error)
	go func() {
		var err error
		for i := 0; i < 200 && err == nil; i++ {
			err = s.Sweep(ctx)
		}
		done <- err
	}()
	for i := range 50 {
		content := pattern(13+i, byte(i))
		key := fmt.Sprintf("zip/m%d", i%5)
		if err := s.PutBlob(ctx, key, bytes.NewReader(content), int64(len(content))); err != nil {
			t.Fatal(err)
		}
		checkBlob(t, s, key, content)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	want := 0
	for i := 45; i < 50; i++ {
		want += (13 + i + 3) / 4
	}
	if n := countChunks(t, s); n != want {
		t.Errorf("%d chunks, want %d", n, want)
	}
}

func TestCorruptManifestDoesNotBlockOpen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, Config{Dir: dir, ChunkSize: 4})
	if err != nil {
		t.Fatal(err)
	}
	err = s.db.Update(func(txn *badger.Txn) error {
		return txn.Set(blobKey("zip/bad"), []byte("garbage"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, Config{Dir: dir, ChunkSize: 4})
	if _, err := s.OpenBlob(ctx, "zip/bad"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("OpenBlob = %v, want ErrCorrupt", err)
	}
	if _, err := s.Stats(ctx); err != nil {
		t.Errorf("Stats = %v", err)
	}
	if err := s.Delete(ctx, "zip/bad"); err != nil {
		t.Errorf("Delete = %v", err)
	}
	if ok, _ := s.HasBlob(ctx, "zip/bad"); ok {
		t.Error("corrupt blob still there after Delete")
	}
}

func TestGenerationsIncreaseAcrossReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, Config{Dir: dir, ChunkSize: 4})
	if err != nil {
		t.Fatal(err)
	}
	s.nextGen = 1 << 62 // as if written under a clock far ahead
	if err := s.PutBlob(ctx, "zip/a", bytes.NewReader([]byte("abcdef")), 6); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, Config{Dir: dir, ChunkSize: 4})
	if s.nextGen <= 1<<62 {
		t.Errorf("nextGen = %d after reopen, not above the stored generation", s.nextGen)
	}
}

// crashEnv names the directory in which the child process of
// TestCrashMidPutBlob writes before it is killed.
const crashEnv = "MODGATE_CACHE_CRASH_DIR"

// TestCrashMidPutBlob kills (SIGKILL) a process in the middle of a PutBlob,
// then checks that reopening the store shows no blob and sweeps its chunks.
func TestCrashMidPutBlob(t *testing.T) {
	const chunk, written = 70_000, 5
	if dir := os.Getenv(crashEnv); dir != "" {
		crashChild(dir, chunk, written)
		return
	}
	if testing.Short() {
		t.Skip("starts a child process")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashMidPutBlob$")
	cmd.Env = append(os.Environ(), crashEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if line != "ready\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child said %q, %v", line, err)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	core, logs := observer.New(zapcore.InfoLevel)
	s := openStore(t, Config{Dir: dir, ChunkSize: chunk, Logger: zap.New(core)})
	ctx := context.Background()
	if ok, err := s.HasBlob(ctx, "zip/crash"); ok || err != nil {
		t.Errorf("HasBlob = %v, %v after the crash; want false", ok, err)
	}
	checkBlob(t, s, "zip/live", pattern(3*chunk, 1))
	if n := countChunks(t, s); n != 3 {
		t.Errorf("%d chunks after reopening, want the live blob's 3", n)
	}
	if got := sweptChunks(logs); got != written {
		t.Errorf("Open swept %d chunks, want %d", got, written)
	}
}

// crashChild stores a live blob, then starts a PutBlob that writes chunks and
// blocks, saying "ready" on stdout, until the parent kills the process.
func crashChild(dir string, chunk, written int) {
	ctx := context.Background()
	s, err := Open(ctx, Config{Dir: dir, ChunkSize: chunk, Now: fixedNow})
	if err != nil {
		panic(err)
	}
	if err := s.PutBlob(ctx, "zip/live", bytes.NewReader(pattern(3*chunk, 1)), int64(3*chunk)); err != nil {
		panic(err)
	}
	r := &stallingReader{r: bytes.NewReader(pattern(10*chunk, 2)), stallAfter: int64(written * chunk)}
	_ = s.PutBlob(ctx, "zip/crash", r, int64(10*chunk))
	panic("PutBlob returned")
}

// stallingReader says "ready" and blocks forever when asked for more than
// stallAfter bytes, that is once PutBlob has committed that many.
type stallingReader struct {
	r          io.Reader
	read       int64
	stallAfter int64
}

func (s *stallingReader) Read(p []byte) (int, error) {
	if s.read >= s.stallAfter {
		fmt.Println("ready")
		time.Sleep(time.Hour)
	}
	p = p[:min(int64(len(p)), s.stallAfter-s.read)]
	n, err := s.r.Read(p)
	s.read += int64(n)
	return n, err
}
