package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// The lines that open and close the block client-env --persist writes for
// bash, zsh and fish. --rc-file replaces what lies between them.
const (
	blockBegin = "# >>> modgate client-env >>>"
	blockEnd   = "# <<< modgate client-env <<<"
)

// replaceBlock returns old with its modgate block replaced by block (which
// starts with blockBegin and ends with blockEnd and a newline). Extra
// blocks, left by earlier appends, are removed; with no block, block is
// appended. Everything outside the blocks is kept byte for byte. An
// unterminated block is an error: guessing its end could delete a
// person's own lines.
func replaceBlock(old, block string) (string, error) {
	var out strings.Builder
	rest, placed := old, false
	for {
		i := indexLine(rest, blockBegin)
		if i < 0 {
			break
		}
		j := indexLine(rest[i:], blockEnd)
		if j < 0 {
			return "", fmt.Errorf("a %q line has no %q line after it: fix the file by hand", blockBegin, blockEnd)
		}
		end := len(rest) // the end of the blockEnd line, with its line break
		if k := strings.IndexByte(rest[i+j:], '\n'); k >= 0 {
			end = i + j + k + 1
		}
		out.WriteString(rest[:i])
		if !placed {
			out.WriteString(block)
			placed = true
		}
		rest = rest[end:]
	}
	out.WriteString(rest)
	if !placed {
		if s := out.String(); s != "" && !strings.HasSuffix(s, "\n") {
			out.WriteByte('\n')
		}
		out.WriteString(block)
	}
	return out.String(), nil
}

// indexLine is the index in s of the first line equal to line, or -1.
func indexLine(s, line string) int {
	for off := 0; off <= len(s); {
		l, _, found := strings.Cut(s[off:], "\n")
		if strings.TrimRight(l, "\r") == line {
			return off
		}
		if !found {
			break
		}
		off += len(l) + 1
	}
	return -1
}

// writeRCFile puts block into the file at path in place of an earlier
// modgate block. It writes a temporary file next to it and renames it, so
// that a failure leaves the old file whole; the file keeps its mode.
func writeRCFile(path, block string) (replaced bool, err error) {
	mode := fs.FileMode(0o644)
	old, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return false, fmt.Errorf("--rc-file: %w", err)
	default:
		fi, err := os.Stat(path)
		if err != nil {
			return false, fmt.Errorf("--rc-file: %w", err)
		}
		mode = fi.Mode().Perm()
	}
	content, err := replaceBlock(string(old), block)
	if err != nil {
		return false, fmt.Errorf("--rc-file %s: %w", path, err)
	}
	// Write through a symlinked rc file (dotfile managers), not over the link.
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".modgate-*")
	if err != nil {
		return false, fmt.Errorf("--rc-file: %w", err)
	}
	defer os.Remove(tmp.Name())
	err = tmp.Chmod(mode)
	if err == nil {
		_, err = tmp.WriteString(content)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return false, fmt.Errorf("--rc-file %s: %w", path, err)
	}
	return indexLine(string(old), blockBegin) >= 0, nil
}
