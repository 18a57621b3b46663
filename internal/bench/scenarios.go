package main

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/dirhash"
)

// runner runs the scenarios and collects the table.
type runner struct {
	o    options
	fx   *fixture
	up   *upstream
	env  *goEnv
	bin  string
	work string
	logf func(string, ...any)
	rows []row
	n    int
}

// row is one line of the table.
type row struct {
	id, what, value, target, met string
}

func (b *runner) add(id, what, value, target string, met *bool) {
	m := "report"
	if met != nil {
		m = map[bool]string{true: "yes", false: "NO"}[*met]
	}
	b.rows = append(b.rows, row{id, what, value, target, m})
	b.logf("%s %s: %s (target %s)", id, what, value, target)
}

// dir makes a fresh directory for one scenario or gate.
func (b *runner) dir(name string) string {
	b.n++
	d := filepath.Join(b.work, fmt.Sprintf("%02d-%s", b.n, name))
	os.MkdirAll(d, 0o755)
	return d
}

// profileFile is where a CPU profile of name goes, or "" without -profile.
func (b *runner) profileFile(name string) string {
	if b.o.profile == "" {
		return ""
	}
	return filepath.Join(b.o.profile, name+".pprof")
}

// all runs the chosen scenarios.
func (b *runner) all(ctx context.Context) error {
	if b.o.want(1) || b.o.want(2) || b.o.want(6) || b.o.want(7) {
		if err := b.warm(ctx); err != nil {
			return fmt.Errorf("warm scenarios: %w", err)
		}
	}
	steps := []struct {
		n  int
		fn func(context.Context) error
	}{{3, b.cold}, {4, b.big}, {5, b.stampede}, {8, b.million}, {9, b.coldReal},
		{clusterScenario, b.cluster}, {bundleScenario, b.bundles}}
	for _, s := range steps {
		if b.o.want(s.n) {
			if err := s.fn(ctx); err != nil {
				return fmt.Errorf("scenario %d: %w", s.n, err)
			}
		}
	}
	return nil
}

// fileEnv is the go command environment of the file:// baseline. The
// workload's go.sum is complete, so no checksum database is consulted;
// GOSUMDB points at the local one all the same.
func (b *runner) fileEnv() []string {
	return []string{"GOPROXY=file://" + b.fx.tree, "GOSUMDB=" + b.up.sumdbArg()}
}

// directEnv is the go command environment straight to the local upstream.
func (b *runner) directEnv() []string {
	return []string{"GOPROXY=" + b.up.url, "GOSUMDB=" + b.up.sumdbArg()}
}

// warm runs scenarios 1, 2, the idle memory of 4, 6 and 7 on one gate
// whose cache is filled first.
func (b *runner) warm(ctx context.Context) error {
	g, err := startGate(ctx, b.bin, b.dir("warm"), b.up.gateArgs())
	if err != nil {
		return err
	}
	defer g.stop()
	b.logf("filling the cache through the GOPROXY endpoint, then once through interception")
	if _, err := b.env.download(ctx, b.fx, g.clientEnv(false)); err != nil {
		return err
	}
	if _, err := b.env.download(ctx, b.fx, g.clientEnv(true)); err != nil {
		return err
	}
	if b.o.want(1) || b.o.want(2) {
		if err := b.warmDownloads(ctx, g); err != nil {
			return err
		}
		time.Sleep(3 * time.Second)
		m, err := g.mem()
		if err != nil {
			return err
		}
		met := m.RSS <= 100<<10
		b.add(
			"4b",
			"RSS idle after the warm runs",
			fmt.Sprintf("%s (anon %s, file %s)", mib(m.RSS), mib(m.Anon), mib(m.File)),
			"≤ 100 MiB",
			&met,
		)
	}
	if b.o.want(6) || b.o.want(7) {
		return b.smallObjects(ctx, g)
	}
	return nil
}

// warmDownloads measures scenarios 1 and 2: go mod download through
// interception and through the GOPROXY endpoint, each divided by file://.
func (b *runner) warmDownloads(ctx context.Context, g *gateProc) error {
	modes := []struct {
		name string
		env  []string
	}{{"file", b.fileEnv()}, {"intercept", g.clientEnv(true)}, {"goproxy", g.clientEnv(false)}}
	times := make(map[string][]float64)
	cpu := make(map[string][]float64) // go command and gate CPU seconds
	for i := range b.o.runs {
		for j := range modes {
			m := modes[(i+j)%len(modes)]
			g0 := g.cpu()
			d, c, err := b.env.downloadCPU(ctx, b.fx, m.env)
			if err != nil {
				return err
			}
			times[m.name] = append(times[m.name], d.Seconds())
			cpu[m.name+"/go"] = append(cpu[m.name+"/go"], c.Seconds())
			cpu[m.name+"/gate"] = append(cpu[m.name+"/gate"], (g.cpu() - g0).Seconds())
		}
		b.logf("warm run %d: file %.2fs, intercept %.2fs, goproxy %.2fs", i+1,
			last(times["file"]), last(times["intercept"]), last(times["goproxy"]))
	}
	if f := b.profileFile("warm-intercept"); f != "" {
		done := g.profile(time.Duration(median(times["intercept"])+1)*time.Second, f)
		if _, err := b.env.download(ctx, b.fx, g.clientEnv(true)); err != nil {
			return err
		}
		if err := <-done; err != nil {
			return err
		}
	}
	for _, m := range modes {
		b.logf(
			"warm %s: median CPU of the go command %.2fs, of modgate %.2fs",
			m.name,
			median(cpu[m.name+"/go"]),
			median(cpu[m.name+"/gate"]),
		)
	}
	r1 := median(ratios(times["intercept"], times["file"]))
	r2 := median(ratios(times["goproxy"], times["file"]))
	met1, met2 := r1 <= 1.10, r2 <= 1.05
	b.add(
		"1",
		"warm go mod download, interception ÷ file://",
		fmt.Sprintf("%.2f (%.2fs ÷ %.2fs)", r1, median(times["intercept"]), median(times["file"])),
		"≤ 1.10",
		&met1,
	)
	b.add(
		"2",
		"warm go mod download, GOPROXY endpoint ÷ file://",
		fmt.Sprintf("%.2f (%.2fs ÷ %.2fs)", r2, median(times["goproxy"]), median(times["file"])),
		"≤ 1.05",
		&met2,
	)
	b.add("1c", "warm: median CPU seconds of the go command / of modgate per download",
		fmt.Sprintf(
			"file:// %.1f / -; interception %.1f / %.2f; GOPROXY %.1f / %.2f",
			median(cpu["file/go"]),
			median(
				cpu["intercept/go"],
			),
			median(cpu["intercept/gate"]),
			median(cpu["goproxy/go"]),
			median(cpu["goproxy/gate"]),
		), "report", nil)
	return nil
}

// cold measures scenario 3: a cold gate (fresh data directory per run)
// through its GOPROXY endpoint, divided by the same client straight to
// the local upstream.
func (b *runner) cold(ctx context.Context) error {
	res, err := b.coldRuns(ctx, "cold-goproxy", b.up.gateArgs(), b.directEnv(), 15*time.Second)
	if err != nil {
		return err
	}
	gate, direct := res.gate, res.direct
	b.add("3b", "cold on the local upstream, the gate's access log of its first run", res.log.String(), "report", nil)
	if err := b.coldCPU(res); err != nil {
		return err
	}
	r := median(ratios(gate, direct))
	met := r <= 1.15
	b.add(
		"3",
		"cold go mod download, GOPROXY endpoint ÷ direct to upstream",
		fmt.Sprintf("%.2f (%.2fs ÷ %.2fs)", r, median(gate), median(direct)),
		"≤ 1.15",
		&met,
	)
	return nil
}

// coldCPU adds row 3c: where the CPU of the cold runs went, and the least
// a gate that verifies every zip costs when the run is CPU-bound. Decision:
// the gate must decompress and hash every zip (dirhash.HashZip) before its
// last bytes go out, as the client does again on its side; on a machine
// whose cores the client already fills, that work alone adds its CPU time
// to the wall time, whatever else the gate does or does not do.
func (b *runner) coldCPU(res coldResult) error {
	var zips int
	start := time.Now()
	err := filepath.WalkDir(b.fx.tree, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".zip") {
			return err
		}
		zips++
		_, err = dirhash.HashZip(p, dirhash.Hash1)
		return err
	})
	if err != nil {
		return fmt.Errorf("hashing the fixture's zips: %w", err)
	}
	verify := time.Since(start).Seconds()
	client, wall := median(res.directClientCPU), median(res.direct)
	b.add("3c", "cold on the local upstream, CPU (medians of the runs)", fmt.Sprintf(
		"direct: client %.1fs of CPU in %.1fs (%.1f of %d cores busy); through the gate: client %.1fs, gate %.1fs; "+
			"verifying the %d zips alone (dirhash.HashZip, one core) %.1fs, so a CPU-bound run through any verifying gate "+
			"is at least %.2f× direct here", client, wall, client/wall, runtime.NumCPU(), median(res.gateClientCPU),
		median(res.gateCPU), zips, verify, (client+verify)/client), "report", nil)
	return nil
}

// ratios returns a[i]/b[i].
func ratios(a, b []float64) []float64 {
	out := make([]float64, min(len(a), len(b)))
	for i := range out {
		out[i] = a[i] / b[i]
	}
	return out
}

func last(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	return xs[len(xs)-1]
}

// mib formats KiB as MiB.
func mib(kib int64) string { return fmt.Sprintf("%.0f MiB", float64(kib)/1024) }
