package proxy

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modgate/modgate/proxy/admin"
	"github.com/modgate/modgate/proxy/audit"
	"github.com/modgate/modgate/signer"
)

// TestWitnessAPI checks the witness admin API behind admin.RequireAuth: the
// status before and after a fork, clearing the evidence (audited, kept),
// and refusing callers without the token.
func TestWitnessAPI(t *testing.T) {
	tg := newTestGate(t, nil, gateOptions{})
	tokenFile := filepath.Join(t.TempDir(), "admin.token")
	if err := os.WriteFile(tokenFile, []byte("t0ken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	audit := audit.New(tg.cache)
	mux := http.NewServeMux()
	admin.NewWitnessAPI(admin.WitnessAPIConfig{Witness: tg.witness, Audit: audit}).Register(mux)
	srv := httptest.NewServer(admin.RequireAuth(tokenFile, nil, mux))
	defer srv.Close()
	call := func(method, path, token, body string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		r := doReq(t, req)
		return r.status, r.body
	}
	status := func() signer.Status {
		t.Helper()
		code, body := call("GET", "/api/v1/witness", "t0ken", "")
		var st signer.Status
		if code != 200 || json.Unmarshal(body, &st) != nil {
			t.Fatalf("GET /api/v1/witness: %d %s", code, body)
		}
		return st
	}

	if r := get(t, tg.url, modPath(t, depV100, ".mod")); r.status != 200 {
		t.Fatalf("mod: %d %s", r.status, r.body)
	}
	if st := status(); st.Tree == nil || st.Tree.Size == 0 || st.Forked {
		t.Fatalf("status before the fork: %+v", st)
	}
	tg.fake.Fork()
	if r := get(t, tg.url, "/sumdb/sum.golang.org/lookup/example.com/lib@v1.0.0"); r.status != http.StatusBadGateway {
		t.Fatalf("lookup after the fork: %d %s", r.status, r.body)
	}
	if st := status(); !st.Forked || len(st.Evidence) != 1 {
		t.Fatalf("status after the fork: %+v", st)
	}
	for _, token := range []string{"", "wrong"} {
		if code, _ := call("POST", "/api/v1/witness/clear-fork", token, ""); code != http.StatusUnauthorized {
			t.Errorf("clear-fork with token %q: %d, want 401", token, code)
		}
	}
	if !tg.witness.Forked() {
		t.Fatal("an unauthenticated call cleared the fork")
	}
	code, body := call("POST", "/api/v1/witness/clear-fork", "t0ken", `{"reason": "checked with the sumdb operators"}`)
	var resp admin.ClearForkResponse
	if code != 200 || json.Unmarshal(body, &resp) != nil || len(resp.Cleared) != 1 || resp.Status.Forked ||
		len(resp.Status.Cleared) != 1 {
		t.Fatalf("clear-fork: %d %s", code, body)
	}
	entries, err := audit.List(t.Context(), 0)
	if err != nil || len(entries) != 1 || entries[0].Action != "witness.clear-fork" ||
		!strings.HasPrefix(entries[0].Who, "token:") ||
		entries[0].Reason != "checked with the sumdb operators" ||
		entries[0].Subject != "sum.golang.org" {
		t.Errorf("audit after clear-fork: %+v, %v", entries, err)
	}
	if code, body := call("POST", "/api/v1/witness/clear-fork", "t0ken", `{"unknown": 1}`); code != http.StatusBadRequest {
		t.Errorf("clear-fork with an unknown field: %d %s, want 400", code, body)
	}
}

// doReq sends req with the default client and reads the answer.
func doReq(t *testing.T, req *http.Request) response {
	t.Helper()
	return doReqWith(t, http.DefaultClient, req)
}

// doReqWith sends req with client and reads the answer.
func doReqWith(t *testing.T, client *http.Client, req *http.Request) response {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, body}
}

// TestWitnessAPIReset follows a new upstream timeline after a fork: the
// old state is archived, the reset audited, and the forked upstream's
// records served from then on.
func TestWitnessAPIReset(t *testing.T) {
	tg := newTestGate(t, nil, gateOptions{})
	tokenFile := filepath.Join(t.TempDir(), "admin.token")
	if err := os.WriteFile(tokenFile, []byte("t0ken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	audit := audit.New(tg.cache)
	mux := http.NewServeMux()
	admin.NewWitnessAPI(admin.WitnessAPIConfig{Witness: tg.witness, Audit: audit}).Register(mux)
	srv := httptest.NewServer(admin.RequireAuth(tokenFile, nil, mux))
	defer srv.Close()
	lookup := "/sumdb/sum.golang.org/lookup/example.com/lib@v1.0.0"
	if r := get(t, tg.url, lookup); r.status != http.StatusOK {
		t.Fatalf("lookup: %d %s", r.status, r.body)
	}
	before, _ := tg.witness.Status(t.Context())
	tg.fake.Fork()
	r := get(t, tg.url, "/sumdb/sum.golang.org/lookup/example.com/dep@v1.0.0")
	if r.status != http.StatusBadGateway {
		t.Fatalf("lookup after the fork: %d %s", r.status, r.body)
	}
	req, _ := http.NewRequest("POST", srv.URL+"/api/v1/witness/clear-fork",
		strings.NewReader(`{"reason": "the sumdb operators restarted the log", "reset": true}`))
	req.Header.Set("Authorization", "Bearer t0ken")
	req.Header.Set("Content-Type", "application/json")
	r = doReq(t, req)
	var resp admin.ClearForkResponse
	if r.status != 200 || json.Unmarshal(r.body, &resp) != nil || resp.Reset == nil {
		t.Fatalf("reset: %d %s", r.status, r.body)
	}
	if resp.Reset.Note != before.Tree.Note || len(resp.Reset.Evidence) != 1 || resp.Status.Forked ||
		resp.Status.Tree != nil || len(resp.Status.Archived) != 1 || len(resp.Cleared) != 1 {
		t.Errorf("reset answer: %s", r.body)
	}
	entries, err := audit.List(t.Context(), 0)
	if err != nil || len(entries) != 1 || entries[0].Action != "witness.reset" || entries[0].Reason == "" {
		t.Errorf("audit after reset: %+v, %v", entries, err)
	}
	r = get(t, tg.url, lookup)
	if r.status != http.StatusOK {
		t.Fatalf("lookup after the reset: %d %s", r.status, r.body)
	}
	rec, _, _ := bytes.Cut(r.body, []byte("\n\n"))
	if up, _, _ := bytes.Cut(upstreamBytes(t, tg.fake, lookup), []byte("\n\n")); !bytes.Equal(rec, up) {
		t.Errorf("after the reset the record is not the new timeline's")
	}
}
