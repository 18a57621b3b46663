package cache

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
)

// TestEvictScratchKeys checks that the keys a batch lays for Badger stay
// as laid until the batch ends, whether or not b.keys was reserved.
func TestEvictScratchKeys(t *testing.T) {
	victims := []victim{
		{key: "mod/a", access: 7},
		{key: "zip/" + string(bytes.Repeat([]byte("x"), 300)), access: 1 << 40, state: victimBlob},
		{key: "t/\x00\x01", state: victimMalformed},
	}
	tests := []struct {
		name    string
		reserve bool
	}{
		{"reserved", true},
		{"growing from empty", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &evictScratch{victims: victims}
			if tt.reserve {
				b.reserveKeys()
			}
			start := cap(b.keys)
			var laid, want [][]byte
			for _, v := range victims {
				if v.state == victimMalformed {
					laid, want = append(laid, b.key(v.key, -1, "")), append(want, []byte(v.key))
					continue
				}
				for _, p := range []string{prefixAccess, prefixValue, prefixBlob} {
					laid, want = append(laid, b.key(p, -1, v.key)), append(want, []byte(p+v.key))
				}
				at := binary.BigEndian.AppendUint64([]byte(prefixOrder), uint64(v.access))
				laid, want = append(laid, b.key(prefixOrder, v.access, v.key)), append(want, append(at, v.key...))
			}
			for i := range laid {
				if !bytes.Equal(laid[i], want[i]) {
					t.Errorf("key %d = %q, want %q", i, laid[i], want[i])
				}
				if cap(laid[i]) != len(laid[i]) {
					t.Errorf("key %d has room after it (cap %d, len %d)", i, cap(laid[i]), len(laid[i]))
				}
			}
			if tt.reserve && cap(b.keys) != start {
				t.Errorf("b.keys grew from %d to %d after reserveKeys", start, cap(b.keys))
			}
		})
	}
}

// TestEvictCutShort checks that a pass cut short between two batches (as a
// crash or a shutdown cuts it) leaves a complete index and right counts:
// every batch commits whole, and the next Open and pass go on from there.
func TestEvictCutShort(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{t: testEpoch}
	s := boundedStore(t, dir, 1<<30, clock)
	keys := make([]string, 3*evictBatch)
	for i := range keys {
		keys[i] = fmt.Sprintf("mod/m%05d", i)
	}
	fill(t, s, clock, keys)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	batches := 0
	s.evictHook = func(*evictScratch) {
		if batches++; batches == 2 {
			cancel() // the second batch still commits; the pass stops after it
		}
	}
	n, size, err := s.evictOldest(ctx, int64(len(keys))*100)
	if !errors.Is(err, context.Canceled) || n != 2*evictBatch || size != 2*evictBatch*100 {
		t.Fatalf("evictOldest = %d objects, %d bytes, %v; want %d, %d, canceled",
			n, size, err, 2*evictBatch, 2*evictBatch*100)
	}
	left := keys[2*evictBatch:]
	want := make(map[string]int64, len(left))
	for _, k := range left {
		want[k] = 100
	}
	checkIndex(t, s, want)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = boundedStore(t, dir, 1<<30, clock)
	if s.indexBuilt {
		t.Error("the index was built again after a pass cut short")
	}
	st, err := s.Stats(context.Background())
	if err != nil || st.TotalObjects != int64(len(left)) || st.TotalBytes != int64(len(left))*100 {
		t.Errorf("Stats = %d objects, %d bytes, %v; want %d, %d", st.TotalObjects, st.TotalBytes, err,
			len(left), len(left)*100)
	}
	if n, _, err := s.evictOldest(context.Background(), 100); err != nil || n != 1 {
		t.Errorf("the next pass evicted %d objects, %v; want 1", n, err)
	}
	if got := present(t, s, left[:2]); !sameSet(got, left[1:2]) {
		t.Errorf("%v remain, want %v (the oldest left evicted first)", got, left[1:2])
	}
}
