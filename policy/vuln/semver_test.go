package vuln

import (
	"testing"

	"golang.org/x/mod/semver"
)

// TestCompareAsSemver checks the parsed comparison against
// golang.org/x/mod/semver on every pair of a varied list.
func TestCompareAsSemver(t *testing.T) {
	list := []string{"v0.0.0", "v0.0.0-20240101000000-abcdefabcdef", "v0.0.0-20240601000000-abcdefabcdef",
		"v1.0.0", "v1.0.0-rc.1", "v1.0.0-rc.2", "v1.0.0-rc.10", "v1.0.0-beta", "v1.0.0-1", "v1.0.0-alpha.1",
		"v1.0.1-0.20240101000000-abcdefabcdef", "v1.2.3", "v1.10.0", "v2.0.0+incompatible", "v2.0.0", "v10.0.0",
		"v1.0.0-alpha", "v1.0.0-alpha.beta", "v1.0.0-0.3.7", "v1.0.0-x.7.z.92", "v1.2"}
	for _, a := range list {
		for _, b := range list {
			pa, _ := parseVersion(a)
			pb, _ := parseVersion(b)
			if got, want := pa.compare(pb), semver.Compare(a, b); got != want {
				t.Errorf("compare(%s, %s) = %d, semver says %d", a, b, got, want)
			}
		}
	}
}
