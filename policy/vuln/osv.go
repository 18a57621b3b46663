package vuln

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"golang.org/x/mod/semver"
)

// ErrEntry is wrapped by the error of an OSV entry that cannot be used.
var ErrEntry = errors.New("invalid OSV entry")

// ReviewUnreviewed is the review status of an entry that the Go security
// team has not reviewed (database_specific.review_status).
const ReviewUnreviewed = "UNREVIEWED"

// Entry is the part of an OSV entry that modgate reads. The served files
// keep every field of the original.
type Entry struct {
	ID               string     `json:"id"`
	Modified         time.Time  `json:"modified"`
	Published        time.Time  `json:"published"`
	Withdrawn        *time.Time `json:"withdrawn,omitempty"`
	Aliases          []string   `json:"aliases,omitempty"`
	Summary          string     `json:"summary,omitempty"`
	Affected         []Affected `json:"affected"`
	DatabaseSpecific *struct {
		ReviewStatus string `json:"review_status,omitempty"`
	} `json:"database_specific,omitempty"`
}

// Affected is one module an entry affects, with its version ranges.
type Affected struct {
	Package struct {
		Name      string `json:"name"`
		Ecosystem string `json:"ecosystem"`
	} `json:"package"`
	Ranges []Range `json:"ranges,omitempty"`
}

// Range is an OSV range. Only SEMVER ranges say anything about Go module
// versions.
type Range struct {
	Type   string  `json:"type"`
	Events []Event `json:"events"`
}

// Event is an OSV range event: "introduced" or "fixed", a semantic version
// without the leading "v" ("0" is the beginning of time).
type Event struct {
	Introduced string `json:"introduced,omitempty"`
	Fixed      string `json:"fixed,omitempty"`
}

// Reviewed reports whether the Go security team reviewed the entry.
func (e *Entry) Reviewed() bool {
	return e.DatabaseSpecific == nil || e.DatabaseSpecific.ReviewStatus != ReviewUnreviewed
}

// idPattern is the form of a Go vulnerability ID, which is also a file name.
var idPattern = regexp.MustCompile(`^GO-[0-9]{4}-[0-9]{4,7}$`)

// ValidID reports whether id is a Go vulnerability ID such as GO-2021-0113.
func ValidID(id string) bool { return idPattern.MatchString(id) }

// ParseEntry parses and checks one OSV entry: a valid Go ID and, in every
// SEMVER range, events whose versions are valid semantic versions.
func ParseEntry(data []byte) (*Entry, error) {
	var e Entry
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrEntry, err)
	}
	if !ValidID(e.ID) {
		return nil, fmt.Errorf("%w: id %q is not a Go vulnerability ID", ErrEntry, e.ID)
	}
	for _, a := range e.Affected {
		if a.Package.Name == "" {
			return nil, fmt.Errorf("%w: %s: an affected package without a name", ErrEntry, e.ID)
		}
		for _, r := range a.Ranges {
			if r.Type != "SEMVER" {
				continue
			}
			for _, ev := range r.Events {
				for _, v := range []string{ev.Introduced, ev.Fixed} {
					if v != "" && v != "0" && !semver.IsValid(canonical(v)) {
						return nil, fmt.Errorf("%w: %s: %q is not a semantic version", ErrEntry, e.ID, v)
					}
				}
			}
		}
	}
	return &e, nil
}
