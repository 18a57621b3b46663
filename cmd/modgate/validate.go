package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/modgate/modgate/policy"
	"github.com/modgate/modgate/proxy/egress"
)

// checkListenAddr checks a listen address given as flag: host:port with a
// numeric port (0 picks a free one), a host that is empty, an IP address
// or a name, and one address only.
func checkListenAddr(flag, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--%s %q: want host:port, such as 127.0.0.1:3128 or :3128: %v", flag, addr, unwrapAddrError(err))
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || (port != "0" && n == 0) {
		return fmt.Errorf("--%s %q: the port %q is not a number from 0 to 65535", flag, addr, port)
	}
	if strings.ContainsAny(host, ", \t/") {
		return fmt.Errorf("--%s %q: want one address, not a list", flag, addr)
	}
	return nil
}

// unwrapAddrError returns the reason of a net.AddrError.
func unwrapAddrError(err error) string {
	var ae *net.AddrError
	if errors.As(err, &ae) {
		return ae.Err
	}
	return err.Error()
}

// validateServe checks every setting of serve that can be checked without
// the data directory, so that a bad one fails before serve creates
// anything or prints client lines. The returned errors are usage errors.
func validateServe(o serveOptions) error {
	listens := [][2]string{{"listen", o.listen}, {"admin-listen", o.adminListen}}
	if o.debugListen != "" {
		listens = append(listens, [2]string{"debug-listen", o.debugListen})
	}
	if o.tls.listen != "" {
		listens = append(listens, [2]string{"tls-listen", o.tls.listen})
	}
	var errs []error
	for _, l := range listens {
		if err := checkListenAddr(l[0], l[1]); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := parseParentProxy(o.parentProxy); err != nil {
		errs = append(errs, err)
	}
	if _, err := egress.ParseRanges(o.allowRange); err != nil {
		errs = append(errs, fmt.Errorf("--allow-range: %w", err))
	}
	if _, err := upstreamClient(o.upstreamCA, nil, o.stallTimeout); err != nil {
		errs = append(errs, err)
	}
	if o.policy != "" {
		if b, err := os.ReadFile(o.policy); err != nil {
			errs = append(errs, fmt.Errorf("--policy: %w", err))
		} else if _, err := policy.Parse(b); err != nil {
			errs = append(errs, fmt.Errorf("--policy %s: %w (check it with: modgate policy check %s)", o.policy, err, o.policy))
		}
	}
	if o.listTTL < 0 || o.stallTimeout < 0 {
		errs = append(errs, errors.New("--list-ttl and --upstream-stall-timeout cannot be negative"))
	}
	if len(splitList(o.intercept)) == 0 {
		errs = append(errs, errors.New("--intercept: want at least one host"))
	}
	if err := errors.Join(errs...); err != nil {
		return usageError{err}
	}
	return nil
}
