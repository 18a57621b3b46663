package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// loadResult is what one load-generator measurement did.
type loadResult struct {
	requests int64
	resumed  int64 // TLS connections that resumed a session
	elapsed  time.Duration
}

func (r loadResult) rate() float64 { return float64(r.requests) / r.elapsed.Seconds() }

// load sends GETs of urls (round robin, each worker from its own offset)
// from workers goroutines through client for d and counts the answers.
// Every answer must be 200; bodies are read whole.
func load(ctx context.Context, client *http.Client, urls []string, workers int, d time.Duration) (loadResult, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var (
		n, resumed atomic.Int64
		wg         sync.WaitGroup
		firstErr   error
		once       sync.Once
	)
	start := time.Now()
	for w := range workers {
		wg.Go(func() {
			for i := w * len(urls) / workers; ctx.Err() == nil; i++ {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, urls[i%len(urls)], nil)
				resp, err := client.Do(req)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("GET %s: %s", urls[i%len(urls)], resp.Status)
					}
					if resp.TLS != nil && resp.TLS.DidResume {
						resumed.Add(1)
					}
				}
				if err != nil {
					if ctx.Err() == nil {
						once.Do(func() { firstErr = err; cancel() })
					}
					return
				}
				n.Add(1)
			}
		})
	}
	wg.Wait()
	return loadResult{requests: n.Load(), resumed: resumed.Load(), elapsed: time.Since(start)}, firstErr
}

// clientOpts says how a load-generator client connects.
type clientOpts struct {
	proxy     string         // HTTP proxy URL for interception; "" for none
	roots     *x509.CertPool // trusted roots for interception
	keepAlive bool
	resume    bool // keep a TLS session cache (session resumption)
	workers   int
}

// newClient returns an HTTP/1.1 client for the load generator.
func newClient(o clientOpts) *http.Client {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        o.workers,
		MaxIdleConnsPerHost: o.workers,
		DisableKeepAlives:   !o.keepAlive,
		DisableCompression:  true,
		TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{},
	}
	if o.proxy != "" {
		pu, _ := url.Parse(o.proxy)
		tr.Proxy = http.ProxyURL(pu)
		tr.TLSClientConfig = &tls.Config{RootCAs: o.roots}
		if o.resume {
			tr.TLSClientConfig.ClientSessionCache = tls.NewLRUClientSessionCache(64)
		}
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// fileServer is http.FileServer in a process of its own (this binary run
// with -serve-files), the baseline of scenario 6.
type fileServer struct {
	cmd *exec.Cmd
	url string
}

func startFileServer(ctx context.Context, dir string) (*fileServer, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, "-serve-files", dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, errors.New("file server did not start")
	}
	return &fileServer{cmd: cmd, url: "http://" + strings.TrimSpace(line)}, nil
}

func (f *fileServer) stop() {
	f.cmd.Process.Kill()
	f.cmd.Wait()
}

// serveFiles is the -serve-files mode: serve dir with http.FileServer on
// a loopback port, print the address, and serve until killed.
func serveFiles(dir string) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(ln.Addr().String())
	srv := &http.Server{Handler: http.FileServer(http.Dir(dir)), IdleTimeout: 2 * time.Minute}
	if err := srv.Serve(ln); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
