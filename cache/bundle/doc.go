// Package bundle is the format of modgate's air-gap bundles: a tar file
// (optionally zstd-compressed) whose tree is a Go module proxy and a copy of
// the checksum database that proves every module in it, with a signed
// manifest of every file's SHA-256. It writes bundles deterministically
// and as a stream (Writer), extracts them with limits that refuse hostile
// archives (Extract), and verifies them offline (Verify): the manifest
// signature, every file's hash and size, the tree note's upstream
// signature, every record's inclusion, every zip's and go.mod's h1: hash,
// and the consistency tiles of an incremental bundle.
//
// It lives in cache/ because a bundle is the cache carried across an air
// gap (DESIGN.md names the room), and it imports nothing of modgate's: a
// tool can read and check a bundle with this package alone. docs/BUNDLE.md
// describes the format for other tools.
package bundle
