// Package vuln is the Go vulnerability database as modgate uses it: OSV
// entries read from the golang.org/x/vulndb module's zip (Build), an index
// by module path that answers "is this version affected" without a scan
// over the entries (Index.Affected), and the database in the layout that
// govulncheck's HTTP client reads, served with Last-Modified and
// conditional requests (DB.ServeHTTP).
//
// It is a leaf: it reads a zip and answers questions, and knows nothing
// of the gate that fetches, verifies and caches the module.
package vuln
