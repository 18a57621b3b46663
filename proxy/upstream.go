package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/modgate/modgate/cache"
	"github.com/modgate/modgate/internal/httperr"
)

// Limits on upstream answers.
const (
	maxSmallBody = 16 << 20  // list, info, mod, latest and sumdb answers
	maxZipSize   = 500 << 20 // the go command's limit on a module zip
)

// upstream fetches from one HTTP base URL (a module proxy or a checksum
// database), with timeouts, size limits and redacted errors.
type upstream struct {
	base    *url.URL
	client  *http.Client
	offline bool
}

// get issues GET base+path and returns a 200 response; anything else is an
// *UpstreamError. The client bounds stalls (see stallTransport).
func (u *upstream) get(ctx context.Context, path string) (*http.Response, error) {
	if u.offline {
		return nil, ErrOffline
	}
	target := *u.base
	target.Path = strings.TrimSuffix(target.Path, "/") + path
	target.RawPath = ""
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target.String(), nil)
	if err != nil {
		return nil, &UpstreamError{URL: redact(&target), Err: err}
	}
	req.Header.Set("User-Agent", "modgate")
	resp, err := u.client.Do(req)
	if err != nil {
		return nil, &UpstreamError{URL: redact(&target), Err: errors.Unwrap(err)}
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, &UpstreamError{URL: redact(&target), Status: resp.StatusCode, Body: httperr.FirstLine(resp)}
	}
	return resp, nil
}

// fetch returns a whole small body, refusing one over maxSmallBody.
func (u *upstream) fetch(ctx context.Context, path string) ([]byte, error) {
	resp, err := u.get(ctx, path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxSmallBody+1))
	if err != nil {
		return nil, &UpstreamError{URL: redact(resp.Request.URL), Status: resp.StatusCode, Err: err}
	}
	if len(b) > maxSmallBody {
		return nil, &UpstreamError{
			URL:    redact(resp.Request.URL),
			Status: resp.StatusCode,
			Err:    fmt.Errorf("answer larger than %d bytes", maxSmallBody),
		}
	}
	return b, nil
}

// spoolWatcher learns how a spool grows: its file and the upstream's
// declared length (-1: none) once the answer's headers are in, then the
// bytes written so far after each write. Calls come from the spooling
// goroutine, in that order.
type spoolWatcher interface {
	started(name string, size int64)
	wrote(total int64)
}

// spool streams a body to a new temporary file in dir, refusing more than
// limit bytes, whether declared or streamed, and tells watch (which may be
// nil) of its progress. The caller removes the file.
func (u *upstream) spool(ctx context.Context, path, dir string, limit int64,
	watch spoolWatcher) (*os.File, int64, error) {
	resp, err := u.get(ctx, path)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	if resp.ContentLength > limit {
		return nil, 0, fmt.Errorf("%w: upstream declares %d bytes", ErrTooLarge, resp.ContentLength)
	}
	f, err := os.CreateTemp(dir, "modgate-spool-*.zip")
	if err != nil {
		return nil, 0, fmt.Errorf("spooling: %w", err)
	}
	if resp.ContentLength > 0 {
		if err := reserve(f, resp.ContentLength); err != nil {
			f.Close()
			os.Remove(f.Name())
			return nil, 0, spoolError(f.Name(), err)
		}
	}
	sw := &spoolWriter{f: f, watch: watch}
	if watch != nil {
		watch.started(f.Name(), resp.ContentLength)
	}
	n, err := io.Copy(sw, io.LimitReader(resp.Body, limit+1))
	if sw.err != nil {
		err = spoolError(f.Name(), sw.err)
	} else if err == nil && n > limit {
		err = fmt.Errorf("%w: upstream sent more than %d bytes", ErrTooLarge, limit)
	} else if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
		err = &UpstreamError{URL: redact(resp.Request.URL), Status: resp.StatusCode,
			Err: fmt.Errorf("truncated: got %d of %d bytes", n, resp.ContentLength)}
	} else if err != nil {
		err = &UpstreamError{URL: redact(resp.Request.URL), Status: resp.StatusCode, Err: err}
	}
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, 0, err
	}
	return f, n, nil
}

// spoolWriter writes to the spool file and keeps its write error, so that
// a full disk is told apart from a failing upstream. It tells watch (if
// set) of each write.
type spoolWriter struct {
	f     *os.File
	err   error
	total int64
	watch spoolWatcher
}

func (w *spoolWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	if err != nil {
		w.err = err
	}
	w.total += int64(n)
	if w.watch != nil && n > 0 {
		w.watch.wrote(w.total)
	}
	return n, err
}

// spoolError reports a failed write to the spool file: a *cache.DiskFullError
// (507) when the disk is full, over quota or read-only.
func spoolError(name string, err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, syscall.EROFS) {
		return &cache.DiskFullError{What: "spooling the upstream zip to " + filepath.Dir(name), Err: err}
	}
	return fmt.Errorf("spooling: %w", err)
}
