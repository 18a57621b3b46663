package admin

import (
	"encoding/json"
	"net/http"
	"net/http/pprof"
)

// DebugHandler serves the debug listener (modgate serve --debug-listen):
// Go's profiles under /debug/pprof/ and, at /debug/counters, a JSON object
// of the counters that counters returns (such as "leaves_issued", the
// number of leaf certificates minted since start).
//
// It is unauthenticated, so the listener is off by default and meant for a
// loopback address: profiles reveal what the process is doing, and a CPU
// profile costs CPU while it runs. The bench command (internal/bench)
// reads it to profile the gate and to check that no leaf is minted twice.
func DebugHandler(counters func() map[string]int64) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /debug/counters", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(counters())
	})
	return mux
}
