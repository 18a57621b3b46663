package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modgate/modgate/pki"
)

func TestHealthcheck(t *testing.T) {
	var status atomic.Int32
	status.Store(http.StatusOK)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/readyz":
			w.WriteHeader(int(status.Load()))
			w.Write([]byte(http.StatusText(int(status.Load()))))
		case "/slow":
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	hostPort := strings.TrimPrefix(srv.URL, "http://")
	_, port, _ := net.SplitHostPort(hostPort)
	closed := freeAddr(t)
	for _, tc := range []struct {
		name   string
		status int
		env    map[string]string
		args   []string
		code   int
		want   string
	}{
		{"ready, --admin URL", 200, nil, []string{"--admin", srv.URL}, exitOK, "/readyz: OK"},
		{"ready, --admin host:port", 200, nil, []string{"--admin", hostPort}, exitOK, "/readyz: OK"},
		{"ready, MODGATE_ADMIN_LISTEN unspecified host", 200, map[string]string{"MODGATE_ADMIN_LISTEN": "0.0.0.0:" + port}, nil, exitOK, "http://127.0.0.1:" + port + "/readyz: OK"},
		{"ready, MODGATE_ADMIN_LISTEN :port", 200, map[string]string{"MODGATE_ADMIN_LISTEN": ":" + port}, nil, exitOK, "/readyz: OK"},
		{"not ready", 503, nil, []string{"--admin", srv.URL}, exitFail, "503 Service Unavailable"},
		{"nothing listening", 200, nil, []string{"--admin", closed}, exitFail, "connection refused"},
		{"default address, nothing listening", 200, map[string]string{"MODGATE_ADMIN_LISTEN": closed}, nil, exitFail, closed},
		{"bad --admin", 200, nil, []string{"--admin", "ftp://x"}, exitUsage, "--admin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status.Store(int32(tc.status))
			code, stdout, stderr := runCmd(t, tc.env, append([]string{"healthcheck", "--timeout", "2s"}, tc.args...)...)
			if code != tc.code || !strings.Contains(stdout+stderr, tc.want) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d mentioning %q", code, stdout, stderr, tc.code, tc.want)
			}
		})
	}
}

func TestHealthcheckTimeout(t *testing.T) {
	hang := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-hang }))
	defer srv.Close()
	defer close(hang)
	start := time.Now()
	code, _, stderr := runCmd(t, nil, "healthcheck", "--admin", srv.URL, "--timeout", "200ms")
	if code != exitFail || !strings.Contains(stderr, "deadline") || time.Since(start) > 5*time.Second {
		t.Errorf("exit %d after %v: %s", code, time.Since(start), stderr)
	}
}

// freeAddr returns a loopback address on which nothing listens.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestHealthcheckAdminTLS checks the healthcheck of an admin listener
// served over TLS (--admin-tls), verified with the data directory's CA.
func TestHealthcheckAdminTLS(t *testing.T) {
	dir := t.TempDir()
	ca, _, err := pki.LoadOrCreate(dir, []string{"proxy.golang.org", pki.AdminName})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ca.AdminTLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ready")) }))
	srv.TLS = cfg
	srv.StartTLS()
	defer srv.Close()
	hostPort := strings.TrimPrefix(srv.URL, "https://")
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		code int
		want string
	}{
		{"https --admin URL", nil, []string{"--admin", srv.URL, "--data-dir", dir}, exitOK, "/readyz: ready"},
		{"MODGATE_ADMIN_TLS", map[string]string{"MODGATE_ADMIN_LISTEN": hostPort, "MODGATE_ADMIN_TLS": "true", "MODGATE_DATA_DIR": dir}, nil, exitOK, "https://"},
		{"another CA", nil, []string{"--admin", srv.URL, "--data-dir", t.TempDir()}, exitFail, "needs the gate's CA"},
		{"plain http to a TLS listener", nil, []string{"--admin", hostPort, "--data-dir", dir}, exitFail, "400"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCmd(t, tc.env, append([]string{"healthcheck", "--timeout", "2s"}, tc.args...)...)
			if code != tc.code || !strings.Contains(stdout+stderr, tc.want) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d mentioning %q", code, stdout, stderr, tc.code, tc.want)
			}
		})
	}
}
