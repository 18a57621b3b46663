package main

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// defaultAdminPort is the admin listener's port when only the proxy's
// address is known.
const defaultAdminPort = "3129"

// parseProxyURL parses a proxy setting as the go command reads
// HTTPS_PROXY: a URL, or a bare host:port that means http://host:port.
func parseProxyURL(s string) (*url.URL, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, fmt.Errorf("empty proxy URL")
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || u.Host == "" {
		// As golang.org/x/net/http/httpproxy: no scheme means http.
		if u2, err2 := url.Parse("http://" + s); err2 == nil && u2.Host != "" {
			return u2, nil
		}
		return nil, fmt.Errorf("proxy %q: want a URL such as http://modgate.example.com:3128", s)
	}
	switch u.Scheme {
	case "http", "https", "socks5", "socks5h":
		return u, nil
	}
	return nil, fmt.Errorf("proxy %q: unsupported scheme %q", s, u.Scheme)
}

// adminURL returns the admin listener's base URL (no trailing slash): flag
// if set (a URL, or host:port meaning http://host:port), else the proxy's
// host on port 3129.
func adminURL(flag string, proxy *url.URL) (string, error) {
	if flag != "" {
		u, err := parseProxyURL(flag)
		if err != nil {
			return "", fmt.Errorf("--admin: %w", err)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return "", fmt.Errorf("--admin %q: want an http:// URL", flag)
		}
		return strings.TrimRight(u.Scheme+"://"+u.Host+u.Path, "/"), nil
	}
	if proxy == nil {
		return "http://" + net.JoinHostPort("127.0.0.1", defaultAdminPort), nil
	}
	return "http://" + net.JoinHostPort(proxy.Hostname(), defaultAdminPort), nil
}

// listenAddrURL turns a listen address (":3129", "0.0.0.0:3129",
// "[::]:3129", "host:3129") into an http URL that reaches it from the
// same machine.
func listenAddrURL(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "http://" + listen
	}
	switch ip := net.ParseIP(host); {
	case host == "" || (ip != nil && ip.IsUnspecified() && ip.To4() != nil):
		host = "127.0.0.1"
	case ip != nil && ip.IsUnspecified():
		host = "::1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// noProxyMatches reports whether one NO_PROXY entry sends requests for
// host:port around the proxy, by the rules of golang.org/x/net/http/httpproxy
// (which the go command uses): "*" matches every host; "example.com" matches
// example.com and its subdomains; ".example.com" and "*.example.com" only
// the subdomains; an optional ":port" restricts the entry to that port; IP
// addresses and CIDR ranges match addresses.
func noProxyMatches(entry, host, port string) bool {
	entry = strings.ToLower(strings.TrimSpace(entry))
	host = strings.ToLower(host)
	if entry == "" {
		return false
	}
	if entry == "*" {
		return true
	}
	if _, cidr, err := net.ParseCIDR(entry); err == nil {
		ip := net.ParseIP(host)
		return ip != nil && cidr.Contains(ip)
	}
	if ip := net.ParseIP(entry); ip != nil {
		return ip.Equal(net.ParseIP(host))
	}
	phost, pport := entry, ""
	if h, p, err := net.SplitHostPort(entry); err == nil {
		phost, pport = h, p
	}
	if pport != "" && pport != port {
		return false
	}
	phost = strings.TrimPrefix(phost, "*")
	if strings.HasPrefix(phost, ".") {
		return strings.HasSuffix(host, phost)
	}
	return host == phost || strings.HasSuffix(host, "."+phost)
}

// filterNoProxy splits a NO_PROXY list and separates the entries that would
// send one of the intercepted hosts (port 443) around the gate.
func filterNoProxy(list string, intercepted []string) (kept, dropped []string) {
	for _, e := range strings.Split(list, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		bad := false
		for _, h := range intercepted {
			if noProxyMatches(e, h, "443") {
				bad = true
				break
			}
		}
		if bad {
			dropped = append(dropped, e)
		} else {
			kept = append(kept, e)
		}
	}
	return kept, dropped
}
