package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/mod/module"

	"github.com/modgate/modgate/proxy"
)

// defaultDoctorModule is the module version doctor looks up.
const defaultDoctorModule = "golang.org/x/mod@v0.20.0"

// Verdicts of a doctor check.
const (
	verdictOK   = "ok"
	verdictWarn = "warn"
	verdictFail = "fail"
)

// doctorOptions are the flags of modgate doctor.
type doctorOptions struct {
	proxy, admin, module string
	json, strict         bool
	timeout              time.Duration
}

// doctorInputs are what doctor reads from the machine. Tests pass a
// client's environment and run go env -json with it.
type doctorInputs struct {
	getenv env
	// goEnv returns the output of go env -json.
	goEnv func(ctx context.Context) (map[string]string, error)
	// roots returns the roots the go command verifies TLS with; a nil pool
	// means the platform's verifier (Windows, macOS).
	roots func(getenv env) (*x509.CertPool, error)
}

// result is one check's verdict.
type result struct {
	Check   string `json:"check"`
	Verdict string `json:"verdict"`
	Message string `json:"message"`
	Fix     string `json:"fix,omitempty"`
}

// report is the output of doctor --json.
type report struct {
	Checks []result `json:"checks"`
	Failed int      `json:"failed"`
	Warned int      `json:"warned"`
}

func newDoctorCmd(getenv env, stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check this machine's go client setup against the gate; each check gives a verdict and a fix",
		Long: `doctor runs where the go command runs. It reads go env -json and the
environment, and checks GOPROXY, GOSUMDB, GONOSUMDB/GOPRIVATE/GONOPROXY,
GOFLAGS, GOINSECURE, HTTPS_PROXY and NO_PROXY; that the intercepted hosts'
certificates validate with the roots the go command uses; that no tree note
is cached under another key; and it looks a module up through the gate.
It exits 1 if a check fails.`,
		Args: cobra.NoArgs,
	}
	var o doctorOptions
	f := cmd.Flags()
	f.StringVar(&o.proxy, "proxy", "", "the gate's proxy URL (default: HTTPS_PROXY, or GOPROXY when it names the gate)")
	f.StringVar(&o.admin, "admin", "", "read the gate's key and CA from this admin URL (default: the gate's /.modgate/)")
	f.StringVar(&o.module, "module", defaultDoctorModule, "module@version to look up through the gate")
	f.BoolVar(&o.json, "json", false, "print the checks as JSON")
	f.BoolVar(&o.strict, "strict", false, "exit 1 on warnings too")
	f.DurationVar(&o.timeout, "timeout", 15*time.Second, "time limit of each network check")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		in := doctorInputs{getenv: getenv, goEnv: goEnvJSON(nil), roots: goRoots}
		return doctor(cmd.Context(), o, in, stdout)
	}
	return cmd
}

// goEnvJSON runs go env -json with environ (nil: this process's).
func goEnvJSON(environ []string) func(ctx context.Context) (map[string]string, error) {
	return func(ctx context.Context) (map[string]string, error) {
		cmd := exec.CommandContext(ctx, "go", "env", "-json")
		cmd.Env = environ
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("go env -json: %w: %s", err, strings.TrimSpace(stderr.String()))
		}
		m := map[string]string{}
		if err := json.Unmarshal(out, &m); err != nil {
			return nil, fmt.Errorf("go env -json: %w", err)
		}
		return m, nil
	}
}

// doctor runs every check, prints the results and fails if one failed.
func doctor(ctx context.Context, o doctorOptions, in doctorInputs, w io.Writer) error {
	m, err := module.Version{}, error(nil)
	if p, v, ok := strings.Cut(o.module, "@"); ok {
		m = module.Version{Path: p, Version: v}
		err = module.Check(p, v)
	} else {
		err = errors.New("want module@version")
	}
	if err != nil {
		return usageError{fmt.Errorf("--module %q: %v", o.module, err)}
	}
	st, err := newDoctorState(ctx, o, in)
	if err != nil {
		return err
	}
	st.module = m
	rep := report{}
	for _, c := range doctorChecks {
		r := c.run(ctx, st)
		r.Check = c.name
		rep.Checks = append(rep.Checks, r)
		switch r.Verdict {
		case verdictFail:
			rep.Failed++
		case verdictWarn:
			rep.Warned++
		}
	}
	if o.json {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		printReport(w, st, rep)
	}
	if rep.Failed > 0 {
		return fmt.Errorf("doctor: %d of %d checks failed", rep.Failed, len(rep.Checks))
	}
	if o.strict && rep.Warned > 0 {
		return fmt.Errorf("doctor --strict: %d of %d checks warned", rep.Warned, len(rep.Checks))
	}
	return nil
}

// printReport writes the results for people: one line per check, then
// its fix, indented.
func printReport(w io.Writer, st *doctorState, rep report) {
	fmt.Fprintf(
		w,
		"modgate doctor: %s, GOPROXY=%s, gate %s, its key from %s\n",
		st.goenv["GOVERSION"],
		st.goenv["GOPROXY"],
		orNone(st.gate),
		st.keyURL,
	)
	width := 0
	for _, r := range rep.Checks {
		width = max(width, len(r.Check))
	}
	for _, r := range rep.Checks {
		fmt.Fprintf(w, "%-4s  %-*s  %s\n", r.Verdict, width, r.Check, r.Message)
		for i, l := range strings.Split(r.Fix, "\n") {
			if r.Fix == "" {
				break
			}
			label := "fix:"
			if i > 0 {
				label = ""
			}
			fmt.Fprintf(w, "      %-*s  %-4s %s\n", width, "", label, l)
		}
	}
	fmt.Fprintf(w, "%d checks: %d failed, %d warnings\n", len(rep.Checks), rep.Failed, rep.Warned)
}

func orNone(u *url.URL) string {
	if u == nil {
		return "(none)"
	}
	return u.Redacted()
}

// doctorState is what the checks share: the go env, the environment, and
// what doctor learned about the gate.
type doctorState struct {
	opts   doctorOptions
	getenv env
	goenv  map[string]string
	module module.Version

	httpsProxy  *url.URL // HTTPS_PROXY as the go command reads it; nil if unset
	proxyErr    error    // HTTPS_PROXY did not parse
	gate        *url.URL // the gate's proxy URL; nil if unknown
	goproxyMode bool     // GOPROXY's first entry is the gate
	gateBase    string   // the gate's URL for modgate ca cert --gate; "" when --admin is given
	keyURL      string   // where the gate serves its verifier key
	caURL       string   // where the gate serves its CA certificate

	gateKey    string // the gate's verifier key, from /verifier.txt
	gateKeyErr error

	roots    *x509.CertPool // the go command's roots; nil: the platform verifier
	rootsErr error

	intercept []string
}

// newDoctorState runs go env -json and works out the gate's addresses.
func newDoctorState(ctx context.Context, o doctorOptions, in doctorInputs) (*doctorState, error) {
	goenv, err := in.goEnv(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w (is the go command on PATH?)", err)
	}
	st := &doctorState{opts: o, getenv: in.getenv, goenv: goenv, intercept: proxy.DefaultIntercept}
	if err := st.locateGate(); err != nil {
		return nil, err
	}
	if err := st.locateKeys(); err != nil {
		return nil, err
	}
	if in.roots != nil {
		st.roots, st.rootsErr = in.roots(in.getenv)
	}
	st.gateKey, st.gateKeyErr = fetchVerifier(ctx, st.keyURL, st.roots, o.timeout)
	return st, nil
}

// locateGate reads HTTPS_PROXY and finds the gate's proxy URL: --proxy,
// else HTTPS_PROXY, else GOPROXY's first entry unless it is proxy.golang.org.
func (st *doctorState) locateGate() error {
	if p := getenvAny(st.getenv, "HTTPS_PROXY", "https_proxy"); p != "" {
		st.httpsProxy, st.proxyErr = parseProxyURL(p)
	}
	first := firstGOPROXY(st.goenv["GOPROXY"])
	switch {
	case st.opts.proxy != "":
		u, err := parseProxyURL(st.opts.proxy)
		if err != nil {
			return usageError{fmt.Errorf("--proxy: %w", err)}
		}
		st.gate = u
	case st.httpsProxy != nil:
		st.gate = st.httpsProxy
	case isURL(first) && !isDefaultProxy(first):
		st.gate, _ = url.Parse(first)
	}
	if st.gate != nil && isURL(first) {
		u, _ := url.Parse(first)
		st.goproxyMode = sameHostPort(u, st.gate)
	}
	return nil
}

// locateKeys works out where the gate serves its verifier key and CA:
// --admin's /verifier.txt and /ca.pem, else /.modgate/ on the gate's
// proxy or GOPROXY address (default http://127.0.0.1:3128).
func (st *doctorState) locateKeys() error {
	if st.opts.admin != "" {
		admin, err := adminURL(st.opts.admin, st.gate)
		if err != nil {
			return usageError{err}
		}
		st.keyURL, st.caURL = admin+"/verifier.txt", admin+"/ca.pem"
		return nil
	}
	base := &url.URL{Scheme: "http", Host: defaultListen}
	if st.gate != nil && (st.gate.Scheme == "http" || st.gate.Scheme == "https") {
		base = &url.URL{Scheme: st.gate.Scheme, Host: st.gate.Host}
	}
	st.gateBase = base.String()
	st.keyURL, st.caURL = publicURL(base, proxy.PublicVerifier), publicURL(base, proxy.PublicCA)
	return nil
}

// fetchVerifier reads the gate's verifier key from target, directly (not
// through HTTPS_PROXY), verifying an https gate with roots.
func fetchVerifier(ctx context.Context, target string, roots *x509.CertPool, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return "", err
	}
	tr := &http.Transport{Proxy: nil, TLSClientConfig: &tls.Config{RootCAs: roots}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", target, resp.Status)
	}
	return checkVerifierKey("GET "+target, body)
}

// getenvAny returns the first non-empty variable among names, as the go
// command reads HTTPS_PROXY and NO_PROXY.
func getenvAny(getenv env, names ...string) string {
	for _, n := range names {
		if v := getenv(n); v != "" {
			return v
		}
	}
	return ""
}

// firstGOPROXY returns the first entry of a GOPROXY list.
func firstGOPROXY(list string) string {
	first, _, _ := strings.Cut(list, ",")
	first, _, _ = strings.Cut(first, "|")
	return strings.TrimSpace(first)
}

func isURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// isDefaultProxy reports whether s is proxy.golang.org.
func isDefaultProxy(s string) bool {
	u, err := url.Parse(s)
	return err == nil && u.Scheme == "https" && strings.EqualFold(u.Hostname(), "proxy.golang.org")
}

// sameHostPort compares the host and port of two URLs, filling in the
// scheme's default port.
func sameHostPort(a, b *url.URL) bool {
	port := func(u *url.URL) string {
		if p := u.Port(); p != "" {
			return p
		}
		if u.Scheme == "https" {
			return "443"
		}
		return "80"
	}
	return strings.EqualFold(a.Hostname(), b.Hostname()) && port(a) == port(b)
}
