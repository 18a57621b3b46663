// Package signer holds modgate's note keys and its checksum-database witness.
//
// The enterprise signer co-signs tree heads of the upstream checksum
// database. The Witness checks every signed tree head against the upstream
// verifier key and against the newest tree head it has witnessed before, and
// authenticates records and tiles against witnessed trees, using the proofs
// of golang.org/x/mod/sumdb/tlog. Only then does anything reach the caller.
//
// The witness keeps its state in a Store (the proxy adapts the Badger cache;
// MemStore is an in-memory fake for tests) and reads the upstream through a
// Remote. It imports nothing else of modgate.
package signer
