package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"golang.org/x/mod/module"

	"github.com/modgate/modgate/policy/vuln"
)

// MaxVulnCheck is the most module versions one vulnerability check asks about.
const MaxVulnCheck = 100000

// VulnAPI is the admin API of the vulnerability database mirror:
// GET /api/v1/vuln shows its status, POST /api/v1/vuln/check lists the
// entries that affect module versions. Mount it behind RequireAuth.
type VulnAPI struct {
	// Status returns the mirror's status, encoded as JSON as it is.
	Status func() any
	// DB returns the database in force, or nil.
	DB func() *vuln.DB
}

// Register adds the API's routes to mux.
func (a VulnAPI) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/vuln", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, a.Status())
	})
	mux.HandleFunc("POST /api/v1/vuln/check", a.check)
}

// VulnCheckRequest is the body of POST /api/v1/vuln/check.
type VulnCheckRequest struct {
	Modules []module.Version `json:"modules"`
}

// VulnCheckResponse is its answer: the database's source, and the module
// versions that some entry affects (withdrawn entries left out).
type VulnCheckResponse struct {
	Source   vuln.Source      `json:"source"`
	Checked  int              `json:"checked"`
	Affected []VulnCheckMatch `json:"affected"`
}

// VulnCheckMatch is a module version and the entries that affect it.
type VulnCheckMatch struct {
	Path    string       `json:"path"`
	Version string       `json:"version"`
	Vulns   []vuln.Match `json:"vulns"`
}

func (a VulnAPI) check(w http.ResponseWriter, r *http.Request) {
	var req VulnCheckRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeJSONError(w, http.StatusBadRequest, fmt.Errorf("vuln check: %w", err), "modules")
		return
	}
	if len(req.Modules) > MaxVulnCheck {
		writeJSONError(w, http.StatusBadRequest,
			fmt.Errorf("vuln check: %d module versions; at most %d", len(req.Modules), MaxVulnCheck), "modules")
		return
	}
	db := a.DB()
	if db == nil {
		writeJSONError(w, http.StatusServiceUnavailable,
			errors.New("the gate holds no vulnerability database yet (see modgate vuln status)"), "")
		return
	}
	resp := VulnCheckResponse{Source: db.Source, Checked: len(req.Modules), Affected: []VulnCheckMatch{}}
	for _, m := range req.Modules {
		var live []vuln.Match
		for _, x := range db.Affected(m.Path, m.Version) {
			if !x.Withdrawn {
				live = append(live, x)
			}
		}
		if len(live) > 0 {
			resp.Affected = append(resp.Affected, VulnCheckMatch{Path: m.Path, Version: m.Version, Vulns: live})
		}
	}
	writeJSON(w, http.StatusOK, resp)
}
