package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/mod/module"

	"github.com/modgate/modgate/policy"
	"github.com/modgate/modgate/proxy/egress"
)

// limitedServer is a Server with limits and an Egress that may reach the
// echo server on loopback.
type limitedServer struct {
	addr     string // the proxy listener
	roots    *x509.CertPool
	tg       *testGate
	srv      *Server
	metrics  *Metrics
	echoAddr string
	// egressLogs holds the Egress's lines: every "connect" line.
	egressLogs *observer.ObservedLogs
}

func startLimitedServer(t *testing.T, lim Limits, o gateOptions) *limitedServer {
	t.Helper()
	tg := newTestGate(t, nil, o)
	reg := prometheus.NewRegistry()
	tg.gate.cfg.Metrics = NewMetrics(reg)
	echoHost, echoPort := echoServer(t)
	loopback, _ := egress.ParseRanges([]string{"127.0.0.0/8"})
	rules := hostRules{rules: map[string]policy.Action{fmt.Sprintf("%s:%d", echoHost, echoPort): policy.Allow}}
	core, logs := observer.New(zap.InfoLevel)
	e, err := egress.New(egress.Config{Policy: func() egress.HostPolicy { return rules }, AllowRanges: loopback,
		Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	srv, addr, ca := serveTestServer(t, tg, e, lim, zap.NewNop())
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return &limitedServer{addr: addr, roots: pool, tg: tg, srv: srv, metrics: tg.gate.cfg.Metrics,
		echoAddr: netip.AddrPortFrom(netip.MustParseAddr(echoHost), uint16(echoPort)).String(), egressLogs: logs}
}

// pipelinedConn sends connect in the same write as the first bytes written
// to it, and reads the CONNECT answer before the first read.
type pipelinedConn struct {
	net.Conn
	connect []byte
	br      *bufio.Reader
	status  int
}

func (c *pipelinedConn) Write(p []byte) (int, error) {
	if c.connect != nil {
		all := append(c.connect, p...)
		c.connect = nil
		if _, err := c.Conn.Write(all); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return c.Conn.Write(p)
}

func (c *pipelinedConn) Read(p []byte) (int, error) {
	if c.br == nil {
		c.br = bufio.NewReader(c.Conn)
		resp, err := http.ReadResponse(c.br, &http.Request{Method: http.MethodConnect})
		if err != nil {
			return 0, err
		}
		if c.status = resp.StatusCode; c.status != http.StatusOK {
			return 0, fmt.Errorf("CONNECT: %s", resp.Status)
		}
	}
	return c.br.Read(p)
}

// TestConnectPipelinedBytes sends a CONNECT and the first bytes of the
// tunnel (a TLS ClientHello, or a tunnel's payload) in one write: none of
// them may be lost.
func TestConnectPipelinedBytes(t *testing.T) {
	s := startLimitedServer(t, Limits{}, gateOptions{})
	t.Run("interception", func(t *testing.T) {
		c, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		pc := &pipelinedConn{Conn: c, connect: []byte("CONNECT proxy.golang.org:443 HTTP/1.1\r\nHost: proxy.golang.org:443\r\n\r\n")}
		tc := tls.Client(pc, &tls.Config{ServerName: "proxy.golang.org", RootCAs: s.roots})
		if err := tc.Handshake(); err != nil {
			t.Fatalf("TLS handshake with the ClientHello pipelined behind the CONNECT: %v", err)
		}
		fmt.Fprintf(tc, "GET /example.com/lib/@v/list HTTP/1.1\r\nHost: proxy.golang.org\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "v1.0.0") {
			t.Errorf("list through the pipelined interception: %d %q", resp.StatusCode, body)
		}
	})
	t.Run("tunnel", func(t *testing.T) {
		c, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		payload := "first bytes of the tunnel\n"
		fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n%s", s.echoAddr, s.echoAddr, payload)
		pc := &pipelinedConn{Conn: c}
		got := make([]byte, len(payload))
		if _, err := io.ReadFull(readerFunc(pc.Read), got); err != nil {
			t.Fatalf("reading the echo of the pipelined bytes: %v (status %d)", err, pc.status)
		}
		if string(got) != payload {
			t.Errorf("echo %q, want %q", got, payload)
		}
	})
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// TestConnectCap holds the cap's worth of CONNECTs (a tunnel and an
// interception) open: the next one is answered 503 with the reason and
// counted; once one closes, a CONNECT goes through again.
func TestConnectCap(t *testing.T) {
	s := startLimitedServer(t, Limits{MaxConnects: 2}, gateOptions{})
	open := func(target string) (net.Conn, int, string) {
		t.Helper()
		c, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
		resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodConnect})
		if err != nil {
			t.Fatalf("CONNECT %s: %v", target, err)
		}
		var body []byte
		if resp.StatusCode != http.StatusOK {
			body, _ = io.ReadAll(resp.Body)
		}
		return c, resp.StatusCode, string(body)
	}
	tunnel, st1, _ := open(s.echoAddr)
	_, st2, _ := open("proxy.golang.org:443")
	if st1 != 200 || st2 != 200 {
		t.Fatalf("CONNECTs under the cap: %d, %d", st1, st2)
	}
	_, st3, body := open(s.echoAddr)
	if st3 != http.StatusServiceUnavailable || !strings.Contains(body, "too many CONNECTs") || !strings.Contains(body, "--max-connects") {
		t.Errorf("CONNECT past the cap: %d %q; want 503 with the reason", st3, body)
	}
	var got dto.Metric
	if err := s.metrics.connects.WithLabelValues("over_cap").Write(&got); err != nil {
		t.Fatal(err)
	}
	if n := got.GetCounter().GetValue(); n != 1 {
		t.Errorf(`modgate_connect_total{decision="over_cap"} = %v, want 1`, n)
	}
	// The refusal is a "connect" line of the one shape, from the Egress,
	// at warn with a hint an operator can act on.
	lines := s.egressLogs.FilterMessage("connect").FilterField(zap.Int("status", http.StatusServiceUnavailable)).All()
	if len(lines) != 1 || lines[0].Level != zap.WarnLevel || lines[0].ContextMap()["decision"] != "refuse" ||
		!strings.Contains(fmt.Sprint(lines[0].ContextMap()["hint"]), "--max-connects") {
		t.Errorf("egress lines for the CONNECT past the cap: %+v; want one warn \"connect\" line, "+
			"decision refuse, with a --max-connects hint", lines)
	}
	tunnel.Close()
	deadline := time.Now().Add(5 * time.Second)
	for s.srv.OpenConnects() > 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if _, st, body := open(s.echoAddr); st != http.StatusOK {
		t.Errorf("CONNECT after one closed: %d %q", st, body)
	}
}

// TestWriteIdle serves a large cached zip to a client that reads slowly
// but steadily (served whole, over many times the idle bound) and to one
// that stops reading (cut after the idle bound, so the response's cache
// read ends).
func TestWriteIdle(t *testing.T) {
	const idle = time.Second // ten times the slow reader's pauses: a loaded machine may stall it
	s := startLimitedServer(t, Limits{WriteIdle: idle}, gateOptions{Dir: t.TempDir()})
	m := module.Version{Path: "example.com/large", Version: "v1.0.0"}
	const size = 16 << 20
	if _, err := s.tg.fake.AddLargeModule(m, size, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	path := modPath(t, m, ".zip")
	if r := get(t, "http://"+s.addr, path); r.status != 200 { // now cached
		t.Fatalf("warming the cache: %d %q", r.status, r.body)
	}
	request := func(t *testing.T) (net.Conn, *bufio.Reader, int64) {
		d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 32<<10) })
		}}
		c, err := d.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(60 * time.Second))
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, s.addr)
		br := bufio.NewReaderSize(c, 4<<10)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %v %v", path, resp, err)
		}
		n, _ := strconv.ParseInt(resp.Header.Get("Content-Length"), 10, 64)
		return c, bufio.NewReader(resp.Body), n
	}
	t.Run("slow but moving", func(t *testing.T) {
		_, body, want := request(t)
		start := time.Now()
		var got int64
		buf := make([]byte, 512<<10)
		for {
			n, err := io.ReadFull(body, buf)
			got += int64(n)
			if err != nil {
				break
			}
			time.Sleep(idle / 10)
		}
		if got != want {
			t.Errorf("slow reader got %d of %d bytes in %v", got, want, time.Since(start))
		}
		if d := time.Since(start); d < 2*idle {
			t.Logf("the slow read took only %v; the test is weaker than meant", d)
		}
	})
	t.Run("stopped", func(t *testing.T) {
		_, body, want := request(t)
		time.Sleep(3 * idle)
		got, err := io.Copy(io.Discard, body)
		if got >= want || err == nil {
			t.Errorf("a client that stopped reading for %v got %d of %d bytes (err %v); want the connection cut", 3*idle, got, want, err)
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("the client timed out rather than the gate cutting: %v", err)
		}
	})
}

// TestIdleWriteConnKeepsCallerProgress checks Write's contract directly:
// partial progress restarts the deadline; no progress for idle fails.
func TestIdleWriteConnKeepsCallerProgress(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := &idleWriteConn{Conn: a, idle: 100 * time.Millisecond}
	var wg sync.WaitGroup
	wg.Add(1)
	var got bytes.Buffer
	go func() { // reads 10 bytes every 50ms, then stops
		defer wg.Done()
		buf := make([]byte, 10)
		for range 10 {
			n, err := b.Read(buf)
			got.Write(buf[:n])
			if err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	n, err := c.Write(make([]byte, 1000))
	wg.Wait()
	if n != 100 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Write = %d, %v; want 100 bytes written (the reader's), then a deadline error", n, err)
	}
}
