package main

import (
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/modgate/modgate/proxy/admin"
	"go.uber.org/zap"
)

// serveDebug starts the debug listener (--debug-listen): pprof profiles and
// counters, unauthenticated, so it warns unless the address is loopback.
// It returns a func that stops it; an empty addr starts nothing.
func (g *gateParts) serveDebug(addr string, log *zap.Logger) (func(), error) {
	if addr == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--debug-listen: %w", err)
	}
	if g.egress != nil {
		g.egress.AddSelf(ln.Addr()) // never reachable through a tunnel
	}
	if ip := ln.Addr().(*net.TCPAddr).IP; !ip.IsLoopback() {
		log.Warn(
			"the debug listener is unauthenticated and not on a loopback address",
			zap.String("debug", ln.Addr().String()),
		)
	}
	counters := func() map[string]int64 {
		return map[string]int64{"leaves_issued": g.leaves.Issued()}
	}
	srv := &http.Server{Handler: admin.DebugHandler(counters), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	log.Info("modgate debug listener", zap.String("debug", ln.Addr().String()))
	return func() { srv.Close() }, nil
}
