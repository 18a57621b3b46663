// Package pki is modgate's internal certificate authority.
//
// The CA exists only to intercept TLS to the Go module proxy and the
// checksum database (proxy.golang.org, sum.golang.org) and modgate's own
// names. It is an ECDSA P-256 root whose X.509 name constraints permit
// exactly those DNS names (and their subdomains) and exclude every IP
// address, so that even a stolen CA key cannot make a certificate that a
// standard verifier accepts for any other site.
//
// The CA lives in a data directory as ca.pem (mode 0644) and ca-key.pem
// (mode 0600, PKCS #8). Files are never overwritten, and Load refuses a key
// file that group or others can read.
//
// Issuer is a certmagic.Issuer that signs short-lived leaf certificates
// with the CA. Leaves wires the Issuer into certmagic's on-demand TLS, so
// leaf certificates are minted once per name, kept in memory and in storage,
// reused across connections and restarts, and renewed before they expire,
// all without any network access.
//
// The gate's own HTTPS endpoint gets its certificates up front instead:
// Leaves.Manage obtains them from the CA and certmagic's maintenance renews
// them in the background; or ACME obtains and renews them from an
// enterprise ACME CA (TLS-ALPN-01, answered on the endpoint's listener).
// Both serve them with ManagedTLSConfig.
package pki
