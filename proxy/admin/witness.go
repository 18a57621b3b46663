package admin

import (
	"context"
	"net/http"

	"go.uber.org/zap"

	"github.com/modgate/modgate/proxy/audit"
	"github.com/modgate/modgate/signer"
)

// WitnessAdmin is the witness as the admin API sees it. *signer.Witness
// satisfies it. ClearFork never deletes evidence; it marks it cleared.
// Reset archives the witness state and accepts the upstream's next tree
// head as the first.
type WitnessAdmin interface {
	Status(ctx context.Context) (signer.Status, error)
	ClearFork(ctx context.Context, who string) ([]signer.ClearedEvidence, error)
	Reset(ctx context.Context, who, reason string) (signer.Archive, error)
}

var _ WitnessAdmin = (*signer.Witness)(nil)

// WitnessAPIConfig configures a WitnessAPI. Witness is required.
type WitnessAPIConfig struct {
	Witness WitnessAdmin
	// Audit records every clearing of fork evidence; nil records nothing
	// (tests only).
	Audit *audit.Log
	// Logger is nil for zap.NewNop().
	Logger *zap.Logger
}

// WitnessAPI is the admin API of the checksum-database witness, under
// /api/v1/witness: GET shows the witnessed tree head and any fork
// evidence; POST /api/v1/witness/clear-fork lets checksum-database traffic
// through again after an operator has looked at the evidence, or, with
// "reset": true, sets the witness state aside to follow a new upstream
// timeline. Mount it behind RequireAuth.
type WitnessAPI struct {
	cfg WitnessAPIConfig
	log *zap.Logger
}

// NewWitnessAPI returns the API for cfg.
func NewWitnessAPI(cfg WitnessAPIConfig) *WitnessAPI {
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	return &WitnessAPI{cfg: cfg, log: cfg.Logger}
}

// Register adds the API's routes to mux.
func (a *WitnessAPI) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/witness", a.status)
	mux.HandleFunc("POST /api/v1/witness/clear-fork", a.clearFork)
}

func (a *WitnessAPI) status(w http.ResponseWriter, r *http.Request) {
	st, err := a.cfg.Witness.Status(r.Context())
	if err != nil {
		writeAPIError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// ClearForkRequest is the optional body of POST /api/v1/witness/clear-fork.
type ClearForkRequest struct {
	Reason string `json:"reason,omitempty"` // recorded in the audit log
	// Reset archives the witness state and accepts the upstream's next
	// tree head as the first: the operator has decided to follow a new
	// upstream timeline.
	Reset bool `json:"reset,omitempty"`
}

// ClearForkResponse is the answer to POST /api/v1/witness/clear-fork.
type ClearForkResponse struct {
	Cleared []signer.ClearedEvidence `json:"cleared"`
	Reset   *signer.Archive          `json:"reset,omitempty"` // the archived state, after a reset
	Status  signer.Status            `json:"status"`
}

func (a *WitnessAPI) clearFork(w http.ResponseWriter, r *http.Request) {
	var req ClearForkRequest
	if r.ContentLength != 0 {
		if err := decodeJSON(w, r, &req); err != nil {
			writeAPIError(w, err)
			return
		}
	}
	who := Who(r.Context())
	if who == "" {
		who = "unknown"
	}
	if req.Reset {
		a.reset(w, r, who, req.Reason)
		return
	}
	cleared, err := a.cfg.Witness.ClearFork(r.Context(), who)
	if err != nil {
		writeAPIError(w, err)
		return
	}
	st, err := a.cfg.Witness.Status(r.Context())
	if err != nil {
		writeAPIError(w, err)
		return
	}
	a.log.Warn(
		"fork evidence cleared",
		zap.String("who", who),
		zap.Int("records", len(cleared)),
		zap.String("reason", req.Reason),
	)
	if a.cfg.Audit != nil && len(cleared) > 0 {
		e := audit.Entry{Who: who, Action: "witness.clear-fork", Subject: st.Database, Reason: req.Reason}
		if err := a.cfg.Audit.Append(r.Context(), e); err != nil {
			a.log.Error("cannot audit the clearing of fork evidence", zap.Error(err))
		}
	}
	if cleared == nil {
		cleared = []signer.ClearedEvidence{}
	}
	writeJSON(w, http.StatusOK, ClearForkResponse{Cleared: cleared, Status: st})
}

// reset archives the witness state and follows a new upstream timeline.
func (a *WitnessAPI) reset(w http.ResponseWriter, r *http.Request, who, reason string) {
	arch, err := a.cfg.Witness.Reset(r.Context(), who, reason)
	if err != nil {
		writeAPIError(w, err)
		return
	}
	a.log.Warn("witness reset", zap.String("who", who), zap.String("archive", arch.Key), zap.String("reason", reason))
	if a.cfg.Audit != nil {
		e := audit.Entry{Who: who, Action: "witness.reset", Subject: arch.Key, Reason: reason}
		if err := a.cfg.Audit.Append(r.Context(), e); err != nil {
			a.log.Error("cannot audit the reset of the witness", zap.Error(err))
		}
	}
	st, err := a.cfg.Witness.Status(r.Context())
	if err != nil {
		writeAPIError(w, err)
		return
	}
	cleared := make([]signer.ClearedEvidence, 0, len(arch.Evidence))
	for _, c := range st.Cleared {
		if c.ClearedAt.Equal(arch.Time) {
			cleared = append(cleared, c)
		}
	}
	writeJSON(w, http.StatusOK, ClearForkResponse{Cleared: cleared, Reset: &arch, Status: st})
}
