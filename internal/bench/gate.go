package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/modgate/modgate/internal/modfixture"
)

// upstream is the local module proxy and checksum database over the
// fixture, served by this process.
type upstream struct {
	*modfixture.Server
	url   string
	srv   *http.Server
	sumdb string // --upstream-sumdb of an upstream without a Server (scenario 8)
}

func startUpstream(ctx context.Context, fx *fixture, logf func(string, ...any)) (*upstream, error) {
	start := time.Now()
	s, err := modfixture.New(ctx, fx.tree, fx.sums)
	if err != nil {
		return nil, err
	}
	logf(
		"local upstream: %d module versions hashed and in the checksum database (%v)",
		s.TreeSize(),
		time.Since(start).Round(time.Millisecond),
	)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	u := &upstream{Server: s, url: "http://" + ln.Addr().String(), srv: &http.Server{Handler: s}}
	go u.srv.Serve(ln)
	return u, nil
}

func (u *upstream) close() { u.srv.Close() }

// sumdbArg is modgate's --upstream-sumdb for the local checksum database.
func (u *upstream) sumdbArg() string {
	if u.Server == nil {
		return u.sumdb
	}
	return u.VerifierKey() + " " + u.url + "/sumdb/" + modfixture.Name
}

// gateProc is a running modgate serve.
type gateProc struct {
	cmd      *exec.Cmd
	dataDir  string
	logFile  string // modgate's log: its access-log lines
	listen   string
	admin    string
	debug    string
	verifier string
	done     chan struct{}
}

// gateArgs are modgate's upstream flags for the local upstream.
func (u *upstream) gateArgs() []string {
	return []string{"--upstream", u.url, "--upstream-sumdb", u.sumdbArg()}
}

// startGate runs modgate serve with the data directory dir/data (fresh,
// unless the caller filled it) and the upstream flags upArgs (see
// upstream.gateArgs), logging at the default level (info: one access-log
// line per request) to a file, and waits until it is ready.
func startGate(ctx context.Context, bin, dir string, upArgs []string, extra ...string) (*gateProc, error) {
	g := &gateProc{dataDir: filepath.Join(dir, "data"), logFile: filepath.Join(dir, "modgate.log"),
		done: make(chan struct{})}
	args := append([]string{"serve", "--data-dir", g.dataDir, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
		"--debug-listen", "127.0.0.1:0"}, upArgs...)
	args = append(args, extra...)
	g.cmd = exec.Command(bin, args...)
	g.cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+dir)
	stderr, err := g.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	logFile, err := os.Create(g.logFile)
	if err != nil {
		return nil, err
	}
	if err := g.cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	addrs := make(chan map[string]string, 2)
	go g.readLog(stderr, logFile, addrs)
	deadline := time.After(60 * time.Second)
	for g.listen == "" || g.debug == "" {
		select {
		case a := <-addrs:
			g.listen, g.admin = cmp.Or(a["listen"], g.listen), cmp.Or(a["admin"], g.admin)
			g.debug = cmp.Or(a["debug"], g.debug)
		case <-g.done:
			return nil, fmt.Errorf("modgate exited before serving; see %s", logFile.Name())
		case <-deadline:
			g.stop()
			return nil, errors.New("modgate did not start in 60s")
		}
	}
	if err := g.waitReady(ctx); err != nil {
		g.stop()
		return nil, err
	}
	out, err := exec.CommandContext(ctx, bin, "key", "verifier", "--data-dir", g.dataDir).Output()
	if err != nil {
		g.stop()
		return nil, fmt.Errorf("modgate key verifier: %w", err)
	}
	g.verifier = strings.TrimSpace(string(out))
	return g, nil
}

// readLog copies modgate's log to a file and reports the addresses of its
// listeners from its startup lines.
func (g *gateProc) readLog(r io.Reader, w *os.File, addrs chan<- map[string]string) {
	defer close(g.done)
	defer w.Close()
	bw := bufio.NewWriterSize(w, 64<<10)
	defer bw.Flush()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		bw.Write(line)
		bw.WriteByte('\n')
		if !strings.Contains(string(line[:min(len(line), 120)]), `"modgate `) {
			continue
		}
		var rec struct{ Msg, Listen, Admin, Debug string }
		if json.Unmarshal(line, &rec) == nil && (rec.Msg == "modgate serving" || rec.Msg == "modgate debug listener") {
			addrs <- map[string]string{"listen": rec.Listen, "admin": rec.Admin, "debug": rec.Debug}
		}
	}
	g.cmd.Wait()
}

func (g *gateProc) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + g.admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return errors.New("modgate not ready after 30s")
}

// stop ends modgate with SIGTERM and waits for it.
func (g *gateProc) stop() {
	if g.cmd.Process == nil {
		return
	}
	g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.done:
	case <-time.After(20 * time.Second):
		g.cmd.Process.Kill()
		<-g.done
	}
}

// clientEnv is the go command environment that reaches the gate by
// interception (HTTPS_PROXY) or as its GOPROXY.
func (g *gateProc) clientEnv(intercept bool) []string {
	env := []string{"GOSUMDB=" + g.verifier, "SSL_CERT_FILE=" + filepath.Join(g.dataDir, "ca.pem")}
	if intercept {
		return append(env, "GOPROXY=https://proxy.golang.org", "HTTPS_PROXY=http://"+g.listen)
	}
	return append(env, "GOPROXY=http://"+g.listen)
}

// counters reads the debug listener's counters.
func (g *gateProc) counters() (map[string]int64, error) {
	resp, err := http.Get("http://" + g.debug + "/debug/counters")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var c map[string]int64
	return c, json.NewDecoder(resp.Body).Decode(&c)
}

// profile records a CPU profile of modgate for d into file, in the
// background; wait for the returned channel.
func (g *gateProc) profile(d time.Duration, file string) <-chan error {
	ch := make(chan error, 1)
	go func() {
		resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", g.debug, int(d.Seconds())))
		if err != nil {
			ch <- err
			return
		}
		defer resp.Body.Close()
		f, err := os.Create(file)
		if err != nil {
			ch <- err
			return
		}
		_, err = io.Copy(f, resp.Body)
		f.Close()
		ch <- err
	}()
	return ch
}

// cpu returns the CPU time (user + system) modgate has used so far.
func (g *gateProc) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", g.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// Fields after the command name (which may hold spaces) in parentheses.
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / clockTicks
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times on Linux.
const clockTicks = 100

// memory is what /proc/<pid>/status says of a process's memory, in KiB.
type memory struct{ HWM, RSS, Anon, File int64 }

// mem reads modgate's memory figures.
func (g *gateProc) mem() (memory, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", g.cmd.Process.Pid))
	if err != nil {
		return memory{}, err
	}
	var m memory
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmHWM":
			m.HWM = n
		case "VmRSS":
			m.RSS = n
		case "RssAnon":
			m.Anon = n
		case "RssFile":
			m.File = n
		}
	}
	return m, nil
}

// sampleMem polls mem every 20 ms until stop is closed and returns the
// highest of each figure.
func (g *gateProc) sampleMem(stop <-chan struct{}) <-chan memory {
	out := make(chan memory, 1)
	go func() {
		var peak memory
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			if m, err := g.mem(); err == nil {
				peak = memory{max(peak.HWM, m.HWM), max(peak.RSS, m.RSS), max(peak.Anon, m.Anon), max(peak.File, m.File)}
			}
			select {
			case <-stop:
				out <- peak
				return
			case <-t.C:
			}
		}
	}()
	return out
}
