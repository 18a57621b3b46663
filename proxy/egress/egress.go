package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/modgate/modgate/internal/httperr"
	"github.com/modgate/modgate/internal/logfield"
	"github.com/modgate/modgate/policy"
)

// HostPolicy decides whether a host:port may be reached through the gate.
// DecideHost must be a pure function, safe for concurrent use; a Decision
// that is not Allowed is an enforced denial. *policy.Policy satisfies it.
type HostPolicy interface {
	DecideHost(host string, port int) policy.Decision
}

// Resolver resolves host names. *net.Resolver satisfies it. It returns an
// error, not an empty list, for a name without addresses.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// DialFunc dials a network address, as net.Dialer.DialContext does.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Config configures an Egress: what a CONNECT (or a plain http://
// proxy request) to a host that the gate does not intercept may reach.
// The zero value refuses every host.
type Config struct {
	// Policy returns the host policy in force. Nil, or a nil result,
	// refuses every host. (Return a nil interface, not a nil pointer.)
	Policy func() HostPolicy
	// AllowRanges opens address ranges that are refused by default (see
	// refusedRanges), such as 127.0.0.0/8 for tests or 10.0.0.0/8 for an
	// internal mirror. The gate's own listening sockets and unspecified
	// addresses (0.0.0.0/8, ::) stay refused.
	AllowRanges []netip.Prefix
	// ParentProxy, if set, is an http:// or https:// proxy that tunnels and
	// forwarded requests go through (HTTP CONNECT; user:password in the
	// URL become Basic Proxy-Authorization). The target name is still
	// resolved and checked when modgate can resolve it; see dialParent.
	ParentProxy *url.URL
	// Resolver resolves target names. Nil means net.DefaultResolver.
	Resolver Resolver
	// Dial dials the checked address (or the parent proxy). Nil means a
	// net.Dialer.
	Dial DialFunc
	// DialTimeout bounds resolving and connecting (and the parent proxy's
	// answer to CONNECT). 0 means 10 seconds.
	DialTimeout time.Duration
	// IdleTimeout closes a tunnel or forwarded request with no traffic in
	// either direction for so long. 0 means 5 minutes.
	IdleTimeout time.Duration
	// Interfaces lists the host's addresses, for listeners on a wildcard
	// address. Nil means net.InterfaceAddrs.
	Interfaces func() ([]netip.Addr, error)
	// Logger receives one line per decision. Nil means zap.NewNop().
	Logger *zap.Logger
}

// Egress decides, checks and makes the connections the gate opens for
// clients: CONNECT tunnels and forwarded plain http:// requests. It
// resolves the target once, checks every address, and dials exactly the
// address it checked.
type Egress struct {
	cfg      Config
	addrs    *addrChecker
	resolver Resolver
	dial     DialFunc
	log      *zap.Logger
	forwardT forwardTransport
}

// New returns an Egress for cfg.
func New(cfg Config) (*Egress, error) {
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 10 * time.Second
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 5 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if p := cfg.ParentProxy; p != nil && ((p.Scheme != "http" && p.Scheme != "https") || p.Hostname() == "") {
		return nil, fmt.Errorf("parent proxy %s: want http://[user:password@]host:port or https://...", httperr.Redact(p))
	}
	e := &Egress{
		cfg:      cfg,
		addrs:    newAddrChecker(cfg.AllowRanges, cfg.Interfaces),
		resolver: cfg.Resolver,
		dial:     cfg.Dial,
		log:      cfg.Logger,
	}
	if e.resolver == nil {
		e.resolver = net.DefaultResolver
	}
	if e.dial == nil {
		e.dial = (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext
	}
	e.forwardT = newForwardTransport(e)
	return e, nil
}

// AddSelf records a listening address of the gate: connections to it are
// always refused. A wildcard address (0.0.0.0, ::) stands for every
// address of the host on that port.
func (e *Egress) AddSelf(a net.Addr) { e.addrs.addSelf(a) }

// decide returns the host policy's decision for t.
func (e *Egress) decide(t Target) policy.Decision {
	var hp HostPolicy
	if e.cfg.Policy != nil {
		hp = e.cfg.Policy()
	}
	if hp == nil {
		return policy.Decision{Action: policy.Deny, Rule: "default", Reason: "no egress rules are configured"}
	}
	return hp.DecideHost(t.Host, t.Port)
}

// DeniedHostError is an enforced denial of a host by the egress rules.
type DeniedHostError struct {
	Target   Target
	Decision policy.Decision
}

func (e *DeniedHostError) Error() string {
	return fmt.Sprintf("%s: %s (egress rule %s)", e.Target, e.Decision.Reason, e.Decision.Rule)
}

// Unwrap returns ErrRefused.
func (e *DeniedHostError) Unwrap() error { return ErrRefused }

// resolve returns the addresses of t, every one checked. A name with any
// refused address is refused as a whole: a name that mixes public and
// internal addresses is an attack or a mistake either way.
func (e *Egress) resolve(ctx context.Context, t Target) ([]netip.Addr, error) {
	if t.IP.IsValid() {
		if err := e.addrs.check(netip.AddrPortFrom(t.IP, uint16(t.Port))); err != nil {
			return nil, err
		}
		return []netip.Addr{t.IP}, nil
	}
	ips, err := e.resolver.LookupNetIP(ctx, "ip", t.Host)
	if err == nil && len(ips) == 0 {
		err = errors.New("no addresses")
	}
	if err != nil {
		return nil, &ResolveError{Host: t.Host, Err: err}
	}
	var out []netip.Addr
	for _, ip := range ips {
		ip = ip.WithZone("").Unmap()
		if err := e.addrs.check(netip.AddrPortFrom(ip, uint16(t.Port))); err != nil {
			return nil, fmt.Errorf("%s resolves to an address modgate may not reach: %w", t.Host, err)
		}
		if !slices.Contains(out, ip) {
			out = append(out, ip)
		}
	}
	return out, nil
}

// ResolveError is a failure to resolve a target name.
type ResolveError struct {
	Host string
	Err  error
}

func (e *ResolveError) Error() string { return fmt.Sprintf("resolving %s: %v", e.Host, e.Err) }

// Unwrap returns the resolver's error.
func (e *ResolveError) Unwrap() error { return e.Err }

// dialTarget connects to t after the checks: to a checked address, or
// through the parent proxy. It returns the connection and the address
// dialled, for the log.
func (e *Egress) dialTarget(ctx context.Context, t Target) (net.Conn, string, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.DialTimeout)
	defer cancel()
	if e.cfg.ParentProxy != nil {
		return e.dialParent(ctx, t)
	}
	ips, err := e.resolve(ctx, t)
	if err != nil {
		return nil, "", err
	}
	var errs []error
	for _, ip := range ips {
		addr := netip.AddrPortFrom(ip, uint16(t.Port)).String()
		c, err := e.dial(ctx, "tcp", addr)
		if err == nil {
			return c, addr, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, "", fmt.Errorf("connecting to %s: %w", t, errors.Join(errs...))
}

// refusal wraps err as the client sees it.
func refusal(verb string, t Target, err error) error {
	var ae *AddressError
	if errors.As(err, &ae) && ae.Always {
		return fmt.Errorf("%w: %s to %s: %w; that would loop back into the gate, so --allow-range cannot open it",
			ErrRefused, verb, t, err)
	}
	if errors.Is(err, ErrAddress) {
		return fmt.Errorf(
			"%w: %s to %s: %w; modgate connects there only if --allow-range covers it",
			ErrRefused,
			verb,
			t,
			err,
		)
	}
	return fmt.Errorf("%s to %s: %w", verb, t, err)
}

// The messages of the Egress's log lines: one per CONNECT and one per
// plain http:// proxy request, whatever was decided.
const (
	LineConnect = "connect"
	LineForward = "forward"
)

// logLine writes one "connect" or "forward" line. Every line has the same
// fields (client, host, port, resolved, decision, rule, reason,
// would_deny), then what its decision adds (bytes, status, error).
func (e *Egress) logLine(what, client string, t Target, resolved string, d policy.Decision, decision string,
	extra ...zap.Field) {
	e.logLineAt(zap.InfoLevel, what, client, t, resolved, d, decision, extra...)
}

// logLineAt is logLine at the given level.
func (e *Egress) logLineAt(level zapcore.Level, what, client string, t Target, resolved string, d policy.Decision,
	decision string, extra ...zap.Field) {
	fields := append([]zap.Field{
		zap.String(logfield.Client, client), zap.String(logfield.Host, t.Host), zap.Int(logfield.Port, t.Port),
		zap.String(logfield.Resolved, resolved), zap.String(logfield.Decision, decision),
		zap.String(logfield.Rule, d.Rule), zap.String(logfield.Reason, d.Reason),
		zap.Bool(logfield.WouldDeny, d.WouldDeny),
	}, extra...)
	e.log.Log(level, what, fields...)
}

// logRefused logs a refused or failed request; what is LineConnect or
// LineForward.
func (e *Egress) logRefused(what, client string, t Target, resolved string, d policy.Decision, start time.Time,
	err error) {
	status := httperr.Status(err)
	decision := "refuse" // 403, and 503 for a gate at its cap of CONNECTs
	if status != http.StatusForbidden && status != http.StatusServiceUnavailable {
		decision = "error"
	}
	var ae *AddressError
	if resolved == "" && errors.As(err, &ae) {
		resolved = ae.Addr.String() // the refused address
	}
	fields := []zap.Field{zap.Int(logfield.Status, status), zap.Duration(logfield.Duration, time.Since(start)),
		zap.Error(err)}
	if decision == "refuse" {
		// A client sees only "403" (git: "CONNECT tunnel failed"); the
		// operator needs the line, the rule and what to change.
		e.logLineAt(zap.WarnLevel, what, client, t, resolved, d, decision,
			append(fields, zap.String(logfield.Hint, refusalHint(err)))...)
		return
	}
	e.logLine(what, client, t, resolved, d, decision, fields...)
}

// LogIntercept logs a CONNECT that the gate answers itself (decision
// "intercept"), in the shape of every other "connect" line.
func (e *Egress) LogIntercept(client string, t Target) {
	e.logLine(LineConnect, client, t, "", policy.Decision{}, "intercept")
}

// LogRefused logs a CONNECT (what is LineConnect) or a plain proxy request
// (LineForward) that the gate refused before the host rules: a malformed
// target, or a host the gate answers itself, asked for on another port or
// scheme. target is the target as the client sent it.
func (e *Egress) LogRefused(what, client, target string, err error) {
	e.logRefused(what, client, Target{Host: target}, "", policy.Decision{}, time.Now(), err)
}
