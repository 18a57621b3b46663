package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// smallObjects measures scenarios 6 and 7 on a warm gate.
func (b *runner) smallObjects(ctx context.Context, g *gateProc) error {
	mods, tiles, err := b.smallPaths()
	if err != nil {
		return err
	}
	dir, err := b.fileTree(g, mods, tiles)
	if err != nil {
		return err
	}
	fs, err := startFileServer(ctx, dir)
	if err != nil {
		return err
	}
	defer fs.stop()
	paths := append(append([]string(nil), mods...), sumdbPaths(tiles)...)
	gateURLs := prefixed("http://"+g.listen, paths)
	fileURLs := prefixed(fs.url, paths)
	var icptURLs []string
	for _, p := range mods {
		icptURLs = append(icptURLs, "https://proxy.golang.org"+p)
	}
	for _, p := range tiles {
		icptURLs = append(icptURLs, "https://sum.golang.org"+p)
	}
	if b.o.want(6) {
		// The same gate, but writing each log line as it comes: row 6c.
		g0, err := startGate(ctx, b.bin, b.dir("warm-unbuffered-log"), b.up.gateArgs(), "--log-flush-interval", "0")
		if err != nil {
			return err
		}
		defer g0.stop()
		g0URLs := prefixed("http://"+g0.listen, paths)
		for _, u := range g0URLs { // fetched and cached once
			if err := getOK(ctx, http.DefaultClient, u); err != nil {
				return err
			}
		}
		if err := b.throughput(ctx, g, g0, gateURLs, fileURLs, icptURLs, g0URLs); err != nil {
			return err
		}
	}
	if b.o.want(7) {
		return b.handshakes(ctx, g, icptURLs)
	}
	return nil
}

// throughput measures scenario 6: requests per second for cached small
// objects over keep-alive connections.
// g0 is the same gate with --log-flush-interval 0, at g0URLs.
func (b *runner) throughput(ctx context.Context, g, g0 *gateProc, gateURLs, fileURLs, icptURLs, g0URLs []string) error {
	w, d := b.o.workers, b.o.duration
	plain := newClient(clientOpts{keepAlive: true, workers: w})
	icpt := newClient(clientOpts{proxy: "http://" + g.listen, roots: g.roots(), keepAlive: true, resume: true, workers: w})
	var gate, file, ic, unbuf []float64
	for i := range b.o.runs {
		for j := range 4 {
			var r loadResult
			var err error
			switch (i + j) % 4 {
			case 3:
				r, err = load(ctx, plain, g0URLs, w, d)
				unbuf = append(unbuf, r.rate())
			case 0:
				r, err = load(ctx, plain, gateURLs, w, d)
				gate = append(gate, r.rate())
			case 1:
				r, err = load(ctx, plain, fileURLs, w, d)
				file = append(file, r.rate())
			case 2:
				r, err = load(ctx, icpt, icptURLs, w, d)
				ic = append(ic, r.rate())
			}
			if err != nil {
				return err
			}
		}
		b.logf(
			"small objects run %d: goproxy %.0f/s, file server %.0f/s, interception %.0f/s, log line by line %.0f/s",
			i+1,
			last(gate),
			last(file),
			last(ic),
			last(unbuf),
		)
	}
	if f := b.profileFile("small-goproxy-log-line-by-line"); f != "" {
		done := g0.profile(d+time.Second, f)
		if _, err := load(ctx, plain, g0URLs, w, d); err != nil {
			return err
		}
		if err := <-done; err != nil {
			return err
		}
	}
	if f := b.profileFile("small-goproxy"); f != "" {
		done := g.profile(d+time.Second, f)
		if _, err := load(ctx, plain, gateURLs, w, d); err != nil {
			return err
		}
		if err := <-done; err != nil {
			return err
		}
	}
	r := median(ratios(gate, file))
	met := r >= 0.7
	b.add(
		"6a",
		fmt.Sprintf("cached .mod/.info/tiles per second, GOPROXY endpoint ÷ http.FileServer (%d keep-alive workers)", w),
		fmt.Sprintf("%.2f (%.0f/s ÷ %.0f/s)", r, median(gate), median(file)),
		"≥ 0.7",
		&met,
	)
	b.add("6b", "cached small objects per second through interception (HTTPS, keep-alive)",
		fmt.Sprintf("%.0f/s (%.2f of the file server over plain HTTP)", median(ic), median(ratios(ic, file))), "report", nil)
	b.add("6c", "the same as 6a, access log buffered (default) ÷ written line by line (--log-flush-interval 0)",
		fmt.Sprintf("%.2f (%.0f/s ÷ %.0f/s; line by line %.2f of the file server)", median(ratios(gate, unbuf)),
			median(gate), median(unbuf), median(ratios(unbuf, file))), "report", nil)
	return nil
}

// handshakes measures scenario 7: new TLS connections per second through
// interception (each request a new CONNECT and handshake), without and
// with session resumption, and checks the leaf counter.
func (b *runner) handshakes(ctx context.Context, g *gateProc, icptURLs []string) error {
	// One connection to each intercepted name first, so that both leaves
	// exist before the count starts.
	warm := newClient(clientOpts{proxy: "http://" + g.listen, roots: g.roots(), workers: 1})
	if _, err := load(ctx, warm, []string{icptURLs[0], icptURLs[len(icptURLs)-1]}, 1, 200*time.Millisecond); err != nil {
		return err
	}
	before, err := g.counters()
	if err != nil {
		return err
	}
	var full, resumed []float64
	var resumedConns, resumedTotal, conns int64
	for i := range b.o.runs {
		for j := range 2 {
			resume := (i+j)%2 == 1
			c := newClient(
				clientOpts{proxy: "http://" + g.listen, roots: g.roots(), keepAlive: false, resume: resume, workers: b.o.workers},
			)
			r, err := load(ctx, c, icptURLs, b.o.workers, b.o.duration)
			if err != nil {
				return err
			}
			conns += r.requests
			if resume {
				resumed = append(resumed, r.rate())
				resumedConns += r.resumed
				resumedTotal += r.requests
			} else {
				full = append(full, r.rate())
			}
		}
		b.logf("handshakes run %d: full %.0f/s, with resumption %.0f/s", i+1, last(full), last(resumed))
	}
	after, err := g.counters()
	if err != nil {
		return err
	}
	issued := after["leaves_issued"]
	met := issued <= 2 && issued == before["leaves_issued"]
	b.add(
		"7",
		"new TLS connections per second through interception (CONNECT + handshake + one GET)",
		fmt.Sprintf(
			"%.0f/s full, %.0f/s offering resumption (%.0f%% resumed)",
			median(full),
			median(resumed),
			100*float64(resumedConns)/float64(max(resumedTotal, 1)),
		),
		"report",
		nil,
	)
	b.add("7b", "leaf certificates issued since start (2 names: proxy.golang.org, sum.golang.org)",
		fmt.Sprintf("%d, unchanged by %d new connections", issued, conns), "one per name", &met)
	return nil
}

// fileTree writes the small objects into a directory for http.FileServer:
// .mod and .info copied from the fixture, tiles as the gate serves them.
func (b *runner) fileTree(g *gateProc, mods, tiles []string) (string, error) {
	dir := b.dir("files")
	for _, p := range mods {
		data, err := os.ReadFile(filepath.Join(b.fx.tree, filepath.FromSlash(p)))
		if err != nil {
			return "", err
		}
		if err := writeFile(filepath.Join(dir, filepath.FromSlash(p)), data); err != nil {
			return "", err
		}
	}
	for _, p := range sumdbPaths(tiles) {
		resp, err := http.Get("http://" + g.listen + p)
		if err != nil {
			return "", err
		}
		data, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("GET %s: %s %v", p, resp.Status, err)
		}
		if err := writeFile(filepath.Join(dir, filepath.FromSlash(p)), data); err != nil {
			return "", err
		}
	}
	return dir, nil
}

func writeFile(name string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return err
	}
	return os.WriteFile(name, data, 0o644)
}

// sumdbPaths puts tile paths below the GOPROXY endpoint's /sumdb/<name>.
func sumdbPaths(tiles []string) []string {
	out := make([]string, len(tiles))
	for i, t := range tiles {
		out[i] = "/sumdb/sum.golang.org" + t
	}
	return out
}

func prefixed(base string, paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = base + p
	}
	return out
}
