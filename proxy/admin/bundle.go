package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"go.uber.org/zap"

	"github.com/modgate/modgate/proxy/audit"
)

// BundleModule names a module version for an export.
type BundleModule struct {
	Path    string `json:"path"`
	Version string `json:"version"`
	// ModOnly carries the .info and .mod only (a go.sum "/go.mod" line).
	ModOnly bool `json:"mod_only,omitempty"`
}

// BundleExportRequest is the body of POST /api/v1/bundle/export.
type BundleExportRequest struct {
	// Modules are exported as listed (from a go.sum or a list of
	// module@version lines).
	Modules []BundleModule `json:"modules,omitempty"`
	// GoMods are go.mod files whose transitive requirements are exported,
	// read from the gate's own verified .mod files.
	GoMods []string `json:"go_mods,omitempty"`
	// SinceSize adds the tiles that prove the bundle's tree extends the
	// tree of that size (an older bundle's); 0 for none.
	SinceSize int64 `json:"since_size,omitempty"`
	// SinceModules are left out: the older bundle carried them.
	SinceModules []BundleModule `json:"since_modules,omitempty"`
	// WithVulnDB adds the newest version of golang.org/x/vulndb.
	WithVulnDB bool `json:"with_vulndb,omitempty"`
	// Zstd compresses the bundle (.tar.zst).
	Zstd bool `json:"zstd,omitempty"`
}

// BundleImportResult is the answer to POST /api/v1/bundle/import.
type BundleImportResult struct {
	Modules   int    `json:"modules"`
	Zips      int    `json:"zips"`
	TreeSize  int64  `json:"tree_size"`
	TreeHash  string `json:"tree_hash"`
	Since     int64  `json:"since,omitempty"`
	Witnessed int64  `json:"witnessed"` // the witnessed tree size after the import
	Signer    string `json:"signer"`
	Created   string `json:"created"`
}

// Bundles is the gate's side of air-gap bundles. Export gathers and
// verifies everything first, and only then calls start for the writer of
// the bundle's bytes: an error before start is the request's error, one
// after it cuts the stream. Import reads a whole bundle, verifies all of
// it, and stores it, or stores nothing and returns the first failure;
// trust adds verifier keys whose manifests it accepts.
type Bundles interface {
	Export(ctx context.Context, req BundleExportRequest, start func(zstd bool) io.Writer) error
	Import(ctx context.Context, r io.Reader, trust []string) (BundleImportResult, error)
}

// BundleAPIConfig configures a BundleAPI. Bundles is required.
type BundleAPIConfig struct {
	Bundles Bundles
	Audit   *audit.Log  // records every import; nil records nothing (tests only)
	Logger  *zap.Logger // nil means zap.NewNop()
}

// BundleAPI is the admin API of air-gap bundles: POST
// /api/v1/bundle/export answers a bundle as a stream, POST
// /api/v1/bundle/import?trust=KEY takes one as the body. Mount it behind
// RequireAuth.
type BundleAPI struct {
	cfg BundleAPIConfig
	log *zap.Logger
}

// NewBundleAPI returns the API for cfg.
func NewBundleAPI(cfg BundleAPIConfig) *BundleAPI {
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	return &BundleAPI{cfg: cfg, log: cfg.Logger}
}

// Register adds the API's routes to mux.
func (a *BundleAPI) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v1/bundle/export", a.export)
	mux.HandleFunc("POST /api/v1/bundle/import", a.importBundle)
}

// BundleTrailer is the HTTP trailer of an export: "ok" once the whole
// bundle is written, else why it was cut short.
const BundleTrailer = "X-Modgate-Bundle"

func (a *BundleAPI) export(w http.ResponseWriter, r *http.Request) {
	var req BundleExportRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, maxAPIBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeJSONError(w, http.StatusBadRequest, fmt.Errorf("export request: %w", err), "")
		return
	}
	started := false
	err := a.cfg.Bundles.Export(r.Context(), req, func(zstd bool) io.Writer {
		started = true
		h := w.Header()
		h.Set("Content-Type", "application/x-tar")
		if zstd {
			h.Set("Content-Type", "application/zstd")
		}
		h.Set("Trailer", BundleTrailer)
		h.Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		return w
	})
	switch {
	case err != nil && !started:
		a.log.Warn("bundle export refused", zap.String("who", Who(r.Context())), zap.Error(err))
		writeJSONError(w, bundleStatus(err), err, "")
	case err != nil:
		a.log.Error("bundle export cut short", zap.Error(err))
		w.Header().Set(BundleTrailer, "failed: "+err.Error())
	default:
		w.Header().Set(BundleTrailer, "ok")
		a.log.Info("bundle exported", zap.String("who", Who(r.Context())))
	}
}

func (a *BundleAPI) importBundle(w http.ResponseWriter, r *http.Request) {
	who := Who(r.Context())
	res, err := a.cfg.Bundles.Import(r.Context(), r.Body, r.URL.Query()["trust"])
	if err != nil {
		a.log.Warn("bundle import refused", zap.String("who", who), zap.Error(err))
		writeJSONError(w, bundleStatus(err), err, "")
		return
	}
	a.log.Info("bundle imported", zap.String("who", who), zap.Int("modules", res.Modules),
		zap.Int64("tree_size", res.TreeSize))
	if a.cfg.Audit != nil {
		e := audit.Entry{Who: who, Action: "bundle.import", Subject: fmt.Sprintf("tree #%d", res.TreeSize),
			Reason: fmt.Sprintf("%d modules signed by %s, made %s", res.Modules, res.Signer, res.Created)}
		if err := a.cfg.Audit.Append(context.WithoutCancel(r.Context()), e); err != nil {
			a.log.Error("cannot audit a bundle import", zap.Error(err))
		}
	}
	writeJSON(w, http.StatusOK, res)
}

// BundleStatusError is an error of Bundles with the HTTP status to answer.
type BundleStatusError struct {
	Status int
	Err    error
}

func (e *BundleStatusError) Error() string { return e.Err.Error() }
func (e *BundleStatusError) Unwrap() error { return e.Err }

// bundleStatus is the status of an export or import error: its own, 499
// for a canceled request, else 422 (the bundle or request is refused).
func bundleStatus(err error) int {
	var se *BundleStatusError
	switch {
	case errors.As(err, &se):
		return se.Status
	case errors.Is(err, context.Canceled):
		return 499
	}
	return http.StatusUnprocessableEntity
}

// bundleBody reports whether a request is a bundle import with a bundle's
// media type: like JSON, none of them is a body a web page can send
// without a CORS preflight.
func bundleBody(r *http.Request, mediaType string) bool {
	return r.URL.Path == "/api/v1/bundle/import" &&
		(mediaType == "application/x-tar" || mediaType == "application/zstd")
}
