// Package proxy is modgate's HTTP front: it routes intercepted (CONNECT)
// and direct GOPROXY requests to one pipeline that fetches from the
// upstream, verifies against the witnessed checksum database, stores in the
// cache and serves from it.
//
// The router turns (host, path) into a Request. Module files go through
// cache → one upstream fetch per key → verify → store → serve; checksum
// database requests go through the Witness. Errors reach clients as short
// text/plain bodies that the go command shows (see writeError).
package proxy
