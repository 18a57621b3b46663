package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/modgate/modgate/internal/secretfile"
	"github.com/modgate/modgate/signer"
)

// ErrUnauthenticated reports an admin request with neither a valid bearer
// token nor a valid client certificate.
var ErrUnauthenticated = errors.New(
	"authentication required: a bearer token (the data directory's admin.token) or a client certificate from modgate's CA",
)

type whoKey struct{}

// Who returns who made an authenticated admin request: "token:" and
// the first 8 hex digits of the SHA-256 of the token, or "cert:" and the
// client certificate's subject CN. It is "" outside RequireAuth.
func Who(ctx context.Context) string {
	who, _ := ctx.Value(whoKey{}).(string)
	return who
}

// withWho returns ctx carrying who, as RequireAuth does.
func withWho(ctx context.Context, who string) context.Context {
	return context.WithValue(ctx, whoKey{}, who)
}

// RequireAuth runs next only for requests that authenticate, with
// Who set in their context; any other request gets 401 with a JSON
// error and nothing runs. A request authenticates with
//
//   - "Authorization: Bearer <token>" where the token equals the content of
//     tokenFile (trimmed; the file must not be readable by group or others,
//     and is read again when it changes; compared in constant time), or
//   - on a TLS connection, a client certificate that verifies against
//     clientCAs for client authentication (nil clientCAs: never).
//
// Before that, requests a web page could forge are refused (guardBrowser).
func RequireAuth(tokenFile string, clientCAs *x509.CertPool, next http.Handler) http.Handler {
	tok := &tokenSource{path: tokenFile}
	return guardBrowser(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		who, err := authenticate(r, tok, clientCAs)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="modgate admin"`)
			writeJSONError(w, http.StatusUnauthorized, err, "")
			return
		}
		next.ServeHTTP(w, r.WithContext(withWho(r.Context(), who)))
	}))
}

// authenticate returns who made r, or why r is refused.
func authenticate(r *http.Request, tok *tokenSource, clientCAs *x509.CertPool) (string, error) {
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		who, err := verifyClient(r.TLS.PeerCertificates, clientCAs)
		if err == nil {
			return who, nil
		}
		if r.Header.Get("Authorization") == "" {
			return "", err
		}
	}
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return "", ErrUnauthenticated
	}
	scheme, given, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(given) == "" {
		return "", fmt.Errorf("%w (Authorization must be \"Bearer <token>\")", ErrUnauthenticated)
	}
	given = strings.TrimSpace(given)
	want, err := tok.get()
	if err != nil {
		return "", fmt.Errorf("%w (the gate cannot read its admin token)", ErrUnauthenticated)
	}
	g, h := sha256.Sum256([]byte(given)), sha256.Sum256([]byte(want))
	if subtle.ConstantTimeCompare(g[:], h[:]) != 1 {
		return "", fmt.Errorf("%w (wrong token)", ErrUnauthenticated)
	}
	return "token:" + hex.EncodeToString(g[:4]), nil
}

// verifyClient verifies a client certificate chain against roots.
func verifyClient(chain []*x509.Certificate, roots *x509.CertPool) (string, error) {
	if roots == nil {
		return "", fmt.Errorf("%w (client certificates are not accepted here)", ErrUnauthenticated)
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(
		x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
	)
	if err != nil {
		return "", fmt.Errorf("%w (client certificate: %v)", ErrUnauthenticated, err)
	}
	return "cert:" + chain[0].Subject.CommonName, nil
}

// tokenSource reads the admin token file again when its size or
// modification time changes.
type tokenSource struct {
	path  string
	mu    sync.Mutex
	size  int64
	mtime time.Time
	token string
}

func (t *tokenSource) get() (string, error) {
	fi, err := os.Stat(t.path)
	if err != nil {
		return "", err
	}
	if err := secretfile.CheckMode(t.path, fi.Mode()); err != nil {
		return "", err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.token != "" && fi.Size() == t.size && fi.ModTime().Equal(t.mtime) {
		return t.token, nil
	}
	token, err := signer.ReadSecret(t.path)
	if err == nil && token == "" {
		err = fmt.Errorf("%s is empty", t.path)
	}
	if err != nil {
		t.token = ""
		return "", err
	}
	t.token, t.size, t.mtime = token, fi.Size(), fi.ModTime()
	return token, nil
}
