package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/fakeupstream"
)

// memSecondLevel is an in-memory SecondLevel that checks what it is given
// as the real one does.
type memSecondLevel struct {
	mu    sync.Mutex
	objs  map[string]memObject
	fail  error // if set, every call fails with it
	opens int
	// reader, if set, gives the reader and meta Open returns for an
	// object, as a second level that checks its chunks would.
	reader func(data []byte, meta SharedMeta) (io.Reader, SharedMeta)
}

type memObject struct {
	data []byte
	meta SharedMeta
}

func newMemSecondLevel() *memSecondLevel { return &memSecondLevel{objs: map[string]memObject{}} }

func (m *memSecondLevel) Open(_ context.Context, key string) (io.ReadCloser, SharedMeta, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.opens++
	if m.fail != nil {
		return nil, SharedMeta{}, false, m.fail
	}
	o, ok := m.objs[key]
	if !ok {
		return nil, SharedMeta{}, false, nil
	}
	if m.reader != nil {
		r, meta := m.reader(o.data, o.meta)
		return io.NopCloser(r), meta, true, nil
	}
	return io.NopCloser(bytes.NewReader(o.data)), o.meta, true, nil
}

func (m *memSecondLevel) Put(_ context.Context, key string, r io.Reader, meta SharedMeta) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if int64(len(b)) != meta.Size || sha256.Sum256(b) != meta.SHA256 {
		return errors.New("memSecondLevel: bytes do not match their declared size and SHA-256")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	m.objs[key] = memObject{b, meta}
	return nil
}

// setReader sets m.reader.
func (m *memSecondLevel) setReader(fn func(data []byte, meta SharedMeta) (io.Reader, SharedMeta)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reader = fn
}

// set stores an object as is, unchecked, as a corrupted database would.
func (m *memSecondLevel) set(key string, data []byte, meta SharedMeta) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.objs[key] = memObject{data, meta}
}

func (m *memSecondLevel) get(key string) (memObject, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.objs[key]
	return o, ok
}

// await waits up to 10 s for an object under key for which ok holds (nil:
// any object). A streamed zip's client has its whole answer before the
// gate has stored and shared it, so tests wait for the share.
func (m *memSecondLevel) await(key string, ok func(memObject) bool) (memObject, bool) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		o, found := m.get(key)
		if found && (ok == nil || ok(o)) {
			return o, true
		}
		if time.Now().After(deadline) {
			return o, false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sharedLeases is an in-memory lease table, with no expiry, that several
// gates share.
type sharedLeases struct {
	mu      sync.Mutex
	holders map[string]string
}

func (s *sharedLeases) gate(name string) FetchLeases { return &gateLeases{s, name} }

type gateLeases struct {
	s    *sharedLeases
	name string
}

func (g *gateLeases) TryAcquire(_ context.Context, key string) (func(), string, error) {
	g.s.mu.Lock()
	defer g.s.mu.Unlock()
	if h, ok := g.s.holders[key]; ok {
		return nil, h, nil
	}
	g.s.holders[key] = g.name
	var once sync.Once
	return func() {
		once.Do(func() {
			g.s.mu.Lock()
			defer g.s.mu.Unlock()
			delete(g.s.holders, key)
		})
	}, g.name, nil
}

// take holds key's lease in the name of holder, as a gate that is fetching.
func (s *sharedLeases) take(key, holder string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.holders[key] = holder
}

func (s *sharedLeases) drop(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.holders, key)
}

// twoGates starts two gates of one cluster over one fake upstream.
func twoGates(t *testing.T) (a, b *testGate, sl *memSecondLevel, leases *sharedLeases) {
	t.Helper()
	fake := fakeupstream.Start(t, fakeupstream.Options{})
	sl = newMemSecondLevel()
	leases = &sharedLeases{holders: map[string]string{}}
	// On disk: an in-memory cache cannot hold a large zip.
	a = newTestGate(t, fake, gateOptions{SecondLevel: sl, Leases: leases.gate("a"), Dir: t.TempDir()})
	b = newTestGate(t, fake, gateOptions{SecondLevel: sl, Leases: leases.gate("b"), Key: a.key, Dir: t.TempDir()})
	return a, b, sl, leases
}

func TestSecondLevelServesWhatAnotherGateVerified(t *testing.T) {
	a, b, sl, _ := twoGates(t)
	for _, ext := range []string{".info", ".mod", ".zip"} {
		t.Run(ext, func(t *testing.T) {
			path := modPath(t, libV100, ext)
			want := upstreamBytes(t, a.fake, path)
			ra := get(t, a.url, path)
			if ra.status != http.StatusOK || !bytes.Equal(ra.body, want) {
				t.Fatalf("gate a: %d, body equal %v", ra.status, bytes.Equal(ra.body, want))
			}
			if _, ok := sl.await(string(kindOfExt(ext))+"/"+path[1:len(path)-len(ext)], nil); !ok {
				t.Fatalf("gate a did not share %s", path)
			}
			rb := get(t, b.url, path)
			if rb.status != http.StatusOK || !bytes.Equal(rb.body, want) {
				t.Fatalf("gate b: %d, body equal %v", rb.status, bytes.Equal(rb.body, want))
			}
			if n := a.fake.Requests(path); n != 1 {
				t.Fatalf("%d upstream requests for %s from two gates, want 1", n, path)
			}
			// Gate b now has it in its own cache (a zip once its store from
			// the spool, after the answer, is done).
			if ext == ".zip" && !storedWithin(t, b, "zip"+strings.TrimSuffix(path, ".zip"), 10*time.Second) {
				t.Fatal("gate b did not store the zip in its cache")
			}
			opens := sl.opens
			if rb := get(t, b.url, path); rb.status != http.StatusOK || sl.opens != opens {
				t.Fatalf("second request to gate b: %d, %d second-level reads, want a first-level hit",
					rb.status, sl.opens-opens)
			}
		})
	}
	// Mutable answers stay each gate's own.
	if _, ok := sl.get("list/example.com/lib"); ok {
		t.Fatal("a version list was shared")
	}
}

// kindOfExt maps a file extension to the Kind of its cache key.
func kindOfExt(ext string) Kind {
	return map[string]Kind{".info": KindInfo, ".mod": KindMod, ".zip": KindZip}[ext]
}

func TestSecondLevelCorruptCopyIsFetchedAgain(t *testing.T) {
	tests := []struct {
		name    string
		corrupt func(data []byte, meta SharedMeta) ([]byte, SharedMeta)
	}{
		{"flipped byte", func(d []byte, m SharedMeta) ([]byte, SharedMeta) {
			d = bytes.Clone(d)
			d[len(d)/2] ^= 1
			return d, m
		}},
		{"truncated", func(d []byte, m SharedMeta) ([]byte, SharedMeta) { return d[:len(d)-1], m }},
		{"longer", func(d []byte, m SharedMeta) ([]byte, SharedMeta) { return append(bytes.Clone(d), 0), m }},
		{"other sum", func(d []byte, m SharedMeta) ([]byte, SharedMeta) {
			m.SHA256[3] ^= 1
			return d, m
		}},
		{"over the limit", func(d []byte, m SharedMeta) ([]byte, SharedMeta) {
			m.Size = maxZipSize + 1
			return d, m
		}},
	}
	for _, ext := range []string{".mod", ".zip"} {
		for _, tt := range tests {
			t.Run(ext+"/"+tt.name, func(t *testing.T) {
				a, b, sl, _ := twoGates(t)
				path := modPath(t, libV100, ext)
				key := string(kindOfExt(ext)) + "/" + path[1:len(path)-len(ext)]
				want := upstreamBytes(t, a.fake, path)
				if r := get(t, a.url, path); r.status != http.StatusOK {
					t.Fatalf("gate a: %d %s", r.status, r.body)
				}
				o, ok := sl.await(key, nil)
				if !ok {
					t.Fatalf("gate a did not share %s", path)
				}
				data, meta := tt.corrupt(o.data, o.meta)
				sl.set(key, data, meta)
				rb := get(t, b.url, path)
				if rb.status != http.StatusOK || !bytes.Equal(rb.body, want) {
					t.Fatalf("gate b over a corrupt copy: %d, body equal %v", rb.status, bytes.Equal(rb.body, want))
				}
				if n := a.fake.Requests(path); n != 2 {
					t.Fatalf("%d upstream requests, want 2 (gate b fetches again)", n)
				}
				if _, ok := sl.await(key, func(o memObject) bool {
					return bytes.Equal(o.data, want) && o.meta.SHA256 == sha256.Sum256(want)
				}); !ok {
					t.Fatal("gate b did not put the good copy back")
				}
			})
		}
	}
}

func TestSecondLevelCopyTrustedOnlyAsHere(t *testing.T) {
	a, b, sl, _ := twoGates(t)
	path := modPath(t, libV100, ".zip")
	key := "zip/" + path[1:len(path)-len(".zip")]
	want := upstreamBytes(t, a.fake, path)
	if r := get(t, a.url, path); r.status != http.StatusOK {
		t.Fatalf("gate a: %d %s", r.status, r.body)
	}
	o, ok := sl.await(key, nil)
	if !ok {
		t.Fatalf("gate a did not share %s", path)
	}
	o.meta.Mark = trustPrivate // as if gate a had it as a private module
	sl.set(key, o.data, o.meta)
	if r := get(t, b.url, path); r.status != http.StatusOK || !bytes.Equal(r.body, want) {
		t.Fatalf("gate b: %d", r.status)
	}
	if n := a.fake.Requests(path); n != 2 {
		t.Fatalf("%d upstream requests, want 2: a copy trusted as private is not trusted where the module is public", n)
	}
	if o, _ := sl.await(key, func(o memObject) bool { return o.meta.Mark == trustSumDB }); o.meta.Mark != trustSumDB {
		t.Fatalf("mark %d in the second level after gate b verified it, want %d", o.meta.Mark, trustSumDB)
	}
}

func TestSecondLevelWaitsForTheLeaseHolder(t *testing.T) {
	tests := []struct {
		name string
		// finish ends gate a's pretend fetch: stores the object or not.
		store      bool
		wantFetchB int
	}{
		{"holder stores it", true, 0},
		{"holder fails", false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b, sl, leases := twoGates(t)
			path := modPath(t, libV110, ".zip")
			key := "zip/" + path[1:len(path)-len(".zip")]
			want := upstreamBytes(t, a.fake, path)
			leases.take(key, "elsewhere")
			type result struct {
				r   response
				err error
			}
			done := make(chan result, 1)
			go func() {
				status, body, err := fetch(t.Context(), b.url+path)
				done <- result{response{status: status, body: body}, err}
			}()
			select {
			case r := <-done:
				t.Fatalf("gate b answered while another gate held the lease: %d %v", r.r.status, r.err)
			case <-time.After(300 * time.Millisecond):
			}
			if tt.store { // as the holder does once it has verified the object
				meta := SharedMeta{Size: int64(len(want)), SHA256: sha256.Sum256(want), Mark: trustSumDB}
				if err := sl.Put(t.Context(), key, bytes.NewReader(want), meta); err != nil {
					t.Fatal(err)
				}
			}
			leases.drop(key)
			r := <-done
			if r.err != nil || r.r.status != http.StatusOK || !bytes.Equal(r.r.body, want) {
				t.Fatalf("gate b after the lease ended: %d %v", r.r.status, r.err)
			}
			if n := a.fake.Requests(path); n != tt.wantFetchB {
				t.Fatalf("gate b made %d upstream requests, want %d", n, tt.wantFetchB)
			}
		})
	}
}

func TestSecondLevelDownServesAlone(t *testing.T) {
	a, _, sl, _ := twoGates(t)
	sl.fail = errors.New("connection refused")
	path := modPath(t, libV100, ".zip")
	want := upstreamBytes(t, a.fake, path)
	if r := get(t, a.url, path); r.status != http.StatusOK || !bytes.Equal(r.body, want) {
		t.Fatalf("with the second level down: %d %s", r.status, r.body)
	}
}

func TestSecondLevelOneFetchAcrossGates(t *testing.T) {
	const perGate = 20
	a, b, _, _ := twoGates(t)
	paths := []string{modPath(t, libV120, ".zip"), modPath(t, libV120, ".mod"), modPath(t, libV120, ".info")}
	wants := map[string][]byte{}
	start := make(chan struct{})
	for _, p := range paths {
		want := upstreamBytes(t, a.fake, p)
		wants[p] = want
		a.fake.Handle(p, func(w http.ResponseWriter, r *http.Request) {
			<-start
			time.Sleep(50 * time.Millisecond)
			w.Write(want)
		})
	}
	time.AfterFunc(200*time.Millisecond, func() { close(start) }) // let the requests of both gates arrive
	var wg sync.WaitGroup
	errs := make(chan error, 2*perGate*len(paths))
	for _, g := range []*testGate{a, b} {
		for i := range perGate * len(paths) {
			p := paths[i%len(paths)]
			wg.Go(func() {
				status, body, err := fetch(t.Context(), g.url+p)
				if err == nil && (status != http.StatusOK || !bytes.Equal(body, wants[p])) {
					err = fmt.Errorf("%s: status %d, body equal %v", p, status, bytes.Equal(body, wants[p]))
				}
				errs <- err
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	for _, p := range paths {
		if n := a.fake.Requests(p); n != 1 {
			t.Errorf("%s: %d upstream requests from two gates, want 1", p, n)
		}
	}
}
