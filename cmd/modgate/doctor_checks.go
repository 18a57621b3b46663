package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/note"

	"github.com/modgate/modgate/internal/advice"
)

// doctorChecks are the checks of modgate doctor, in the order they run.
var doctorChecks = []struct {
	name string
	run  func(ctx context.Context, st *doctorState) result
}{
	{"gate", checkGate},
	{"GOPROXY", checkGOPROXY},
	{"GOSUMDB", checkGOSUMDB},
	{"GONOSUMDB/GOPRIVATE/GONOPROXY", checkExemptions},
	{"GOFLAGS", checkGOFLAGS},
	{"GOINSECURE", checkGOINSECURE},
	{"HTTPS_PROXY", checkHTTPSProxy},
	{"NO_PROXY", checkNoProxy},
	{"TLS", checkTLS},
	{"cached notes", checkStaleNote},
	{"lookup", checkLookup},
	{"vulndb", checkVulnDB}, // vuln.go.dev or GOVULNDB (vuln.go)
}

func ok(format string, args ...any) result {
	return result{Verdict: verdictOK, Message: fmt.Sprintf(format, args...)}
}

func warn(fix, format string, args ...any) result {
	return result{Verdict: verdictWarn, Message: fmt.Sprintf(format, args...), Fix: fix}
}

func fail(fix, format string, args ...any) result {
	return result{Verdict: verdictFail, Message: fmt.Sprintf(format, args...), Fix: fix}
}

// setFix says how to give a go env variable a value: in the environment
// when the environment sets it (it outranks go env -w), else go env -w.
// It points at client-env only for the variables client-env prints.
func (st *doctorState) setFix(name, value string) string {
	if st.getenv(name) == "" {
		return fmt.Sprintf("go env -w %s=%s", name, shellWord(value))
	}
	fix := fmt.Sprintf("the environment sets %s; change it there to %s", name, shellWord(value))
	if advice.PrintedByClientEnv(name) {
		fix += " (modgate client-env --shell <your shell> --gate <gate URL> prints the line)"
	}
	return fix
}

// shellWord quotes v for a POSIX shell when it holds anything but
// characters that need no quoting.
func shellWord(v string) string {
	if v != "" && strings.Trim(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@%+=:,./-") == "" {
		return v
	}
	return quoteSh(v)
}

// goproxyAdvice is the GOPROXY to recommend (advice.GOPROXY): the gate's
// endpoint when the client uses it as GOPROXY, or has no HTTPS_PROXY but
// a known gate; else proxy.golang.org.
func (st *doctorState) goproxyAdvice() string {
	if st.gate != nil && (st.goproxyMode || st.httpsProxy == nil) {
		return advice.GOPROXY(st.gate.Redacted())
	}
	return advice.GOPROXY("")
}

// unsetFix says how to clear a go env variable.
func (st *doctorState) unsetFix(name string) string {
	if st.getenv(name) != "" {
		return fmt.Sprintf("remove %s from the environment (shell rc file, profile, or system settings)", name)
	}
	return "go env -u " + name
}

func checkGate(_ context.Context, st *doctorState) result {
	if st.gateKeyErr != nil {
		return warn("give the gate's address: modgate doctor --proxy http://<gate>:3128 (or its admin listener: --admin)",
			"cannot read the gate's verifier key: %v", st.gateKeyErr)
	}
	return ok("the gate answers at %s; its verifier key is %s", st.keyURL, st.gateKey)
}

func checkGOPROXY(_ context.Context, st *doctorState) result {
	v := st.goenv["GOPROXY"]
	first := firstGOPROXY(v)
	switch {
	case v == "off" || first == "off":
		return fail(st.setFix("GOPROXY", st.goproxyAdvice()), "GOPROXY=%s: the go command downloads no modules", v)
	case first == "direct" || first == "":
		return warn(st.setFix("GOPROXY", st.goproxyAdvice()),
			"GOPROXY=%s: modules come straight from their version control hosts, around the gate", v)
	case st.goproxyMode:
		return ok("GOPROXY=%s: the gate's GOPROXY endpoint", v)
	case isDefaultProxy(first):
		return ok("GOPROXY=%s: proxy.golang.org, which the gate intercepts through HTTPS_PROXY", v)
	}
	return warn(
		st.setFix("GOPROXY", st.goproxyAdvice()),
		"GOPROXY=%s starts with neither proxy.golang.org nor the gate: the gate sees only proxy.golang.org and sum.golang.org",
		v,
	)
}

// sumdbSetting is GOSUMDB parsed as the go command parses it.
type sumdbSetting struct {
	off      bool
	name     string // the database name
	key      string // the full verifier key
	url      string // an explicit URL, if any
	verifier note.Verifier
}

// parseGOSUMDB parses GOSUMDB like cmd/go's dbDial: "off", or a verifier
// key (or a known database name) optionally followed by a URL.
func parseGOSUMDB(s string) (sumdbSetting, error) {
	if s == "sum.golang.google.cn" {
		s = "sum.golang.org https://sum.golang.google.cn"
	}
	if s == "off" {
		return sumdbSetting{off: true}, nil
	}
	f := strings.Fields(s)
	if len(f) == 0 || len(f) > 2 {
		return sumdbSetting{}, fmt.Errorf("GOSUMDB=%q: want a verifier key, optionally followed by a URL", s)
	}
	if f[0] == "sum.golang.org" {
		f[0] = defaultUpstreamSumDB
	}
	v, err := note.NewVerifier(f[0])
	if err != nil {
		return sumdbSetting{}, fmt.Errorf("GOSUMDB=%q: %v", s, err)
	}
	st := sumdbSetting{name: v.Name(), key: f[0], verifier: v}
	if len(f) == 2 {
		st.url = f[1]
	}
	return st, nil
}

func checkGOSUMDB(_ context.Context, st *doctorState) result {
	v := st.goenv["GOSUMDB"]
	want := st.gateKey
	if want == "" {
		want = "<the gate's key: modgate key verifier>"
	}
	s, err := parseGOSUMDB(v)
	switch {
	case err != nil:
		return fail(st.setFix("GOSUMDB", want), "%v", err)
	case s.off:
		return fail(st.setFix("GOSUMDB", want), "GOSUMDB=off: the go command verifies no checksums")
	case s.url != "":
		return warn(
			st.setFix("GOSUMDB", s.key),
			"GOSUMDB names the URL %s: the go command reads the checksum database there, not through GOPROXY and the gate",
			s.url,
		)
	case st.gateKey == "":
		return warn(
			"let doctor reach the admin listener (--admin) to compare keys",
			"GOSUMDB=%s; the gate's key is unknown",
			v,
		)
	case s.key == st.gateKey:
		return ok("GOSUMDB is the gate's key: the go command accepts only what the gate witnessed")
	}
	gate, _ := note.NewVerifier(st.gateKey)
	switch {
	case gate.Name() != s.name:
		return fail(
			st.setFix("GOSUMDB", st.gateKey),
			"GOSUMDB names the database %s, the gate serves %s",
			s.name,
			gate.Name(),
		)
	case s.key == defaultUpstreamSumDB:
		return warn(
			st.setFix("GOSUMDB", st.gateKey),
			"GOSUMDB is the default key of %s: the go command checks the upstream's signature, not the gate's witness",
			s.name,
		)
	}
	return warn(
		st.setFix("GOSUMDB", st.gateKey),
		"GOSUMDB is a key of %s other than the gate's: the lookup check shows whether the gate's notes verify with it",
		s.name,
	)
}

// publicModules are module paths that a pattern exempting public modules
// broadly would match.
var publicModules = []string{
	"github.com/spf13/cobra",
	"golang.org/x/mod",
	"google.golang.org/protobuf",
	"gopkg.in/yaml.v3",
	"go.uber.org/zap",
	"k8s.io/client-go",
}

func checkExemptions(_ context.Context, st *doctorState) result {
	targets := append([]string{st.module.Path}, publicModules...)
	var bad, set []string
	for _, name := range []string{"GONOSUMDB", "GOPRIVATE", "GONOPROXY"} {
		v := st.goenv[name]
		if v == "" {
			continue
		}
		set = append(set, name+"="+v)
		for _, t := range targets {
			if module.MatchPrefixPatterns(v, t) {
				bad = append(bad, fmt.Sprintf("%s=%s exempts %s", name, v, t))
				break
			}
		}
	}
	switch {
	case len(bad) > 0:
		return warn(fmt.Sprintf("list only the modules that only the gate's upstream serves in %s (%s), not in GOPRIVATE, "+
			"which also fetches them direct; leave GOPRIVATE and GONOPROXY unset, or limited to modules fetched from their VCS host",
			advice.PrivateVar, st.setFix(advice.PrivateVar, advice.PrivateExample)),
			"%s: public modules skip the checksum database or the proxy, and so the gate", strings.Join(bad, "; "))
	case len(set) > 0:
		return ok("%s: no public module exempted", strings.Join(set, ", "))
	}
	return ok("not set: every module goes through the checksum database and GOPROXY")
}

func checkGOFLAGS(_ context.Context, st *doctorState) result {
	v := st.goenv["GOFLAGS"]
	for _, f := range strings.Fields(v) {
		name, _, _ := strings.Cut(strings.TrimLeft(f, "-"), "=")
		if name == "insecure" {
			fix := st.unsetFix("GOFLAGS")
			others := slices.DeleteFunc(strings.Fields(v), func(x string) bool { return x == f })
			if rest := strings.Join(others, " "); rest != "" {
				fix = st.setFix("GOFLAGS", rest)
			}
			return warn(fix, "GOFLAGS=%s: %s lets downloads skip certificate checks", v, f)
		}
	}
	if v == "" {
		return ok("not set")
	}
	return ok("GOFLAGS=%s: no flag weakens verification", v)
}

func checkGOINSECURE(_ context.Context, st *doctorState) result {
	if v := st.goenv["GOINSECURE"]; v != "" {
		return warn(
			st.unsetFix("GOINSECURE"),
			"GOINSECURE=%s: matching modules may be fetched over plain HTTP or without certificate checks",
			v,
		)
	}
	return ok("not set")
}

func checkHTTPSProxy(_ context.Context, st *doctorState) result {
	fix := "set HTTPS_PROXY to the gate (modgate client-env --shell <your shell> --gate <gate URL> prints the line)"
	switch {
	case st.proxyErr != nil:
		return fail(fix, "HTTPS_PROXY: %v", st.proxyErr)
	case st.httpsProxy == nil && st.goproxyMode:
		return ok("not set; not needed: GOPROXY is the gate's endpoint")
	case st.httpsProxy == nil:
		return fail(fix, "not set: the go command reaches proxy.golang.org directly, around the gate")
	case st.opts.proxy != "" && !sameHostPort(st.httpsProxy, st.gate):
		return warn(
			fmt.Sprintf("set HTTPS_PROXY=%s", st.gate.Redacted()),
			"HTTPS_PROXY=%s is not the gate %s",
			st.httpsProxy.Redacted(),
			st.gate.Redacted(),
		)
	}
	return ok("HTTPS_PROXY=%s", st.httpsProxy.Redacted())
}

func checkNoProxy(_ context.Context, st *doctorState) result {
	v := getenvAny(st.getenv, "NO_PROXY", "no_proxy")
	if v == "" {
		return ok("not set")
	}
	kept, dropped := filterNoProxy(v, st.intercept)
	if len(dropped) > 0 {
		return fail("set NO_PROXY="+strings.Join(kept, ","),
			"NO_PROXY=%s: %s sends %s around the gate", v, strings.Join(dropped, ","), strings.Join(st.intercept, " or "))
	}
	return ok("NO_PROXY=%s leaves %s to the gate", v, strings.Join(st.intercept, " and "))
}

// sumdb returns the GOSUMDB setting, or a result when there is nothing to
// check it with.
func (st *doctorState) sumdb() (sumdbSetting, *result) {
	s, err := parseGOSUMDB(st.goenv["GOSUMDB"])
	if err != nil || s.off {
		r := warn("", "not checked: GOSUMDB is off or invalid (see the GOSUMDB check)")
		return s, &r
	}
	return s, nil
}

func checkStaleNote(_ context.Context, st *doctorState) result {
	s, skip := st.sumdb()
	if skip != nil {
		return *skip
	}
	gopath := filepath.SplitList(st.goenv["GOPATH"])
	if len(gopath) == 0 {
		return warn("", "not checked: go env GOPATH is empty")
	}
	latest := filepath.Join(gopath[0], "pkg", "sumdb", s.name, "latest")
	lookup := filepath.Join(st.goenv["GOMODCACHE"], "cache", "download", "sumdb", s.name, "lookup")
	msg, err := os.ReadFile(latest)
	if errors.Is(err, os.ErrNotExist) {
		return ok("no tree note of %s cached yet", s.name)
	} else if err != nil {
		return warn("", "reading %s: %v", latest, err)
	}
	n, err := note.Open(msg, note.VerifierList(s.verifier))
	var unverified *note.UnverifiedNoteError
	if errors.As(err, &unverified) {
		return fail(
			removeNotesFix(latest, lookup),
			"the tree note cached at %s has no signature by GOSUMDB's key: the next download fails with \"note has no verifiable signatures\"",
			latest,
		)
	} else if err != nil {
		return fail(removeNotesFix(latest, lookup), "the tree note cached at %s does not verify: %v", latest, err)
	}
	first, _, _ := strings.Cut(strings.TrimPrefix(n.Text, "go.sum database tree\n"), "\n")
	return ok("the cached tree note (size %s) verifies with GOSUMDB's key", first)
}

// removeNotesFix is the command that deletes the cached notes, for the
// shell of this operating system.
func removeNotesFix(latest, lookup string) string {
	if runtime.GOOS == "windows" {
		return fmt.Sprintf(
			"Remove-Item -Force %s; Remove-Item -Recurse -Force -ErrorAction SilentlyContinue %s",
			quotePS(latest),
			quotePS(lookup),
		)
	}
	return fmt.Sprintf("rm -rf %s %s", quoteSh(latest), quoteSh(lookup))
}

// caFix says how to make the go command trust the gate's CA here.
func (st *doctorState) caFix() string {
	get := fmt.Sprintf("curl -fsS -o modgate-ca.pem %s", quoteSh(st.caURL))
	if st.gateBase != "" {
		get = fmt.Sprintf("modgate ca cert --gate %s > modgate-ca.pem", quoteSh(st.gateBase))
	}
	switch runtime.GOOS {
	case "windows":
		return fmt.Sprintf("Invoke-WebRequest -UseBasicParsing -Uri %s -OutFile modgate-ca.pem\n"+
			"Import-Certificate -FilePath modgate-ca.pem -CertStoreLocation Cert:\\CurrentUser\\Root", quotePS(st.caURL))
	case "darwin":
		return fmt.Sprintf(
			"%s\nsudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain modgate-ca.pem",
			get,
		)
	}
	cur := ""
	if f := st.getenv("SSL_CERT_FILE"); f != "" {
		cur = fmt.Sprintf(" (SSL_CERT_FILE=%s does not hold it)", f)
	}
	return fmt.Sprintf("fetch the gate's CA%s: %s\nthen export SSL_CERT_FILE=\"$PWD/modgate-ca.pem\"\n"+
		"or: sudo cp modgate-ca.pem /usr/local/share/ca-certificates/modgate.crt && sudo update-ca-certificates", cur, get)
}

// signerNames names the keys whose signatures on n verified, for messages.
func signerNames(n *note.Note) string {
	var names []string
	for _, s := range n.Sigs {
		names = append(names, fmt.Sprintf("%s+%08x", s.Name, s.Hash))
	}
	return strings.Join(names, ", ")
}

// lookupBase returns the GOPROXY base URL the go command would read the
// checksum database through, or "" when GOPROXY has no URL first.
func (st *doctorState) lookupBase() string {
	first := firstGOPROXY(st.goenv["GOPROXY"])
	if !isURL(first) {
		return ""
	}
	u, _ := url.Parse(first)
	return strings.TrimRight(u.String(), "/")
}
