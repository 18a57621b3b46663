// Command bench measures modgate against baselines and prints a table:
//
//	go run ./internal/bench [-fixture DIR] [-runs N] [-profile DIR] ...
//
// Its workload is the module graph of a large public Go service (by default
// the go.mod and go.sum of github.com/caddyserver/caddy/v2@v2.11.9: 167
// module zips and 320 go.mod files), downloaded from the module proxy into
// the fixture directory the first time (the only use of the network), plus
// a synthetic 300 MiB module. A local upstream (internal/modfixture) serves
// those files with a checksum database computed over them. modgate runs as
// the real binary, built from this repository, with a fresh data
// directory per scenario; every go command gets a fresh GOPATH, GOMODCACHE
// and GOCACHE, GOFLAGS=-mod=mod, GOTOOLCHAIN=local and a HOME whose go
// telemetry is off.
//
// Figures are medians of paired runs: each run measures modgate and its
// baseline side by side (alternating which goes first) and the ratio of
// the pair is taken, so load from other processes on the machine affects
// both sides of a ratio alike.
//
// It is a command, not a test: it needs the network to build its fixture
// and takes minutes, so it stays out of go test ./....
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// options are the command line of the bench.
type options struct {
	fixture  string
	workload string
	runs     int
	only     string
	modgate  string
	profile  string
	duration time.Duration
	workers  int
	keep     bool
	objects  int // scenario 8's large cache
}

func main() {
	if len(os.Args) == 3 && os.Args[1] == "-serve-files" {
		os.Exit(serveFiles(os.Args[2]))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cacheDir, _ := os.UserCacheDir()
	fs.StringVar(
		&o.fixture,
		"fixture",
		filepath.Join(cacheDir, "modgate-bench"),
		"fixture directory (built on first use: needs the network once)",
	)
	fs.StringVar(&o.workload, "workload", defaultWorkload, "module@version whose go.mod and go.sum are the workload")
	fs.IntVar(&o.runs, "runs", 5, "paired runs per figure")
	fs.StringVar(&o.only, "only", "",
		"comma list of scenarios to run (1-9, 9 needs the network; 12: cluster; 20: bundles); empty runs all")
	fs.StringVar(&o.modgate, "modgate", "", "modgate binary; empty builds ./cmd/modgate of this repository")
	fs.StringVar(&o.profile, "profile", "", "directory for CPU profiles of modgate during the scenarios (pprof)")
	fs.DurationVar(&o.duration, "duration", 3*time.Second, "length of each load-generator measurement")
	fs.IntVar(&o.workers, "workers", 8, "load-generator workers (keep-alive connections)")
	fs.BoolVar(&o.keep, "keep", false, "keep the scenarios' temporary directories")
	fs.IntVar(&o.objects, "objects", 1_000_000, "small objects in scenario 8's large cache (compared with 10,000)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := bench(ctx, o, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	}
	return 0
}

// bench builds the fixture and the binary, runs the scenarios and prints
// the table.
func bench(ctx context.Context, o options, stdout, stderr io.Writer) error {
	logf := func(format string, args ...any) {
		fmt.Fprintf(stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}
	work, err := os.MkdirTemp("", "modgate-bench-")
	if err != nil {
		return err
	}
	if !o.keep {
		defer removeAll(work)
	}
	env, err := newGoEnv(ctx, work)
	if err != nil {
		return err
	}
	bin := o.modgate
	if bin == "" {
		if bin, err = buildModgate(ctx, work); err != nil {
			return err
		}
	}
	var fx *fixture
	var up *upstream
	if o.only != "8" { // scenario 8 needs neither the fixture nor the local upstream
		if fx, err = buildFixture(ctx, o.fixture, o.workload, env, logf); err != nil {
			return err
		}
		if o.want(clusterScenario) { // the cluster's 48 MiB zip (cluster.go)
			if err := ensureClusterZip(fx); err != nil {
				return err
			}
		}
		if up, err = startUpstream(ctx, fx, logf); err != nil {
			return err
		}
		defer up.close()
	}
	if o.profile != "" {
		if err := os.MkdirAll(o.profile, 0o755); err != nil {
			return err
		}
	}
	b := &runner{o: o, fx: fx, up: up, env: env, bin: bin, work: work, logf: logf}
	if err := b.all(ctx); err != nil {
		return err
	}
	b.printTable(stdout)
	return nil
}

// want reports whether scenario n is to run.
func (o options) want(n int) bool {
	if o.only == "" {
		return true
	}
	for _, s := range strings.Split(o.only, ",") {
		if strings.TrimSpace(s) == fmt.Sprint(n) {
			return true
		}
	}
	return false
}
