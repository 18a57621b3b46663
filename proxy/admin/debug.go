package admin

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"strings"
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
	mux.HandleFunc("/debug/pprof/cmdline", cmdline(os.Args))
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /debug/counters", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(counters())
	})
	return mux
}

// cmdline serves args as pprof.Cmdline does (NUL-separated), with the
// credentials of every URL in them (such as --parent-proxy's) redacted.
func cmdline(args []string) http.HandlerFunc {
	shown := make([]string, len(args))
	for i, a := range args {
		shown[i] = redactArg(a)
	}
	body := strings.Join(shown, "\x00")
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprint(w, body)
	}
}

// redactArg hides the userinfo of a URL argument, alone or as the value
// of a --flag=value, keeping the user name when a password follows it.
func redactArg(a string) string {
	prefix, value := "", a
	if strings.HasPrefix(a, "-") {
		if name, v, ok := strings.Cut(a, "="); ok {
			prefix, value = name+"=", v
		}
	}
	if !strings.Contains(value, "@") {
		return a
	}
	u, err := url.Parse(value)
	if err != nil || u.User == nil {
		if i := strings.Index(value, "://"); i >= 0 && strings.Contains(value[i:], "@") {
			return prefix + value[:i+3] + "xxxxx@" + value[strings.LastIndex(value, "@")+1:]
		}
		return a
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	} else {
		u.User = url.User("xxxxx")
	}
	return prefix + u.String()
}
