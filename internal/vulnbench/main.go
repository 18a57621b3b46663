// Command vulnbench measures the vulnerability database of policy/vuln on
// the real golang.org/x/vulndb module and prints a table:
//
//	go run ./internal/vulnbench [-version v0.0.0-...]
//
// It downloads the module zip with "go mod download" (the only use of the
// network), builds the database in a child process and reports that
// process's CPU time and peak RSS (getrusage), then measures the check a
// request pays (the index lookup and the policy decision) with
// testing.Benchmark, allocations included. It is a command, not a test:
// it needs the network and its figures are targets, not assertions.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/modgate/modgate/policy"
	"github.com/modgate/modgate/policy/vuln"
)

// defaultVersion is the version of golang.org/x/vulndb the figures use.
const defaultVersion = "v0.0.0-20261105234957-e22db6528018"

func main() {
	version := flag.String("version", defaultVersion, "version of golang.org/x/vulndb")
	child := flag.String("child", "", "internal: build the database of this zip and exit")
	flag.Parse()
	if *child != "" {
		if err := buildOnce(*child, *version); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if err := run(*version); err != nil {
		fmt.Fprintln(os.Stderr, "vulnbench:", err)
		os.Exit(1)
	}
}

// download returns the path of the module zip in the module cache.
func download(version string) (string, time.Time, error) {
	out, err := exec.Command("go", "mod", "download", "-json", "golang.org/x/vulndb@"+version).Output()
	if err != nil {
		return "", time.Time{}, fmt.Errorf("go mod download: %w", err)
	}
	var d struct{ Zip, Info string }
	if err := json.Unmarshal(out, &d); err != nil {
		return "", time.Time{}, err
	}
	data, err := os.ReadFile(d.Info)
	if err != nil {
		return "", time.Time{}, err
	}
	var info struct{ Time time.Time }
	err = json.Unmarshal(data, &info)
	return d.Zip, info.Time, err
}

// build builds the database of the zip.
func build(zipPath, version string, t time.Time) (*vuln.DB, error) {
	f, err := os.Open(zipPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	return vuln.Build(f, fi.Size(), vuln.Source{Module: "golang.org/x/vulndb", Version: version, Time: t})
}

// buildOnce is the child: one build, its counts on stdout.
func buildOnce(zipPath, version string) error {
	db, err := build(zipPath, version, time.Now())
	if err != nil {
		return err
	}
	fmt.Printf("%d entries, %d skipped", db.Entries, db.Skipped)
	return nil
}

func run(version string) error {
	zipPath, t, err := download(version)
	if err != nil {
		return err
	}
	fi, err := os.Stat(zipPath)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	start := time.Now()
	cmd := exec.Command(self, "-child", zipPath, "-version", version)
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("child build: %w", err)
	}
	wall := time.Since(start)
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	rss := float64(ru.Maxrss) / 1024 // KiB on Linux
	db, err := build(zipPath, version, t)
	if err != nil {
		return err
	}
	ns, allocs := checkCost(db, allTargets)
	nsClean, allocsClean := checkCost(db, cleanTargets)
	fmt.Printf("golang.org/x/vulndb@%s: zip %.1f MiB, %s\n\n", version, float64(fi.Size())/(1<<20), out)
	fmt.Println("| measure | result | target | met |")
	fmt.Println("|---|---|---|---|")
	fmt.Printf("| build: CPU (user+sys) | %.2fs (wall %.2fs) | ≤ 5s | %s |\n",
		cpu.Seconds(), wall.Seconds(), met(cpu <= 5*time.Second))
	fmt.Printf("| build: peak RSS (ru_maxrss) | %.0f MiB | ≤ 150 MiB | %s |\n", rss, met(rss <= 150))
	fmt.Printf("| check per request, unaffected versions (index lookup + Decide), CPU "+
		"| %.0f ns/op, %d allocs/op | ≤ 2 µs | %s |\n",
		nsClean, allocsClean, met(nsClean <= 2000))
	fmt.Printf("| check per request, mix with affected ones (the denial's reason built), CPU "+
		"| %.0f ns/op, %d allocs/op | ≤ 2 µs | %s |\n",
		ns, allocs, met(ns <= 2000))
	return nil
}

// checkCost measures what the vulnerability check adds to a request: the
// lookup by module path and the policy decision, over a mix of affected,
// unaffected and unknown modules.
func checkCost(db *vuln.DB, targets [][2]string) (nsPerOp float64, allocs int64) {
	p, err := policy.Parse([]byte("vulnerable:\n  action: deny\n  ignore: [GO-2020-0001]\n"))
	if err != nil {
		panic(err)
	}
	check := func(i int) {
		tg := targets[i%len(targets)]
		f := policy.Facts{VulnsKnown: true}
		for _, m := range db.Affected(tg[0], tg[1]) {
			f.Vulns = append(f.Vulns, policy.Vuln{ID: m.ID, Fixed: m.Fixed, FixedOrder: m.FixedOrder,
				Reviewed: m.Reviewed, Withdrawn: m.Withdrawn})
		}
		p.Decide(policy.Input{Module: tg[0], Version: tg[1], Facts: f})
	}
	r := testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			check(i)
			i++
		}
	})
	// CPU time per check, which other processes on a shared machine do
	// not inflate as they do the wall time testing.Benchmark reports.
	const n = 400000
	before := cpuTime()
	for i := range n {
		check(i)
	}
	return float64(cpuTime()-before) / n, r.AllocsPerOp()
}

// cpuTime is the process's CPU time so far (user and system).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// The module versions a check is measured on: ones no entry affects
// (modules with entries, at fixed versions, and modules without), and a
// mix with affected ones.
var (
	cleanTargets = [][2]string{
		{"golang.org/x/text", "v0.41.0"}, {"golang.org/x/net", "v0.99.0"},
		{"github.com/gin-gonic/gin", "v1.99.0"},
		{"example.com/unknown", "v1.0.0"}, {"github.com/google/uuid", "v1.6.0"}, {"golang.org/x/crypto", "v0.99.0"},
	}
	allTargets = append([][2]string{
		{"golang.org/x/text", "v0.3.5"}, {"golang.org/x/net", "v0.0.0-20220524220425-1d687d428aca"},
	}, cleanTargets...)
)

func met(ok bool) string {
	if ok {
		return "yes"
	}
	return "no"
}
