package main

import "testing"

func TestByteSize(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"", 0, false},
		{"0", 0, false},
		{"20GiB", 20 << 30, false},
		{"500MB", 500_000_000, false},
		{"1.5 TiB", 3 << 39, false},
		{"4096", 4096, false},
		{"lots", 0, true},
		{"-1GiB", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var b byteSize
			err := b.Set(tt.in)
			if (err != nil) != tt.wantErr || (err == nil && int64(b) != tt.want) {
				t.Errorf("Set(%q) = %d, %v; want %d, error %v", tt.in, b, err, tt.want, tt.wantErr)
			}
		})
	}
}
