package cache

import (
	"bytes"
	"encoding/binary"
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
