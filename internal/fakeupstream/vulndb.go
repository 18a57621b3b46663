package fakeupstream

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/module"
)

// VulnDBModule is the module path of the Go vulnerability database.
const VulnDBModule = "golang.org/x/vulndb"

// The IDs of the entries of VulnDBEntries.
const (
	// VulnLib affects example.com/lib below v1.1.0, in lib.Hello: the
	// entry a program calling lib.Hello at v1.0.0 is reported for.
	VulnLib = "GO-2099-0001"
	// VulnUnreviewed is marked UNREVIEWED; it affects example.com/bad v1.1.0.
	VulnUnreviewed = "GO-2099-0002"
	// VulnPseudo affects example.com/dep below a pseudo-version of 2024-06-01.
	VulnPseudo = "GO-2099-0003"
	// VulnWithdrawn is withdrawn; it names every version of example.com/lib.
	VulnWithdrawn = "GO-2099-0004"
	// VulnMalformed is a file that is not valid JSON.
	VulnMalformed = "GO-2099-0005"
)

// VulnPseudoFixed is the pseudo-version that fixes VulnPseudo.
const VulnPseudoFixed = "v0.0.0-20240601000000-abcdefabcdef"

// VulnDBEntries returns the OSV files of a small vulnerability database,
// by file name under data/osv/: one entry for each case a consumer must
// handle (see the Vuln* IDs), with "modified" zero as in the repository.
func VulnDBEntries() map[string][]byte {
	entry := func(id, extra, affected string) []byte {
		review := ""
		if id == VulnUnreviewed {
			review = `, "review_status": "UNREVIEWED"`
		}
		return fmt.Appendf(nil, `{
  "schema_version": "1.3.1",
  "id": %q,
  "modified": "0001-01-01T00:00:00Z",
  "published": "2025-01-01T00:00:00Z",%s
  "summary": "test entry %s",
  "details": "A test entry of the fake vulnerability database.",
  "affected": [%s],
  "database_specific": {"url": "https://pkg.go.dev/vuln/%s"%s}
}
`, id, extra, id, affected, id, review)
	}
	return map[string][]byte{
		VulnLib + ".json": entry(VulnLib, ` "aliases": ["CVE-2099-0001"],`, `{
    "package": {"name": "example.com/lib", "ecosystem": "Go"},
    "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "1.1.0"}]}],
    "ecosystem_specific": {"imports": [{"path": "example.com/lib", "symbols": ["Hello"]}]}
  }`),
		VulnUnreviewed + ".json": entry(VulnUnreviewed, "", `{
    "package": {"name": "example.com/bad", "ecosystem": "Go"},
    "ranges": [{"type": "SEMVER", "events": [{"introduced": "1.1.0"}, {"fixed": "1.2.0"}]}]
  }`),
		VulnPseudo + ".json": entry(VulnPseudo, "", `{
    "package": {"name": "example.com/dep", "ecosystem": "Go"},
    "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "`+
			strings.TrimPrefix(VulnPseudoFixed, "v")+`"}]}]
  }`),
		VulnWithdrawn + ".json": entry(VulnWithdrawn, `
  "withdrawn": "2025-02-01T00:00:00Z",`, `{
    "package": {"name": "example.com/lib", "ecosystem": "Go"},
    "ecosystem_specific": {"imports": [{"path": "example.com/lib", "symbols": ["Hello"]}]}
  }`),
		VulnMalformed + ".json": []byte(`{"id": "GO-2099-0005", "affected": [`),
	}
}

// VulnDBVersion returns the pseudo-version of the vulnerability database
// committed at t.
func VulnDBVersion(t time.Time) string {
	return module.PseudoVersion("v0", "", t.UTC(), "abcdef"+t.UTC().Format("150405"))
}

// AddVulnDB publishes a version of golang.org/x/vulndb committed at t (its
// pseudo-version and .info Time) with the given files under data/osv/,
// and returns it.
func (s *Server) AddVulnDB(t time.Time, files map[string][]byte) (module.Version, error) {
	vers := VulnDBVersion(t)
	var b strings.Builder
	fmt.Fprintf(&b, "golang.org/x/vulndb %s: the fake vulnerability database.\n", vers)
	fmt.Fprintf(&b, "-- .info --\n{\"Version\":%q,\"Time\":%q}\n", vers, t.UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "-- go.mod --\nmodule %s\n\ngo 1.21\n", VulnDBModule)
	for _, name := range slices.Sorted(maps.Keys(files)) {
		fmt.Fprintf(&b, "-- data/osv/%s --\n%s", name, files[name])
		if !strings.HasSuffix(string(files[name]), "\n") {
			b.WriteString("\n")
		}
	}
	esc, err := module.EscapeVersion(vers)
	if err != nil {
		return module.Version{}, err
	}
	return s.AddArchive("golang.org_x_vulndb_"+esc+".txt", []byte(b.String()))
}
