// Package layering holds no code: its test checks, with go list, that the
// imports of modgate's packages flow one way, as DESIGN.md's layout says:
// cmd → proxy → {proxy/egress, proxy/admin, proxy/audit} → {cache, signer,
// pki, policy}, with internal/ helpers below them all. A folder of its own
// because the rule is about the whole module, not one package.
package layering
