package main

import (
	"fmt"

	"github.com/dustin/go-humanize"
)

// byteSize is a flag value of bytes written like "20GiB", "500MB" or
// "1073741824"; "" and "0" mean no limit.
type byteSize int64

// String implements pflag.Value.
func (b *byteSize) String() string {
	if *b == 0 {
		return ""
	}
	return humanize.IBytes(uint64(*b))
}

// Set implements pflag.Value.
func (b *byteSize) Set(s string) error {
	if s == "" {
		*b = 0
		return nil
	}
	n, err := humanize.ParseBytes(s)
	if err != nil || n > 1<<62 {
		return fmt.Errorf("%q is not a size such as 20GiB or 500MB", s)
	}
	*b = byteSize(n)
	return nil
}

// Type implements pflag.Value.
func (b *byteSize) Type() string { return "size" }
