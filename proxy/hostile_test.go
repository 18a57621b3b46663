package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modgate/modgate/proxy/egress"
)

// TestServerRefusesOverlongRequests sends requests whose header block or
// request line is larger than the front server accepts (64 KiB): each is
// refused with 431 before anything is routed, decided or fetched.
func TestServerRefusesOverlongRequests(t *testing.T) {
	s := startEgressServer(t, egress.Config{})
	big := strings.Repeat("a", 70<<10)
	tests := []struct {
		name, request string
	}{
		{
			"overlong header on a GOPROXY request",
			"GET /example.com/lib/@v/list HTTP/1.1\r\nHost: x\r\nX-Big: " + big + "\r\n\r\n",
		},
		{
			"many headers on a GOPROXY request",
			"GET /example.com/lib/@v/list HTTP/1.1\r\nHost: x\r\n" + strings.Repeat(
				"X-A: "+strings.Repeat("b", 1000)+"\r\n",
				80,
			) + "\r\n",
		},
		{
			"overlong header on a CONNECT",
			"CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\nX-Big: " + big + "\r\n\r\n",
		},
		{"overlong request line", "GET /" + big + " HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"overlong CONNECT target", "CONNECT " + big + ":443 HTTP/1.1\r\nHost: x\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", s.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			go io.WriteString(c, tt.request) // the server may answer before reading it all
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("reading the answer: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
				t.Errorf("status %d, want 431", resp.StatusCode)
			}
		})
	}
	if log := s.fake.fake.RequestLog(); len(log) != 0 {
		t.Errorf("overlong requests reached the upstream: %q", log)
	}
	if n := len(s.logs.FilterMessage("connect").All()); n != 0 {
		t.Errorf("%d CONNECT decisions logged for requests refused before routing", n)
	}
}

// TestServerRefusesHostileConnects sends CONNECT targets byte for byte
// to a gate whose host rules let everything through (report mode): the
// target parser and the address checks refuse each before dialling.
func TestServerRefusesHostileConnects(t *testing.T) {
	allowAll := hostRules{report: true}
	resolver := fakeResolver{"localhost": {"127.0.0.1", "::1"}, "xn--bcher-kva.example": {"10.1.1.1"}}
	s := startEgressServer(t, egress.Config{Policy: func() egress.HostPolicy { return allowAll }, Resolver: resolver})
	for _, target := range []string{
		"127.0.0.1:443", "[::1]:443", "[::ffff:127.0.0.1]:443", "169.254.169.254:80", "0.0.0.0:443",
		"localhost:443", "example.org:0", "example.org:99999", "example.org:-1", "%65xample.org:443",
		"example.org:443:443", "[::1]:443]", "xn--bcher-kva.example:443",
	} {
		t.Run(target, func(t *testing.T) {
			c, err := net.Dial("tcp", s.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: example.org:443\r\n\r\n", target)
			resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodConnect})
			if err != nil {
				t.Fatalf("reading the answer: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusBadRequest {
				t.Errorf("CONNECT %s: %d, want 403 or 400", target, resp.StatusCode)
			}
		})
	}
}
