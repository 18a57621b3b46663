package egress

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/modgate/modgate/internal/httperr"
)

func TestAddrCheck(t *testing.T) {
	tests := []struct {
		addr    string
		allow   string // comma list for ParseRanges
		wantWhy string // "" when allowed
	}{
		{addr: "93.184.215.14", wantWhy: ""},
		{addr: "2606:2800:21f:cb07:6820:80da:af6b:8b2c", wantWhy: ""},
		{addr: "8.8.8.8", wantWhy: ""},
		{addr: "127.0.0.1", wantWhy: "loopback"},
		{addr: "127.255.255.254", wantWhy: "loopback"},
		{addr: "::1", wantWhy: "loopback"},
		{addr: "10.1.2.3", wantWhy: "private"},
		{addr: "172.16.0.1", wantWhy: "private"},
		{addr: "172.31.255.255", wantWhy: "private"},
		{addr: "172.32.0.1", wantWhy: ""},
		{addr: "192.168.1.1", wantWhy: "private"},
		{addr: "fd00::1", wantWhy: "unique local"},
		{addr: "fc00::1", wantWhy: "unique local"},
		{addr: "169.254.169.254", wantWhy: "link-local"},
		{addr: "169.254.0.1", wantWhy: "link-local"},
		{addr: "fe80::1", wantWhy: "link-local"},
		{addr: "fe80::1%eth0", wantWhy: "link-local"},
		{addr: "100.64.0.1", wantWhy: "carrier-grade NAT"},
		{addr: "100.127.255.255", wantWhy: "carrier-grade NAT"},
		{addr: "100.128.0.1", wantWhy: ""},
		{addr: "0.0.0.0", wantWhy: "unspecified"},
		{addr: "0.1.2.3", wantWhy: "unspecified"},
		{addr: "::", wantWhy: "unspecified"},
		{addr: "224.0.0.1", wantWhy: "multicast"},
		{addr: "239.255.255.250", wantWhy: "multicast"},
		{addr: "ff02::1", wantWhy: "multicast"},
		{addr: "255.255.255.255", wantWhy: "broadcast"},
		{addr: "240.0.0.1", wantWhy: "reserved"},
		{addr: "198.18.0.1", wantWhy: "benchmarking"},
		// IPv6 forms that embed IPv4.
		{addr: "::ffff:127.0.0.1", wantWhy: "loopback"},
		{addr: "::ffff:10.0.0.1", wantWhy: "private"},
		{addr: "::ffff:169.254.169.254", wantWhy: "link-local"},
		{addr: "::ffff:8.8.8.8", wantWhy: ""},
		{addr: "::127.0.0.1", wantWhy: "IPv4-compatible"},
		{addr: "64:ff9b::7f00:1", wantWhy: "NAT64 address embedding 127.0.0.1, a loopback address"},
		{addr: "64:ff9b::a9fe:a9fe", wantWhy: "NAT64 address embedding 169.254.169.254"},
		{addr: "64:ff9b::808:808", wantWhy: ""},
		{addr: "64:ff9b:1::a00:1", wantWhy: "local-use NAT64"},
		{addr: "2002:7f00:1::1", wantWhy: "6to4"},
		{addr: "2002:808:808::1", wantWhy: "6to4"},
		{addr: "2001:0:4136:e378:8000:63bf:3fff:fdd2", wantWhy: "Teredo"},
		{addr: "fec0::1", wantWhy: "site-local"},
		// --allow-range opens ranges.
		{addr: "127.0.0.1", allow: "127.0.0.0/8", wantWhy: ""},
		{addr: "::ffff:127.0.0.1", allow: "127.0.0.0/8", wantWhy: ""},
		{addr: "::1", allow: "127.0.0.0/8", wantWhy: "loopback"},
		{addr: "10.9.8.7", allow: "10.9.8.7", wantWhy: ""},
		{addr: "10.9.8.6", allow: "10.9.8.7", wantWhy: "private"},
		{addr: "64:ff9b::a00:1", allow: "10.0.0.0/8", wantWhy: ""},
		{addr: "fd12::1", allow: "fd00::/8,127.0.0.0/8", wantWhy: ""},
		// Unspecified addresses stay refused whatever --allow-range says.
		{addr: "0.0.0.0", allow: "0.0.0.0/0,::/0", wantWhy: "unspecified"},
		{addr: "0.255.255.255", allow: "0.0.0.0/0,::/0", wantWhy: "unspecified"},
		{addr: "0.0.0.0", allow: "0.0.0.0/8", wantWhy: "unspecified"},
		{addr: "::", allow: "0.0.0.0/0,::/0", wantWhy: "unspecified"},
		{addr: "::", allow: "::/128", wantWhy: "unspecified"},
		{addr: "::ffff:0.0.0.0", allow: "0.0.0.0/0,::/0", wantWhy: "unspecified"},
		{addr: "::ffff:0.1.2.3", allow: "0.0.0.0/0,::/0", wantWhy: "unspecified"},
		{addr: "1.0.0.0", allow: "0.0.0.0/0,::/0", wantWhy: ""},
	}
	for _, tt := range tests {
		t.Run(tt.addr+" allow "+tt.allow, func(t *testing.T) {
			allow, err := ParseRanges(strings.Split(tt.allow, ","))
			if err != nil {
				t.Fatal(err)
			}
			c := newAddrChecker(allow, func() ([]netip.Addr, error) { return nil, nil })
			err = c.check(netip.AddrPortFrom(netip.MustParseAddr(tt.addr), 443))
			if tt.wantWhy == "" {
				if err != nil {
					t.Errorf("check(%s) = %v, want allowed", tt.addr, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("check(%s) allowed, want refused as %q", tt.addr, tt.wantWhy)
			}
			if !strings.Contains(err.Error(), tt.wantWhy) {
				t.Errorf("check(%s) = %q, want it to mention %q", tt.addr, err, tt.wantWhy)
			}
			var ae *AddressError
			if !errors.As(err, &ae) || !errors.Is(err, ErrAddress) || !errors.Is(err, ErrRefused) || httperr.Status(err) != 403 {
				t.Errorf("check(%s) = %#v: want an *AddressError wrapping ErrAddress and ErrRefused (403)", tt.addr, err)
			}
			if ae != nil && ae.Always != (tt.wantWhy == "unspecified") {
				t.Errorf("check(%s): Always = %v, want it only for unspecified addresses", tt.addr, ae.Always)
			}
		})
	}
}

// TestAddrCheckSelf checks that the gate's own listening sockets are
// refused even inside an allowed range, including every local address of
// a wildcard listener, while other ports of the same address are not.
func TestAddrCheckSelf(t *testing.T) {
	ifaces := func() ([]netip.Addr, error) {
		return []netip.Addr{
			netip.MustParseAddr("127.0.0.1"),
			netip.MustParseAddr("203.0.113.7"),
			netip.MustParseAddr("2001:db8::7"),
		}, nil
	}
	allow, _ := ParseRanges([]string{"127.0.0.0/8", "::1/128"})
	c := newAddrChecker(allow, ifaces)
	c.addSelf(&net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 3128})
	c.addSelf(&net.TCPAddr{IP: net.IPv6unspecified, Port: 9090})
	c.addSelf(&net.UnixAddr{Name: "/tmp/x", Net: "unix"})
	tests := []struct {
		addr string
		self bool
	}{
		{"127.0.0.1:3128", true},
		{"[::ffff:127.0.0.1]:3128", true},
		{"127.0.0.1:3129", false},
		{"127.0.0.2:3128", false}, // a specific listener only answers on its address
		{"127.0.0.1:9090", true},
		{"127.0.0.2:9090", true}, // a wildcard listener answers on every loopback address
		{"[::1]:9090", true},
		{"203.0.113.7:9090", true},
		{"[2001:db8::7]:9090", true},
		{"203.0.113.8:9090", false},
		{"203.0.113.7:443", false},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			err := c.check(netip.MustParseAddrPort(tt.addr))
			gotSelf := err != nil && strings.Contains(err.Error(), "own listening address")
			if gotSelf != tt.self {
				t.Errorf("check(%s) = %v; want self %v", tt.addr, err, tt.self)
			}
		})
	}
}

func TestParseRanges(t *testing.T) {
	got, err := ParseRanges([]string{"127.0.0.0/8", "10.1.2.3", "fd00::/8", "", "192.168.1.7/16"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"127.0.0.0/8", "10.1.2.3/32", "fd00::/8", "192.168.0.0/16"}
	if len(got) != len(want) {
		t.Fatalf("ParseRanges = %v, want %v", got, want)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("range %d = %s, want %s", i, got[i], want[i])
		}
	}
	for _, bad := range []string{"10.0.0.0/33", "example.org", "10.0.0/8", "::1/129"} {
		if _, err := ParseRanges([]string{bad}); err == nil || !strings.Contains(err.Error(), "CIDR") {
			t.Errorf("ParseRanges(%q) = %v, want an error", bad, err)
		}
	}
}
