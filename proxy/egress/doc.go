// Package egress is the gate's way out to hosts it does not intercept:
// the CONNECT tunnels and the plain http:// requests it forwards for
// clients. It is a security boundary and is meant to be reviewed alone.
//
// Every connection is decided by the host rules first (a HostPolicy, such
// as the egress section of the policy), then the target is resolved once,
// every address is checked (loopback, private, link-local, CGNAT, metadata
// and the gate's own listening sockets are refused unless an allowed range
// opens them) and exactly the checked address is dialled, directly or
// through a parent proxy. Each decision is logged as one line ("connect"
// or "forward") of one shape, on the Egress's logger.
//
// It imports nothing of the gate (package proxy): only policy and small
// internal helpers. The gate hands it the CONNECTs and proxy requests it
// does not answer itself.
package egress
