package admin

import (
	"fmt"
	"net/http"
)

// Config says what the admin listener serves. Nil handlers and an
// empty Verifier are not mounted.
type Config struct {
	Ready func() bool // /readyz answers 200 once it reports true
	// Degraded, if set, returns why the gate serves in a degraded way (such
	// as "cache disk full: ..."), or "". /readyz then still answers 200,
	// since cached objects are still served, with "degraded: <why>".
	Degraded func() string
	CAPEM    []byte       // served at /ca.pem
	Verifier string       // the enterprise verifier key (clients' GOSUMDB), served at /verifier.txt
	Metrics  http.Handler // mounted at /metrics
	API      http.Handler // mounted at /api/ (it authenticates its callers)
}

// Handler serves the admin listener: /healthz answers 200 while the
// process runs, /readyz 200 once ready, /ca.pem the CA certificate,
// /verifier.txt the enterprise verifier key, /metrics the Prometheus
// metrics and /api/ the admin API.
func Handler(cfg Config) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if cfg.Ready == nil || !cfg.Ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready")
			return
		}
		if cfg.Degraded != nil {
			if why := cfg.Degraded(); why != "" {
				fmt.Fprintln(w, "degraded: "+why)
				return
			}
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("GET /ca.pem", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-pem-file")
		w.Write(cfg.CAPEM)
	})
	if cfg.Verifier != "" {
		mux.HandleFunc("GET /verifier.txt", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			fmt.Fprintln(w, cfg.Verifier)
		})
	}
	if cfg.Metrics != nil {
		mux.Handle("GET /metrics", cfg.Metrics)
	}
	if cfg.API != nil {
		mux.Handle("/api/", cfg.API)
	}
	return mux
}
