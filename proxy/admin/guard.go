package admin

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"
)

// Errors of requests that a browser could send on another site's behalf.
var (
	// ErrCrossOrigin reports an admin request from another origin: a
	// foreign Origin header, or Sec-Fetch-Site saying another site sent it.
	ErrCrossOrigin = errors.New("cross-origin request refused")
	// ErrNotJSON reports an admin request body that is not application/json.
	ErrNotJSON = errors.New("request body must be application/json")
)

// guardBrowser refuses, before authentication and before anything runs,
// what a web page could make a browser send to the admin listener with
// the browser's credentials (a client certificate): 403 for a request
// whose Origin is not the listener's own (any method), or that the
// browser marks cross-site (http.CrossOriginProtection); 415 for a body
// that is not application/json (text/plain, forms: the "simple" requests
// that need no CORS preflight).
func guardBrowser(next http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if o := r.Header.Get("Origin"); o != "" && !ownOrigin(r, o) {
			writeJSONError(w, http.StatusForbidden,
				fmt.Errorf("%w: Origin %q is not this admin listener (%s)", ErrCrossOrigin, o, listenerOrigin(r)),
				"Origin")
			return
		}
		if err := cop.Check(r); err != nil {
			writeJSONError(w, http.StatusForbidden, fmt.Errorf("%w: %v", ErrCrossOrigin, err), "Sec-Fetch-Site")
			return
		}
		if hasBody(r) {
			mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
			if err != nil || (mt != "application/json" && !bundleBody(r, mt)) {
				writeJSONError(w, http.StatusUnsupportedMediaType,
					fmt.Errorf("%w, not %q", ErrNotJSON, r.Header.Get("Content-Type")), "Content-Type")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// hasBody reports whether r carries (or may carry) a body.
func hasBody(r *http.Request) bool {
	return r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody
}

// listenerOrigin is the origin of the listener r arrived at.
func listenerOrigin(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// ownOrigin reports whether origin is the listener's own.
func ownOrigin(r *http.Request, origin string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || u.Path != "" || u.User != nil {
		return false
	}
	return strings.EqualFold(u.Scheme+"://"+u.Host, listenerOrigin(r))
}
