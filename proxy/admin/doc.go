// Package admin is the gate's admin listener: /healthz, /readyz, the CA
// certificate, the enterprise verifier key, the Prometheus metrics, and
// the authenticated JSON API under /api/ (a bearer token or a client
// certificate from modgate's CA; see RequireAuth) with its policy,
// witness and cache-statistics endpoints. The debug listener's handler
// (pprof and counters) lives here too.
//
// It needs only a small view of the gate, declared here as interfaces
// (StatsSource, Traffic, WitnessAdmin) and the shared audit log
// (proxy/audit); it never imports package proxy. cmd/modgate wires it.
package admin
