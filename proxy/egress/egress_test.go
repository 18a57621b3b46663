package egress

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/modgate/modgate/internal/httperr"
	"github.com/modgate/modgate/internal/logfield"
	"github.com/modgate/modgate/policy"
)

// allowHosts allows the listed hosts on any port and denies the others.
type allowHosts []string

func (a allowHosts) DecideHost(host string, port int) policy.Decision {
	if slices.Contains(a, host) {
		return policy.Decision{Allowed: true, Action: policy.Allow, Rule: "allow-" + host}
	}
	return policy.Decision{Action: policy.Deny, Rule: "default", Reason: "not listed"}
}

// dnsMap resolves the names it holds.
type dnsMap map[string]string

func (m dnsMap) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := m[host]; ok {
		return []netip.Addr{netip.MustParseAddr(a)}, nil
	}
	return nil, errors.New("no such host")
}

// TestConnect drives Egress.Connect alone, without the gate: the host
// rules first, then resolution and the address checks, then the dial of
// the checked address; and every line it logs has the same fields.
func TestConnect(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	core, logs := observer.New(zapcore.InfoLevel)
	e, err := New(Config{
		Policy:      func() HostPolicy { return allowHosts{"ok.test", "private.test", "gone.test"} },
		AllowRanges: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Resolver:    dnsMap{"ok.test": "127.0.0.1", "private.test": "10.1.2.3", "denied.test": "127.0.0.1"},
		Logger:      zap.New(core),
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		host     string
		wantErr  error
		status   int
		decision string
	}{
		{"ok.test", nil, 200, ""},
		{"denied.test", ErrRefused, 403, "refuse"},
		{"private.test", ErrAddress, 403, "refuse"},
		{"gone.test", nil, 502, "error"},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			target := Target{Host: tt.host, Port: port}
			tn, err := e.Connect(t.Context(), "client:1", target)
			if tt.status == 200 {
				if err != nil {
					t.Fatalf("Connect: %v", err)
				}
				tn.Close()
				return
			}
			if err == nil {
				tn.Close()
				t.Fatalf("Connect succeeded, want status %d", tt.status)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("Connect: %v, want %v", err, tt.wantErr)
			}
			if s := httperr.Status(err); s != tt.status {
				t.Errorf("status of %v = %d, want %d", err, s, tt.status)
			}
			lines := logs.FilterMessage(LineConnect).FilterField(zap.String(logfield.Host, tt.host)).AllUntimed()
			if len(lines) != 1 || lines[0].ContextMap()[logfield.Decision] != tt.decision {
				t.Errorf("log lines for %s: %v, want one with decision %s", tt.host, lines, tt.decision)
			}
		})
	}
	e.LogIntercept("client:1", Target{Host: "proxy.golang.org", Port: 443})
	e.LogRefused(LineConnect, "client:1", "bad target:"+strconv.Itoa(port), httperr.BadRequest("malformed"))
	base := []string{logfield.Client, logfield.Host, logfield.Port, logfield.Resolved, logfield.Decision,
		logfield.Rule, logfield.Reason, logfield.WouldDeny}
	all := logs.FilterMessage(LineConnect).AllUntimed()
	if len(all) != 5 { // three refusals, the intercept and the early refusal; a tunnel logs when served
		t.Errorf("%d connect lines, want 5: %v", len(all), all)
	}
	for _, l := range all {
		f := l.ContextMap()
		for _, k := range base {
			if _, ok := f[k]; !ok {
				t.Errorf("connect line %v has no %s: every connect line has the same fields", f, k)
			}
		}
	}
}
