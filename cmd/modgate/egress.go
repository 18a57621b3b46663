package main

import (
	"fmt"
	"net/url"

	"go.uber.org/zap"

	"github.com/modgate/modgate/policy"
	"github.com/modgate/modgate/proxy/egress"
)

// newEgress builds what CONNECTs and plain http:// requests to hosts the
// gate does not intercept may reach: hostPolicy decides (nil refuses every
// host), --allow-range opens address ranges refused by default, and
// --parent-proxy carries the tunnels.
func newEgress(
	o serveOptions,
	parent *url.URL,
	hostPolicy func() egress.HostPolicy,
	log *zap.Logger,
) (*egress.Egress, error) {
	ranges, err := egress.ParseRanges(o.allowRange)
	if err != nil {
		return nil, usageError{fmt.Errorf("--allow-range: %w", err)}
	}
	return egress.New(egress.Config{Policy: hostPolicy, AllowRanges: ranges, ParentProxy: parent, Logger: log})
}

// hostPolicy returns the egress rules of the policy file in force.
func hostPolicy(f *policy.File) func() egress.HostPolicy {
	return func() egress.HostPolicy {
		if p := f.Current(); p != nil {
			return p
		}
		return nil // a nil *policy.Policy must not become a non-nil HostPolicy
	}
}

// parseParentProxy parses --parent-proxy; "" means none.
func parseParentProxy(s string) (*url.URL, error) {
	if s == "" {
		return nil, nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" ||
		(u.Path != "" && u.Path != "/") ||
		u.RawQuery != "" {
		return nil, fmt.Errorf("--parent-proxy: want http://[user:password@]host:port (or https://), got %q", redactURL(s))
	}
	return u, nil
}

// redactURL hides the password of a URL that may not parse.
func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Redacted()
	}
	return "(unparsable URL)"
}
