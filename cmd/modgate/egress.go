package main

import (
	"fmt"
	"net/url"
	"strings"

	"go.uber.org/zap"

	"github.com/modgate/modgate/policy"
	"github.com/modgate/modgate/proxy/egress"
	"github.com/modgate/modgate/signer"
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

// parentProxyAuthEnv names the environment variable that may hold the
// parent proxy's "user:password". It is no flag, so that the password never
// shows in a process list or /debug/pprof/cmdline.
const parentProxyAuthEnv = "MODGATE_PARENT_PROXY_AUTH"

// resolveParentProxy parses --parent-proxy and adds its credentials from
// --parent-proxy-auth-file or MODGATE_PARENT_PROXY_AUTH. At most one of
// those and the URL's own user:password may give them.
func resolveParentProxy(o serveOptions) (*url.URL, error) {
	u, err := parseParentProxy(o.parentProxy)
	if err != nil || u == nil {
		if err == nil && (o.parentAuthFile != "" || o.parentAuthEnv != "") {
			err = fmt.Errorf("--parent-proxy-auth-file or %s without --parent-proxy", parentProxyAuthEnv)
		}
		return u, err
	}
	var sources []string
	if u.User != nil {
		sources = append(sources, "the --parent-proxy URL")
	}
	creds, from := "", ""
	if o.parentAuthFile != "" {
		sources = append(sources, "--parent-proxy-auth-file")
		if creds, err = signer.ReadSecret(o.parentAuthFile); err != nil {
			return nil, fmt.Errorf("--parent-proxy-auth-file: %w", err)
		}
		from = "--parent-proxy-auth-file " + o.parentAuthFile
	}
	if o.parentAuthEnv != "" {
		sources = append(sources, parentProxyAuthEnv)
		creds, from = o.parentAuthEnv, parentProxyAuthEnv
	}
	if len(sources) > 1 {
		return nil, fmt.Errorf("the parent proxy's credentials come from %s: give them once",
			strings.Join(sources, " and "))
	}
	if from != "" {
		user, pass, ok := strings.Cut(strings.TrimSpace(creds), ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("%s: want user:password", from)
		}
		u.User = url.UserPassword(user, pass)
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
