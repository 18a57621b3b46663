package egress

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/modgate/modgate/internal/httperr"
)

func TestParseTarget(t *testing.T) {
	tests := []struct {
		in          string
		defaultPort int
		want        string // Target.String(); "" for an error
		wantIP      bool
		wantErr     string // substring of the error
	}{
		{in: "example.org:443", want: "example.org:443"},
		{in: "Example.ORG:443", want: "example.org:443"},
		{in: "example.org.:443", want: "example.org:443"},
		{in: "a-b_c.example.org:8443", want: "a-b_c.example.org:8443"},
		{in: "1password.com:443", want: "1password.com:443"},
		{in: "localhost:443", want: "localhost:443"},
		{in: "example.org:1", want: "example.org:1"},
		{in: "example.org:65535", want: "example.org:65535"},
		{in: "example.org", defaultPort: 80, want: "example.org:80"},
		{in: "127.0.0.1:443", want: "127.0.0.1:443", wantIP: true},
		{in: "169.254.169.254:80", want: "169.254.169.254:80", wantIP: true},
		{in: "[::1]:443", want: "[::1]:443", wantIP: true},
		{in: "[2001:DB8::1]:443", want: "[2001:db8::1]:443", wantIP: true},
		{in: "[::ffff:127.0.0.1]:443", want: "[::ffff:127.0.0.1]:443", wantIP: true},
		{in: "[64:ff9b::7f00:1]:443", want: "[64:ff9b::7f00:1]:443", wantIP: true},
		{in: "[::1]", defaultPort: 80, want: "[::1]:80", wantIP: true},

		{in: "", wantErr: "empty host"},
		{in: ":443", wantErr: "empty host"},
		{in: "example.org", wantErr: "want host:port"},
		{in: "example.org:", wantErr: "empty port"},
		{in: "example.org:0", wantErr: "port must be"},
		{in: "example.org:65536", wantErr: "port must be"},
		{in: "example.org:99999999999999999999", wantErr: "port must be"},
		{in: "example.org:0443", wantErr: "leading zeros"},
		{in: "example.org:+443", wantErr: "port must be"},
		{in: "example.org:-1", wantErr: "port must be"},
		{in: "example.org:https", wantErr: "port must be"},
		{in: "user:pass@example.org:443", wantErr: "userinfo"},
		{in: "example.org:443/path", wantErr: "path"},
		{in: "example.org:443?q", wantErr: "query"},
		{in: "example.org:443#f", wantErr: "fragment"},
		{in: `example.org\evil:443`, wantErr: "without userinfo"},
		{in: "exa mple.org:443", wantErr: "space"},
		{in: "example.org\r\n:443", wantErr: "control"},
		{in: "bücher.example:443", wantErr: "xn--"},
		{in: "example.org\xff:443", wantErr: "not ASCII"},
		{in: "::1:443", wantErr: "in brackets"},
		{in: "[::1:443", wantErr: "missing ]"},
		{in: "[::1]443", wantErr: "want [ipv6]:port"},
		{in: "[::1]:", wantErr: "empty port"},
		{in: "[]:443", wantErr: "empty host"},
		{in: "[127.0.0.1]:443", wantErr: "not an IPv6 literal"},
		{in: "[fe80::1%25eth0]:443", wantErr: "not an IPv6 literal"},
		{in: "[fe80::1%eth0]:443", wantErr: "not an IPv6 literal"},
		{in: "127.1:443", wantErr: "neither a host name nor"},
		{in: "0177.0.0.1:443", wantErr: "neither a host name nor"},
		{in: "0x7f.0.0.1:443", wantErr: "neither a host name nor"},
		{in: "2130706433:443", wantErr: "neither a host name nor"},
		{in: "example.0x7f:443", wantErr: "neither a host name nor"},
		{in: "-example.org:443", wantErr: "starts or ends with '-'"},
		{in: "example..org:443", wantErr: "empty label"},
		{in: ".:443", wantErr: "want 1 to 253 bytes"},
		{in: strings.Repeat("a", 64) + ".org:443", wantErr: "longer than 63"},
		{in: strings.Repeat("a.", 130) + "org:443", wantErr: "253"},
		{in: strings.Repeat("a", 400) + ":443", wantErr: "too long"},
		{in: "exa*mple.org:443", wantErr: "only letters"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseTarget(tt.in, tt.defaultPort)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("ParseTarget(%q) = %v, want an error mentioning %q", tt.in, got, tt.wantErr)
				}
				if !errors.Is(err, ErrBadTarget) || !errors.Is(err, httperr.ErrBadRequest) {
					t.Errorf("ParseTarget(%q): %v does not wrap ErrBadTarget and ErrBadRequest", tt.in, err)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("ParseTarget(%q): %q, want it to mention %q", tt.in, err, tt.wantErr)
				}
				if httperr.Status(err) != 400 {
					t.Errorf("ParseTarget(%q): status %d, want 400", tt.in, httperr.Status(err))
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseTarget(%q): %v", tt.in, err)
			}
			if got.String() != tt.want || got.IP.IsValid() != tt.wantIP {
				t.Errorf("ParseTarget(%q) = %q (IP %v), want %q (IP literal %v)", tt.in, got, got.IP, tt.want, tt.wantIP)
			}
		})
	}
}

// FuzzParseTarget checks that ParseTarget never panics, that what it
// accepts is canonical (it parses its own String back to itself), and that
// an accepted target has a valid port and no character that could smuggle
// anything into a request line or a log.
func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{
		"example.org:443", "EXAMPLE.org.:8443", "[::1]:443", "[::ffff:10.0.0.1]:80", "127.0.0.1:22",
		"user@example.org:443", "example.org:0443", "[fe80::1%eth0]:443", "127.1:80", "xn--bcher-kva.example:443",
		"bücher.example:443", "a.b.c.d.e:65535", "[64:ff9b::a00:1]:443", ":443", "[::]:1",
	} {
		f.Add(s, 0)
		f.Add(s, 80)
	}
	f.Fuzz(func(t *testing.T, s string, defaultPort int) {
		if defaultPort < 0 || defaultPort > 65535 {
			return
		}
		got, err := ParseTarget(s, defaultPort)
		if err != nil {
			if !errors.Is(err, ErrBadTarget) {
				t.Fatalf("ParseTarget(%q): %v does not wrap ErrBadTarget", s, err)
			}
			return
		}
		if got.Port < 1 || got.Port > 65535 {
			t.Fatalf("ParseTarget(%q): port %d", s, got.Port)
		}
		if got.Host == "" || strings.ContainsAny(got.Host, "@/?#\\ \r\n%") || !utf8.ValidString(got.Host) ||
			strings.ToLower(got.Host) != got.Host {
			t.Fatalf("ParseTarget(%q): host %q", s, got.Host)
		}
		again, err := ParseTarget(got.String(), 0)
		if err != nil || again != got {
			t.Fatalf("ParseTarget(%q) = %+v, but ParseTarget(%q) = %+v, %v", s, got, got.String(), again, err)
		}
		if ip, err := netip.ParseAddr(got.Host); err == nil && ip != got.IP {
			t.Fatalf("ParseTarget(%q): host %q is an IP but IP is %v", s, got.Host, got.IP)
		}
	})
}
