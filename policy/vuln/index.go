package vuln

import (
	"cmp"
	"slices"
	"strings"

	"golang.org/x/mod/semver"
)

// Match is an entry that affects a module version.
type Match struct {
	// ID is the entry's ID, such as GO-2021-0113.
	ID string `json:"id"`
	// Fixed is the newest version that fixes it for the module ("v0.3.8"),
	// or "" when no version does.
	Fixed string `json:"fixed,omitempty"`
	// FixedOrder orders the Fixed versions of one module's matches: a
	// higher one is a newer version (0 when Fixed is empty), so that a
	// caller finds the newest fix without comparing versions.
	FixedOrder int `json:"-"`
	// Reviewed is false for an entry marked UNREVIEWED.
	Reviewed bool `json:"reviewed"`
	// Withdrawn reports an entry its authors withdrew: it affects nothing
	// any more, and the policy ignores it.
	Withdrawn bool `json:"withdrawn,omitempty"`
}

// Index answers which entries affect a module version. It is built once
// and never modified, so any number of goroutines may use it.
type Index struct {
	byModule map[string][]ref
	// safeFrom is, per module, a version from which on no entry's range
	// reaches (each ends with a fix at or below it), so that a check of a
	// current version returns at once; absent when some range is open.
	safeFrom map[string]version
	entries  int
}

// ref is an entry as one module sees it: its ranges with the events
// sorted and the versions in canonical "v" form.
type ref struct {
	Match
	all    bool            // no SEMVER range: every version is affected
	ranges [][]parsedEvent // SEMVER ranges, events sorted as govulncheck sorts them
}

// parsedEvent is an event with its version parsed; zero is "introduced: 0".
type parsedEvent struct {
	introduced, zero bool
	v                version
}

// parseEvents parses sorted canonical events.
func parseEvents(events []Event) []parsedEvent {
	out := make([]parsedEvent, 0, len(events))
	for _, e := range events {
		switch {
		case e.Introduced == "0":
			out = append(out, parsedEvent{introduced: true, zero: true})
		case e.Introduced != "":
			v, _ := parseVersion(e.Introduced) // ParseEntry checked it
			out = append(out, parsedEvent{introduced: true, v: v})
		case e.Fixed != "":
			v, _ := parseVersion(e.Fixed)
			out = append(out, parsedEvent{v: v})
		}
	}
	return out
}

// NewIndex indexes entries by module path.
func NewIndex(entries []*Entry) *Index {
	x := &Index{byModule: make(map[string][]ref), entries: len(entries)}
	for _, e := range entries {
		x.add(e)
	}
	x.safeFrom = make(map[string]version, len(x.byModule))
	for mod, refs := range x.byModule {
		slices.SortFunc(refs, func(a, b ref) int { return cmp.Compare(a.ID, b.ID) })
		orderFixes(refs)
		if v, ok := safeFrom(refs); ok {
			x.safeFrom[mod] = v
		}
	}
	return x
}

// orderFixes sets the FixedOrder of refs: the rank of each Fixed among
// the distinct fixed versions of the module.
func orderFixes(refs []ref) {
	var fixes []string
	for _, r := range refs {
		if r.Fixed != "" && !slices.Contains(fixes, r.Fixed) {
			fixes = append(fixes, r.Fixed)
		}
	}
	slices.SortFunc(fixes, semver.Compare)
	for i := range refs {
		if refs[i].Fixed != "" {
			refs[i].FixedOrder = slices.Index(fixes, refs[i].Fixed) + 1
		}
	}
}

// safeFrom is the highest version that any event of refs names, when every
// range ends with a fix (so no version from it on is affected).
func safeFrom(refs []ref) (version, bool) {
	var top version
	for _, r := range refs {
		if r.all {
			return version{}, false
		}
		for _, events := range r.ranges {
			if len(events) == 0 || events[len(events)-1].introduced {
				return version{}, false
			}
			for _, e := range events {
				if !e.zero && e.v.compare(top) > 0 {
					top = e.v
				}
			}
		}
	}
	return top, true
}

// add indexes one entry under each module it affects.
func (x *Index) add(e *Entry) {
	for _, a := range e.Affected {
		var sorted [][]Event
		// No SEMVER range (or none at all): as govulncheck, every version.
		r := ref{Match: Match{ID: e.ID, Reviewed: e.Reviewed(), Withdrawn: e.Withdrawn != nil}, all: true}
		for _, rg := range a.Ranges {
			if rg.Type != "SEMVER" {
				continue
			}
			r.all = false
			sorted = append(sorted, sortedEvents(rg.Events))
			r.ranges = append(r.ranges, parseEvents(sorted[len(sorted)-1]))
		}
		r.Fixed = nonSupersededFix(sorted)
		x.byModule[a.Package.Name] = append(x.byModule[a.Package.Name], r)
	}
}

// Len is the number of entries indexed.
func (x *Index) Len() int { return x.entries }

// Modules is the number of module paths that some entry affects.
func (x *Index) Modules() int { return len(x.byModule) }

// Affected returns the entries that affect version vers of module mod,
// ordered by ID (withdrawn ones included, marked). A version that is not
// a valid semantic version is affected only by entries without ranges.
// Versions compare as the go command orders them: a pseudo-version is the
// pre-release it is, and +incompatible compares as its version.
func (x *Index) Affected(mod, vers string) []Match {
	refs := x.byModule[mod]
	if len(refs) == 0 {
		return nil
	}
	v, ok := parseVersion(vers)
	if top, safe := x.safeFrom[mod]; ok && safe && v.compare(top) >= 0 {
		return nil
	}
	var out []Match
	for i := range refs {
		if refs[i].affects(v, ok) {
			if out == nil {
				out = make([]Match, 0, len(refs)-i) // one allocation, not a growing slice
			}
			out = append(out, refs[i].Match)
		}
	}
	return out
}

// affects reports whether v (valid is false for an invalid version) is
// in one of the ranges.
func (r *ref) affects(v version, valid bool) bool {
	if r.all {
		return true
	}
	if !valid {
		return false
	}
	for _, events := range r.ranges {
		if contains(events, v) {
			return true
		}
	}
	return false
}

// contains walks sorted events as OSV (and govulncheck) define a range.
func contains(events []parsedEvent, v version) bool {
	if len(events) == 0 {
		return true
	}
	affected := false
	for _, e := range events {
		if !affected && e.introduced {
			affected = e.zero || v.compare(e.v) >= 0
		} else if affected && !e.introduced {
			affected = v.compare(e.v) < 0
		}
	}
	return affected
}

// sortedEvents returns the events in canonical form, sorted by version
// with "introduced: 0" first.
func sortedEvents(events []Event) []Event {
	out := make([]Event, 0, len(events))
	for _, e := range events {
		if e.Introduced != "" && e.Introduced != "0" {
			e.Introduced = canonical(e.Introduced)
		}
		if e.Fixed != "" {
			e.Fixed = canonical(e.Fixed)
		}
		out = append(out, e)
	}
	key := func(e Event) string {
		if e.Fixed != "" {
			return e.Fixed
		}
		return e.Introduced
	}
	slices.SortStableFunc(out, func(a, b Event) int {
		switch {
		case a.Introduced == "0" && b.Introduced == "0":
			return 0
		case a.Introduced == "0":
			return -1
		case b.Introduced == "0":
			return 1
		}
		return semver.Compare(key(a), key(b))
	})
	return out
}

// nonSupersededFix is the newest fixed version of the ranges, or "" when
// a later introduction (or a range without a fix) leaves none.
func nonSupersededFix(ranges [][]Event) string {
	fixed := ""
	for _, events := range ranges {
		for _, e := range events {
			if e.Fixed != "" && (fixed == "" || semver.Compare(e.Fixed, fixed) > 0) {
				fixed = e.Fixed
			}
		}
	}
	for _, events := range ranges {
		for _, e := range events {
			if e.Introduced != "" && e.Introduced != "0" && (fixed == "" || semver.Compare(e.Introduced, fixed) > 0) {
				return ""
			}
		}
	}
	return fixed
}

// canonical turns an OSV version ("1.2.3", "v1.2.3", "go1.20") into the
// "v" form that golang.org/x/mod/semver compares.
func canonical(v string) string {
	v = strings.TrimPrefix(strings.TrimPrefix(v, "go"), "v")
	return "v" + v
}

// bare drops the "v" of a canonical version, as OSV and the index files
// write versions.
func bare(v string) string { return strings.TrimPrefix(v, "v") }
