package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"time"
)

// realUpstream is the module proxy of scenario 9, with the checksum
// database behind its /sumdb/ path.
const realUpstream = "https://proxy.golang.org"

// coldReal measures scenario 9: scenario 3 on the real network. A cold
// gate whose upstream is the real module proxy and checksum database
// (modgate's defaults), through its GOPROXY endpoint, divided by the same
// client straight to the real proxy. It skips, saying why, when the real
// upstream cannot be reached.
func (b *runner) coldReal(ctx context.Context) error {
	const what = "cold go mod download on the real upstream, GOPROXY endpoint ÷ direct to " + realUpstream
	if err := probe(ctx, realUpstream+"/sumdb/sum.golang.org/supported"); err != nil {
		b.add("9", what, "skipped: the real upstream cannot be reached: "+err.Error(), "≤ 1.25", nil)
		return nil
	}
	direct := []string{"GOPROXY=" + realUpstream, "GOSUMDB=sum.golang.org"}
	r, err := b.coldRuns(ctx, "cold-real", []string{"--upstream", realUpstream}, direct, 30*time.Second)
	if err != nil {
		return err
	}
	ratio := median(ratios(r.gate, r.direct))
	met := ratio <= 1.25
	b.add("9", what, fmt.Sprintf("%.2f (%.2fs ÷ %.2fs)", ratio, median(r.gate), median(r.direct)), "≤ 1.25", &met)
	b.add("9b", "cold on the real upstream, the gate's access log of its first run", r.log.String(), "report", nil)
	return nil
}

// probe GETs url within 10 s and wants a 200.
func probe(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// coldResult is what coldRuns measured.
type coldResult struct {
	gate, direct []float64  // wall seconds of each run
	log          accessSums // the gate's access log of the first run
	// CPU seconds (user + system) of each run: the client through the
	// gate, the gate itself, and the client direct.
	gateClientCPU, gateCPU, directClientCPU []float64
}

// coldRuns runs b.o.runs paired cold downloads of the workload: one
// through the GOPROXY endpoint of a gate started afresh with upArgs, and
// one with the client environment direct, alternating which goes first.
// The first run's gate is profiled for prof (into name.pprof, with
// -profile) and its access log is summed.
func (b *runner) coldRuns(ctx context.Context, name string, upArgs, direct []string,
	prof time.Duration) (coldResult, error) {
	var r coldResult
	for i := range b.o.runs {
		g, err := startGate(ctx, b.bin, b.dir(name), upArgs)
		if err != nil {
			return r, err
		}
		var done <-chan error
		if f := b.profileFile(name); f != "" && i == 0 {
			done = g.profile(prof, f)
		}
		var gateClientCPU, directClientCPU float64
		runGate := func() error {
			d, c, err := b.env.downloadCPU(ctx, b.fx, g.clientEnv(false))
			r.gate, gateClientCPU = append(r.gate, d.Seconds()), c.Seconds()
			return err
		}
		runDirect := func() error {
			d, c, err := b.env.downloadCPU(ctx, b.fx, direct)
			r.direct, directClientCPU = append(r.direct, d.Seconds()), c.Seconds()
			return err
		}
		first, second := runGate, runDirect
		if i%2 == 1 {
			first, second = runDirect, runGate
		}
		err = first()
		if err == nil {
			err = second()
		}
		if done != nil {
			<-done
		}
		gateCPU := g.cpu().Seconds()
		g.stop()
		if err != nil {
			return r, err
		}
		if i == 0 {
			if r.log, err = sumAccessLog(g.logFile); err != nil {
				return r, err
			}
		}
		r.gateClientCPU = append(r.gateClientCPU, gateClientCPU)
		r.gateCPU = append(r.gateCPU, gateCPU)
		r.directClientCPU = append(r.directClientCPU, directClientCPU)
		b.logf("%s run %d: gate %.2fs (CPU: client %.1fs, gate %.1fs), direct %.2fs (CPU: client %.1fs)",
			name, i+1, last(r.gate), gateClientCPU, gateCPU, last(r.direct), directClientCPU)
	}
	return r, nil
}

// accessSums adds up the access-log lines of zips and .mod files: how
// many, their answer times, their upstream times and their bytes.
type accessSums struct {
	zips, mods accessSum
}

type accessSum struct {
	n          int
	answer, up time.Duration
	bytes      int64
}

func (s accessSums) String() string {
	return fmt.Sprintf("%d zips: answers %.1fs, upstream %.1fs, %.0f MB; %d .mod: answers %.1fs, upstream %.1fs",
		s.zips.n, s.zips.answer.Seconds(), s.zips.up.Seconds(), float64(s.zips.bytes)/1e6,
		s.mods.n, s.mods.answer.Seconds(), s.mods.up.Seconds())
}

// sumAccessLog reads modgate's log file and sums its access-log lines.
func sumAccessLog(file string) (accessSums, error) {
	f, err := os.Open(file)
	if err != nil {
		return accessSums{}, err
	}
	defer f.Close()
	var s accessSums
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l struct {
			Msg, Kind  string
			Duration   float64 // milliseconds
			UpstreamMS int64   `json:"upstream_ms"`
			Bytes      int64
		}
		if json.Unmarshal(sc.Bytes(), &l) != nil || l.Msg != "request" {
			continue
		}
		sum := &s.mods
		switch l.Kind {
		case "zip":
			sum = &s.zips
		case "mod":
		default:
			continue
		}
		sum.n++
		sum.answer += time.Duration(l.Duration * float64(time.Millisecond))
		sum.up += time.Duration(l.UpstreamMS) * time.Millisecond
		sum.bytes += l.Bytes
	}
	return s, sc.Err()
}
