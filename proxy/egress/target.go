package egress

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/modgate/modgate/internal/httperr"
)

// ErrBadTarget is wrapped by every error of ParseTarget. It also wraps
// ErrBadRequest, so a client that sends a malformed CONNECT target gets 400.
var ErrBadTarget = fmt.Errorf("%w: invalid proxy target", httperr.ErrBadRequest)

// Target is the host and port a CONNECT or an absolute-form proxy request
// asks for, in canonical form.
type Target struct {
	// Host is a lower-case DNS name without a trailing dot, or an IP
	// literal without brackets.
	Host string
	// Port is between 1 and 65535.
	Port int
	// IP is the address when Host is an IP literal; the zero Addr otherwise.
	IP netip.Addr
}

// String returns host:port, with an IPv6 literal in brackets. ParseTarget
// of String returns the same Target.
func (t Target) String() string { return net.JoinHostPort(t.Host, strconv.Itoa(t.Port)) }

// maxTargetLen bounds a target: a 253-byte name, brackets and a port.
const maxTargetLen = 300

// ParseTarget parses an authority ("host:port") as CONNECT and the Host of
// a proxy request carry it. The port is required when defaultPort is 0.
//
// It accepts DNS names (letters, digits, '-' and '_' in labels of at most
// 63 bytes; case is folded and one trailing dot dropped), dotted-quad IPv4
// literals and bracketed IPv6 literals. It refuses, with a reason:
// userinfo, paths, queries and fragments; IPv6 zones and unbracketed IPv6;
// the short, octal, hexadecimal and integer IPv4 forms that some resolvers
// accept (a host whose last label is numeric); non-ASCII names (write them
// in their xn-- form); and ports outside 1-65535 or with leading zeros.
func ParseTarget(s string, defaultPort int) (Target, error) {
	if len(s) > maxTargetLen {
		return Target{}, badTarget("%d bytes is too long", len(s))
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 0x80:
			return Target{}, badTarget("%q is not ASCII: write an internationalized name in its xn-- (punycode) form", s)
		case c <= ' ' || c == 0x7f:
			return Target{}, badTarget("%q contains a space or control character", s)
		case strings.IndexByte("@/?#\\", c) >= 0:
			return Target{}, badTarget("%q: want host:port, without userinfo, path, query or fragment", s)
		}
	}
	host, port, err := splitTarget(s, defaultPort)
	if err != nil {
		return Target{}, err
	}
	t := Target{Port: port}
	if strings.HasPrefix(host, "[") {
		ip, err := netip.ParseAddr(host[1 : len(host)-1])
		if err != nil || !ip.Is6() || ip.Zone() != "" {
			return Target{}, badTarget("%q is not an IPv6 literal (zones are not allowed)", host)
		}
		t.Host, t.IP = ip.String(), ip
		return t, nil
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.Is4() {
		t.Host, t.IP = ip.String(), ip
		return t, nil
	}
	name, err := checkHostName(host)
	if err != nil {
		return Target{}, err
	}
	t.Host = name
	return t, nil
}

// splitTarget splits host and port; host keeps the brackets of IPv6.
func splitTarget(s string, defaultPort int) (string, int, error) {
	host, portText := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", 0, badTarget("%q: missing ] after an IPv6 literal", s)
		}
		host, portText = s[:end+1], s[end+1:]
		if portText != "" && portText[0] != ':' {
			return "", 0, badTarget("%q: want [ipv6]:port", s)
		}
		portText = strings.TrimPrefix(portText, ":")
		if portText == "" && strings.HasSuffix(s, ":") {
			return "", 0, badTarget("%q: empty port", s)
		}
	} else if i := strings.LastIndexByte(s, ':'); i >= 0 {
		host, portText = s[:i], s[i+1:]
		if strings.Contains(host, ":") {
			return "", 0, badTarget("%q: an IPv6 literal must be in brackets", s)
		}
		if portText == "" {
			return "", 0, badTarget("%q: empty port", s)
		}
	}
	if host == "" || host == "[]" {
		return "", 0, badTarget("%q: empty host", s)
	}
	if portText == "" {
		if defaultPort == 0 {
			return "", 0, badTarget("%q: want host:port", s)
		}
		return host, defaultPort, nil
	}
	port, err := parsePort(portText)
	if err != nil {
		return "", 0, badTarget("%q: %v", s, err)
	}
	return host, port, nil
}

// parsePort parses a decimal port 1-65535 without sign or leading zeros.
func parsePort(s string) (int, error) {
	if s == "" || len(s) > 5 || s[0] == '0' || strings.Trim(s, "0123456789") != "" {
		return 0, errors.New("port must be a number from 1 to 65535 without leading zeros")
	}
	p, _ := strconv.Atoi(s)
	if p > 65535 {
		return 0, errors.New("port must be a number from 1 to 65535 without leading zeros")
	}
	return p, nil
}

// checkHostName checks a DNS name and returns it lower-case without a
// trailing dot.
func checkHostName(host string) (string, error) {
	name := strings.ToLower(strings.TrimSuffix(host, "."))
	if name == "" || len(name) > 253 {
		return "", badTarget("host name %q: want 1 to 253 bytes", host)
	}
	labels := strings.Split(name, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return "", badTarget("host name %q: empty label or label longer than 63 bytes", host)
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return "", badTarget("host name %q: a label starts or ends with '-'", host)
		}
		if strings.Trim(l, "abcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
			return "", badTarget("host name %q: only letters, digits, '-' and '_' are allowed", host)
		}
	}
	last := labels[len(labels)-1]
	if strings.Trim(last, "0123456789") == "" ||
		(strings.HasPrefix(last, "0x") && strings.Trim(last[2:], "0123456789abcdef") == "") {
		return "", badTarget("%q is neither a host name nor a dotted-quad IPv4 address", host)
	}
	return name, nil
}

func badTarget(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrBadTarget}, args...)...)
}
