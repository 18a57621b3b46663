// Package proxy is modgate's gate: the interception server and the one
// pipeline behind it. Intercepted (CONNECT) and direct GOPROXY requests
// reach the same router, which turns (host, path) into a Request; module
// files then go through policy → cache → one upstream fetch per key →
// verify → store → serve, and checksum-database requests through the
// Witness. Errors reach clients as short text/plain bodies that the go
// command shows (see writeError). Each request leaves one access-log line.
//
// The rest of the front lives in subpackages that do not import this one:
// proxy/egress (CONNECT tunnels and forwarded plain-http requests to hosts
// the gate does not intercept), proxy/admin (the admin listener and its
// API) and proxy/audit (the audit log that the gate and admin share). The
// Server hands egress the CONNECTs it does not intercept; cmd/modgate
// wires admin to the gate's metrics and audit log.
package proxy
