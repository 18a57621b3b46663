package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/modgate/modgate/pki"
	"github.com/modgate/modgate/policy"
	"github.com/modgate/modgate/proxy/egress"
)

// fakeResolver maps names to addresses; other names do not exist.
type fakeResolver map[string][]string

func (r fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	list, ok := r[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	var out []netip.Addr
	for _, s := range list {
		out = append(out, netip.MustParseAddr(s))
	}
	return out, nil
}

// hostRules is a egress.HostPolicy: "host:port" → action; anything else is denied
// by rule "default". Report makes denials WouldDeny.
type hostRules struct {
	rules  map[string]policy.Action
	report bool
}

func (h hostRules) DecideHost(host string, port int) policy.Decision {
	if a, ok := h.rules[fmt.Sprintf("%s:%d", host, port)]; ok && a == policy.Allow {
		return policy.Decision{Allowed: true, Action: policy.Allow, Rule: "allow-" + host, Reason: "allowed by a test rule"}
	}
	d := policy.Decision{
		Action: policy.Deny,
		Rule:   "default",
		Reason: fmt.Sprintf("no egress rule allows %s:%d", host, port),
	}
	if h.report {
		d.Allowed, d.WouldDeny = true, true
	}
	return d
}

// echoServer accepts connections on loopback and echoes what it reads.
func echoServer(t *testing.T) (host string, port int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	a := ln.Addr().(*net.TCPAddr)
	return a.IP.String(), a.Port
}

// egressServer is a Server with an Egress, listening on loopback, whose
// log lines are observed.
type egressServer struct {
	addr string // host:port of the proxy listener
	logs *observer.ObservedLogs
	fake *testGate
}

func startEgressServer(t *testing.T, cfg egress.Config) *egressServer {
	t.Helper()
	tg := newTestGate(t, nil, gateOptions{})
	core, logs := observer.New(zapcore.DebugLevel)
	cfg.Logger = zap.New(core)
	e, err := egress.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, addr, _ := serveTestServer(t, tg, e, Limits{}, zap.New(core))
	return &egressServer{addr: addr, logs: logs, fake: tg}
}

// serveTestServer serves tg's gate on a loopback listener with egress e,
// limits lim and interception leaves from a new CA, until the test ends.
// It returns the Server, its address and the CA.
func serveTestServer(t *testing.T, tg *testGate, e *egress.Egress, lim Limits,
	logger *zap.Logger) (*Server, string, *pki.CA) {
	t.Helper()
	ca, err := pki.NewCA(DefaultIntercept)
	if err != nil {
		t.Fatal(err)
	}
	leaves, err := pki.NewLeaves(t.Context(), pki.LeavesConfig{CA: ca, Dir: t.TempDir(), Allow: tg.gate.Intercepts})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(leaves.Stop)
	srv := NewServer(tg.gate, leaves.TLSConfig(), logger)
	srv.SetEgress(e)
	srv.SetLimits(lim)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return srv, ln.Addr().String(), ca
}

// connect sends a CONNECT for target and returns the answer and the
// connection (open after a 200).
func (s *egressServer) connect(t *testing.T, target string) (response, net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	// A valid Host header, so that the target itself reaches the gate.
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: example.org:443\r\n\r\n", target)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatalf("CONNECT %s: %v", target, err)
	}
	var body []byte
	if resp.StatusCode != http.StatusOK {
		body, _ = io.ReadAll(resp.Body)
	}
	return response{resp.StatusCode, resp.Header, body}, c, br
}

// lastLog returns the context of the last log line with message msg.
func lastLog(t *testing.T, logs *observer.ObservedLogs, msg string) map[string]any {
	t.Helper()
	var last map[string]any
	for _, e := range logs.FilterMessage(msg).All() {
		last = e.ContextMap()
	}
	if last == nil {
		t.Fatalf("no %q log line; have %v", msg, logs.All())
	}
	return last
}

func TestEgressConnect(t *testing.T) {
	_, echoPort := echoServer(t)
	ep := fmt.Sprint(echoPort)
	resolver := fakeResolver{
		"allowed.test":  {"127.0.0.1"},
		"private.test":  {"10.0.0.7"},
		"mixed.test":    {"127.0.0.1", "10.0.0.7"},
		"metadata.test": {"169.254.169.254"},
		"nat64.test":    {"64:ff9b::7f00:1"},
		"mapped.test":   {"::ffff:127.0.0.1"},
		"v6.test":       {"::1"},
		"sinkhole.test": {"0.0.0.0"}, // what DNS filters answer for a blocked name
		"anyv6.test":    {"::"},
	}
	allowAll := map[string]policy.Action{}
	for _, h := range []string{"allowed.test", "private.test", "mixed.test", "metadata.test", "nat64.test",
		"mapped.test", "v6.test", "gone.test", "sinkhole.test", "anyv6.test",
		"127.0.0.1", "169.254.169.254", "::1", "10.0.0.7"} {
		allowAll[h+":"+ep] = policy.Allow
		allowAll[h+":443"] = policy.Allow
	}
	loopback, _ := egress.ParseRanges([]string{"127.0.0.0/8"})
	everything, _ := egress.ParseRanges([]string{"0.0.0.0/0", "::/0"})
	tests := []struct {
		name     string
		policy   egress.HostPolicy
		allow    []netip.Prefix
		target   string
		want     int
		wantBody []string
	}{
		{"allowed name", hostRules{rules: allowAll}, loopback, "allowed.test:" + ep, 200, nil},
		{"allowed IPv4 literal", hostRules{rules: allowAll}, loopback, "127.0.0.1:" + ep, 200, nil},
		{"upper case and trailing dot", hostRules{rules: allowAll}, loopback, "ALLOWED.test.:" + ep, 200, nil},
		{"IPv4-mapped answer in an allowed range", hostRules{rules: allowAll}, loopback, "mapped.test:" + ep, 200, nil},
		{"report mode lets a denial through", hostRules{report: true}, loopback, "allowed.test:" + ep, 200, nil},
		{"no egress rules", nil, loopback, "allowed.test:" + ep, 403, []string{"refused", "no egress rules are configured"}},
		{
			"denied by the host rules",
			hostRules{rules: map[string]policy.Action{}},
			loopback,
			"allowed.test:" + ep,
			403,
			[]string{"refused", "no egress rule allows allowed.test:" + ep, "egress rule default"},
		},
		{
			"other port than allowed",
			hostRules{rules: allowAll},
			loopback,
			"allowed.test:8443",
			403,
			[]string{"no egress rule allows allowed.test:8443"},
		},
		{
			"loopback without --allow-range",
			hostRules{rules: allowAll},
			nil,
			"allowed.test:" + ep,
			403,
			[]string{"allowed.test resolves to an address modgate may not reach: 127.0.0.1", "loopback", "--allow-range"},
		},
		{
			"loopback literal without --allow-range",
			hostRules{rules: allowAll},
			nil,
			"127.0.0.1:" + ep,
			403,
			[]string{"127.0.0.1 is a loopback address"},
		},
		{
			"IPv6 loopback literal",
			hostRules{rules: allowAll},
			loopback,
			"[::1]:443",
			403,
			[]string{"::1 is a loopback address"},
		},
		{
			"IPv6 loopback answer",
			hostRules{rules: allowAll},
			loopback,
			"v6.test:443",
			403,
			[]string{"v6.test resolves to an address modgate may not reach: ::1"},
		},
		{
			"private answer",
			hostRules{rules: allowAll},
			loopback,
			"private.test:443",
			403,
			[]string{"10.0.0.7 is a private address"},
		},
		{"private literal", hostRules{rules: allowAll}, loopback, "10.0.0.7:443", 403, []string{"private address"}},
		{
			"one private answer among others",
			hostRules{rules: allowAll},
			loopback,
			"mixed.test:" + ep,
			403,
			[]string{"mixed.test resolves to an address modgate may not reach: 10.0.0.7"},
		},
		{
			"metadata answer",
			hostRules{rules: allowAll},
			loopback,
			"metadata.test:443",
			403,
			[]string{"169.254.169.254 is a link-local address"},
		},
		{"metadata literal", hostRules{rules: allowAll}, loopback, "169.254.169.254:443", 403, []string{"link-local"}},
		{
			"NAT64 embedding loopback",
			hostRules{rules: allowAll},
			nil,
			"nat64.test:443",
			403,
			[]string{"NAT64 address embedding 127.0.0.1"},
		},
		{
			"IPv4-mapped loopback",
			hostRules{rules: allowAll},
			nil,
			"mapped.test:443",
			403,
			[]string{"127.0.0.1 is a loopback address"},
		},
		{
			"name resolving to 0.0.0.0, every range allowed",
			hostRules{rules: allowAll},
			everything,
			"sinkhole.test:" + ep,
			403,
			[]string{"0.0.0.0 is an unspecified", "cannot open it"},
		},
		{
			"name resolving to ::, every range allowed",
			hostRules{rules: allowAll},
			everything,
			"anyv6.test:" + ep,
			403,
			[]string{":: is an unspecified"},
		},
		{
			"name that does not resolve",
			hostRules{rules: allowAll},
			loopback,
			"gone.test:443",
			502,
			[]string{"resolving gone.test"},
		},
		{
			"intercepted host on another port",
			hostRules{rules: allowAll},
			loopback,
			"proxy.golang.org:80",
			403,
			[]string{"modgate answers for proxy.golang.org itself, on port 443 only"},
		},
		{"no port", hostRules{rules: allowAll}, loopback, "allowed.test", 400, []string{"want host:port"}},
		{"odd port 0", hostRules{rules: allowAll}, loopback, "allowed.test:0", 400, []string{"port must be"}},
		{"port too large", hostRules{rules: allowAll}, loopback, "allowed.test:70000", 400, []string{"port must be"}},
		{"non-ASCII name", hostRules{rules: allowAll}, loopback, "bücher.test:443", 400, []string{"xn--"}},
		{"short IPv4 form", hostRules{rules: allowAll}, loopback, "127.1:443", 400, []string{"neither a host name nor"}},
		{"unbracketed IPv6", hostRules{rules: allowAll}, loopback, "::1:443", 400, nil}, // refused by net/http already
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var pol func() egress.HostPolicy
			if tt.policy != nil {
				pol = func() egress.HostPolicy { return tt.policy }
			}
			s := startEgressServer(t, egress.Config{Policy: pol, AllowRanges: tt.allow, Resolver: resolver})
			r, c, br := s.connect(t, tt.target)
			if tt.want != 200 && tt.wantBody == nil {
				if r.status != tt.want {
					t.Errorf("CONNECT %s: %d %q, want %d", tt.target, r.status, r.body, tt.want)
				}
				return
			}
			if tt.want != 200 {
				checkErrorBody(t, "CONNECT "+tt.target, r, tt.want, tt.wantBody...)
				if why := goShows(string(r.body)); why != "" {
					t.Errorf("body %q: the go command would not show it all: %s", r.body, why)
				}
				if r.header.Get("X-Modgate-Error") == "" {
					t.Errorf("no X-Modgate-Error header")
				}
				rec := lastLog(t, s.logs, "connect")
				if rec["client"] == "" || rec["decision"] == "tunnel" || rec["status"] != int64(tt.want) {
					t.Errorf("log line %v: want a refusal with the client and status %d", rec, tt.want)
				}
				if strings.Contains(string(r.body), " is a ") && rec["resolved"] == "" {
					t.Errorf("log line %v: want the refused address in resolved", rec)
				}
				return
			}
			if r.status != 200 {
				t.Fatalf("CONNECT %s: %d %s", tt.target, r.status, r.body)
			}
			checkEcho(t, c, br)
			c.Close()
			waitLog(t, s.logs, "connect", func(rec map[string]any) bool { return rec["bytes_in"] != nil })
			rec := lastLog(t, s.logs, "connect")
			wantDecision := "tunnel"
			if tt.name == "report mode lets a denial through" {
				wantDecision = "would_deny"
			}
			if rec["decision"] != wantDecision || rec["resolved"] != "127.0.0.1:"+ep ||
				rec["bytes_out"] != int64(5) || rec["bytes_in"] != int64(5) ||
				rec["port"] != int64(echoPort) ||
				rec["client"] == "" ||
				rec["rule"] == "" {
				t.Errorf("log line %v: want decision %s, resolved 127.0.0.1:%s, 5 bytes each way", rec, wantDecision, ep)
			}
		})
	}
}

// checkEcho sends "ping\n" through a tunnel to the echo server, half-closes
// and reads it back.
func checkEcho(t *testing.T, c net.Conn, br *bufio.Reader) {
	t.Helper()
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(br)
	if err != nil || string(got) != "ping\n" {
		t.Fatalf("echo through the tunnel: %q, %v", got, err)
	}
}

// waitLog waits until a log line with message msg satisfies ok.
func waitLog(t *testing.T, logs *observer.ObservedLogs, msg string, ok func(map[string]any) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, e := range logs.FilterMessage(msg).All() {
			if ok(e.ContextMap()) {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no matching %q log line: %v", msg, logs.All())
}

// TestEgressRefusesItself checks that a tunnel to the gate's own listener
// is refused even when --allow-range opens loopback.
func TestEgressRefusesItself(t *testing.T) {
	loopback, _ := egress.ParseRanges([]string{"127.0.0.0/8", "::1/128"})
	allowAny := hostRules{report: true}
	s := startEgressServer(t, egress.Config{Policy: func() egress.HostPolicy { return allowAny }, AllowRanges: loopback})
	r, _, _ := s.connect(t, s.addr)
	checkErrorBody(t, "CONNECT to itself", r, 403, "modgate's own listening address", "loop back into the gate")
}

// TestEgressIdleTunnel checks that a tunnel with no traffic is closed.
func TestEgressIdleTunnel(t *testing.T) {
	host, port := echoServer(t)
	loopback, _ := egress.ParseRanges([]string{"127.0.0.0/8"})
	allowAny := hostRules{report: true}
	s := startEgressServer(
		t,
		egress.Config{
			Policy:      func() egress.HostPolicy { return allowAny },
			AllowRanges: loopback,
			IdleTimeout: 200 * time.Millisecond,
		},
	)
	r, c, br := s.connect(t, net.JoinHostPort(host, fmt.Sprint(port)))
	if r.status != 200 {
		t.Fatalf("CONNECT: %d %s", r.status, r.body)
	}
	start := time.Now()
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Errorf("read on an idle tunnel: %v, want EOF", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("idle tunnel closed after %s", d)
	}
	c.Close()
}

func TestEgressForward(t *testing.T) {
	var mu sync.Mutex
	var seen http.Header
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = r.Header.Clone()
		mu.Unlock()
		w.Header().Set("Connection", "X-Hop")
		w.Header().Set("X-Hop", "1")
		fmt.Fprint(w, "hello from "+r.URL.Path)
	}))
	defer target.Close()
	tu, _ := url.Parse(target.URL)
	port := tu.Port()
	resolver := fakeResolver{"site.test": {"127.0.0.1"}, "private.test": {"10.0.0.7"}}
	rules := hostRules{rules: map[string]policy.Action{"site.test:" + port: policy.Allow, "private.test:80": policy.Allow}}
	loopback, _ := egress.ParseRanges([]string{"127.0.0.0/8"})
	s := startEgressServer(
		t,
		egress.Config{Policy: func() egress.HostPolicy { return rules }, AllowRanges: loopback, Resolver: resolver},
	)
	proxyURL := &url.URL{Scheme: "http", Host: s.addr}
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}}
	tests := []struct {
		name, url string
		want      int
		wantBody  string
	}{
		{"allowed", "http://site.test:" + port + "/x", 200, "hello from /x"},
		{"denied host", "http://other.test/x", 403, "no egress rule allows other.test:80"},
		{"private address", "http://private.test/x", 403, "10.0.0.7 is a private address"},
		{"intercepted host", "http://proxy.golang.org/example.com/lib/@v/list", 403, "over https (CONNECT) only"},
		{"loopback literal not allowed by rules", "http://127.0.0.1:" + port + "/", 403, "no egress rule allows 127.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, tt.url, nil)
			req.Header.Set("Proxy-Authorization", "Basic c2VjcmV0")
			req.Header.Set("X-Keep", "yes")
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want || !strings.Contains(string(body), tt.wantBody) {
				t.Fatalf("GET %s: %d %q, want %d with %q", tt.url, resp.StatusCode, body, tt.want, tt.wantBody)
			}
			if tt.want != 200 {
				checkErrorBody(t, tt.url, response{resp.StatusCode, resp.Header, body}, tt.want)
				return
			}
			if resp.Header.Get("X-Hop") != "" {
				t.Errorf("hop-by-hop header X-Hop reached the client")
			}
			mu.Lock()
			defer mu.Unlock()
			if seen.Get("Proxy-Authorization") != "" || seen.Get("X-Keep") != "yes" {
				t.Errorf("target saw headers %v: want X-Keep and no Proxy-Authorization", seen)
			}
			waitLog(t, s.logs, "forward", func(rec map[string]any) bool {
				return rec["decision"] == "forward" && rec["bytes_in"] == int64(len(body)) &&
					rec["resolved"] == "127.0.0.1:"+port &&
					rec["status"] == int64(200)
			})
		})
	}
}
