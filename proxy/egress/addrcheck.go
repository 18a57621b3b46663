package egress

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"

	"github.com/modgate/modgate/internal/httperr"
)

// ErrRefused is wrapped by every refusal of the egress. It is the gate's
// one refusal sentinel (proxy.ErrRefused), which clients see as 403.
var ErrRefused = httperr.ErrRefused

// ErrAddress is wrapped by the errors of an address the gate refuses to
// connect to (it also wraps ErrRefused, so clients get 403).
var ErrAddress = fmt.Errorf("%w: address not allowed", ErrRefused)

// AddressError says why the gate does not connect to an address.
type AddressError struct {
	Addr netip.Addr // the address as resolved
	Why  string     // for example "a private address (RFC 1918)"
	Self bool       // one of the gate's own listening sockets: never allowed
	// Always reports an address refused whatever --allow-range says: one
	// of the gate's own listening sockets, or an unspecified address.
	Always bool
}

func (e *AddressError) Error() string { return fmt.Sprintf("%s is %s", e.Addr, e.Why) }

// Unwrap returns ErrAddress.
func (e *AddressError) Unwrap() error { return ErrAddress }

// addrRange is a range the gate refuses by default, with the reason.
// embedded, if set, extracts the IPv4 address the range embeds, which is
// checked in its place.
type addrRange struct {
	prefix   netip.Prefix
	why      string
	embedded func(netip.Addr) netip.Addr
}

// refusedRanges are the ranges refused unless --allow-range opens them.
// IPv4-mapped IPv6 addresses are unmapped before the check, so they get
// the verdict of the IPv4 address they stand for.
func refusedRanges() []addrRange {
	p := netip.MustParsePrefix
	return []addrRange{
		{prefix: p("0.0.0.0/8"), why: `an unspecified ("this network") address`},
		{prefix: p("10.0.0.0/8"), why: "a private address (RFC 1918)"},
		{prefix: p("100.64.0.0/10"), why: "a carrier-grade NAT address (RFC 6598)"},
		{prefix: p("127.0.0.0/8"), why: "a loopback address"},
		{prefix: p("169.254.0.0/16"), why: "a link-local address (cloud metadata services live there)"},
		{prefix: p("172.16.0.0/12"), why: "a private address (RFC 1918)"},
		{prefix: p("192.0.0.0/24"), why: "an IETF protocol assignment (RFC 6890)"},
		{prefix: p("192.168.0.0/16"), why: "a private address (RFC 1918)"},
		{prefix: p("198.18.0.0/15"), why: "a benchmarking address (RFC 2544)"},
		{prefix: p("224.0.0.0/4"), why: "a multicast address"},
		{prefix: p("240.0.0.0/4"), why: "a reserved or broadcast address"},
		{prefix: p("::/128"), why: "the unspecified address"},
		{prefix: p("::1/128"), why: "a loopback address"},
		{prefix: p("::/96"), why: "an IPv4-compatible IPv6 address (deprecated)"},
		{prefix: p("64:ff9b::/96"), why: "a NAT64 address", embedded: last32},
		{prefix: p("64:ff9b:1::/48"), why: "a local-use NAT64 address (RFC 8215)"},
		{prefix: p("100::/64"), why: "a discard-only address (RFC 6666)"},
		{prefix: p("2001::/32"), why: "a Teredo address (it embeds an IPv4 address)"},
		{prefix: p("2002::/16"), why: "a 6to4 address (it embeds an IPv4 address)"},
		{prefix: p("fc00::/7"), why: "a unique local (private) IPv6 address"},
		{prefix: p("fe80::/10"), why: "a link-local IPv6 address"},
		{prefix: p("fec0::/10"), why: "a site-local IPv6 address (deprecated)"},
		{prefix: p("ff00::/8"), why: "a multicast address"},
	}
}

// last32 returns the IPv4 address in the last 32 bits of a.
func last32(a netip.Addr) netip.Addr {
	b := a.As16()
	return netip.AddrFrom4([4]byte(b[12:]))
}

// addrChecker decides which addresses the gate may connect to: not those
// of refusedRanges (unless an allowed range contains them), and never its
// own listening sockets.
type addrChecker struct {
	allow   []netip.Prefix
	refused []addrRange
	ifaces  func() ([]netip.Addr, error) // the host's interface addresses

	mu   sync.Mutex
	self []netip.AddrPort // listening sockets; an unspecified IP means every local address
}

func newAddrChecker(allow []netip.Prefix, ifaces func() ([]netip.Addr, error)) *addrChecker {
	if ifaces == nil {
		ifaces = interfaceAddrs
	}
	return &addrChecker{allow: allow, refused: refusedRanges(), ifaces: ifaces}
}

// addSelf records a listening address of the gate.
func (c *addrChecker) addSelf(a net.Addr) {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.self = append(c.self, netip.AddrPortFrom(ip.Unmap(), uint16(ta.Port)))
}

// check returns an *AddressError if the gate must not connect to ap.
// An unspecified address, and one of the gate's own listening sockets, are
// refused even in an allowed range: both would loop back into the host.
func (c *addrChecker) check(ap netip.AddrPort) error {
	a := ap.Addr().WithZone("").Unmap()
	if unspecified(a) {
		return &AddressError{Addr: a, Always: true,
			Why: `an unspecified ("this host") address, which the host delivers to its own listeners (modgate's too)`}
	}
	if c.isSelf(a, ap.Port()) {
		why := fmt.Sprintf("modgate's own listening address (port %d)", ap.Port())
		return &AddressError{Addr: a, Why: why, Self: true, Always: true}
	}
	return c.checkIP(a)
}

// unspecified reports whether a (already unmapped, so ::ffff:0.0.0.0 is
// 0.0.0.0) is :: or in 0.0.0.0/8 ("this network", RFC 1122): never a valid
// destination. Linux delivers a connection to 0.0.0.0 or :: to a listener
// on any local address, 127.0.0.1 included.
func unspecified(a netip.Addr) bool {
	return a.IsUnspecified() || a.Is4() && a.As4()[0] == 0
}

// checkIP checks an address against the allowed and refused ranges.
func (c *addrChecker) checkIP(a netip.Addr) error {
	if c.allowed(a) {
		return nil
	}
	for _, r := range c.refused {
		if !r.prefix.Contains(a) {
			continue
		}
		if r.embedded == nil {
			return &AddressError{Addr: a, Why: r.why}
		}
		var inner *AddressError
		if errors.As(c.checkIP(r.embedded(a)), &inner) {
			return &AddressError{Addr: a, Why: fmt.Sprintf("%s embedding %s, %s", r.why, inner.Addr, inner.Why)}
		}
		return nil
	}
	return nil
}

func (c *addrChecker) allowed(a netip.Addr) bool {
	return slices.ContainsFunc(c.allow, func(p netip.Prefix) bool { return p.Contains(a) })
}

// isSelf reports whether a:port is one of the gate's listening sockets.
func (c *addrChecker) isSelf(a netip.Addr, port uint16) bool {
	c.mu.Lock()
	self := slices.Clone(c.self)
	c.mu.Unlock()
	anyPort := false
	for _, s := range self {
		if s.Port() != port {
			continue
		}
		if s.Addr() == a {
			return true
		}
		anyPort = anyPort || s.Addr().IsUnspecified()
	}
	if !anyPort { // no wildcard listener on this port
		return false
	}
	if a.IsLoopback() || a.IsUnspecified() {
		return true
	}
	local, err := c.ifaces()
	if err != nil {
		return true // cannot tell: refuse
	}
	return slices.Contains(local, a)
}

// interfaceAddrs returns the addresses of the host's interfaces.
func interfaceAddrs() ([]netip.Addr, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("listing interface addresses: %w", err)
	}
	var out []netip.Addr
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, p.Addr().WithZone("").Unmap())
		}
	}
	return out, nil
}

// ParseRanges parses CIDR prefixes (or single addresses) for --allow-range.
func ParseRanges(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	var errs []error
	for _, s := range list {
		if s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				errs = append(errs, fmt.Errorf("range %q: want a CIDR prefix such as 10.0.0.0/8 or fd00::/8", s))
				continue
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, errors.Join(errs...)
}
