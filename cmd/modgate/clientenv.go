package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"unicode"

	"github.com/spf13/cobra"
	"golang.org/x/mod/sumdb/note"

	"github.com/modgate/modgate/proxy"
	"github.com/modgate/modgate/signer"
)

// clientShells are the values of client-env --shell, in help order.
var clientShells = []string{"bash", "zsh", "fish", "powershell", "cmd", "dockerfile"}

// baseNoProxy are the NO_PROXY entries client-env always prints.
var baseNoProxy = []string{"localhost", "127.0.0.1", "::1"}

// clientEnvOptions are the flags of modgate client-env.
type clientEnvOptions struct {
	shell, proxy, admin, dataDir, caFile string
	verifier, scope, noProxy, intercept  string
	gate, rcFile                         string
	persist                              bool
}

// clientEnv is what a go client needs, resolved from the options. Values
// are raw; each shell quotes them.
type clientEnv struct {
	Shell     string
	Proxy     string   // HTTPS_PROXY
	NoProxy   string   // NO_PROXY
	Dropped   []string // --no-proxy entries left out: the gate intercepts them
	Intercept []string // the hosts the gate intercepts
	GOSUMDB   string   // the enterprise verifier key
	DBName    string   // the checksum database's name (the key's name)
	CAFile    string   // where the client keeps the gate's CA certificate
	CAURL     string   // where the client fetches the gate's CA certificate
	Gate      string   // the gate's URL for modgate ca cert --gate; "" when only --admin names it
	Persist   bool
	Machine   bool // --scope machine: every user of the machine
}

func newClientEnvCmd(getenv env, stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "client-env --shell bash|zsh|fish|powershell|cmd|dockerfile",
		Short: "Print the settings a go client needs to use the gate, for a shell or a Dockerfile",
		Long: `client-env prints HTTPS_PROXY, NO_PROXY and GOSUMDB (the enterprise verifier)
in the syntax of a shell, how to trust the gate's CA, and the commands that
clear checksum-database notes cached under another key. With --persist it
prints lines that keep the settings for new shells (an rc file, the user's
or machine's environment).`,
		Args: cobra.NoArgs,
	}
	var o clientEnvOptions
	f := cmd.Flags()
	f.StringVar(&o.shell, "shell", "", "bash, zsh, fish, powershell, cmd or dockerfile")
	f.StringVar(&o.proxy, "proxy", "", "the gate's proxy URL (default http://<MODGATE_LISTEN or 127.0.0.1:3128>)")
	f.StringVar(&o.gate, "gate", "", "the gate's proxy URL: fetch the verifier key from it, and default --proxy to it")
	f.StringVar(&o.admin, "admin", "", "the gate's admin URL, to name its /ca.pem (default: the proxy's /.modgate/ca.pem)")
	o.dataDir = defaultDataDir(getenv)
	f.StringVar(&o.dataDir, "data-dir", o.dataDir, "the gate's data directory, to read the verifier key (note.pub)")
	f.StringVar(&o.caFile, "ca-file", "", "where the client keeps the gate's CA certificate (default <data-dir>/ca.pem)")
	f.StringVar(
		&o.verifier,
		"verifier",
		"",
		"the enterprise verifier key for GOSUMDB (default: from --gate, else the data directory's note.pub)",
	)
	f.StringVar(
		&o.noProxy,
		"no-proxy",
		"",
		"comma list of extra NO_PROXY entries (hosts the gate intercepts are left out)",
	)
	f.StringVar(
		&o.intercept,
		"intercept",
		strings.Join(proxy.DefaultIntercept, ","),
		"the hosts the gate intercepts (never in NO_PROXY)",
	)
	f.BoolVar(
		&o.persist,
		"persist",
		false,
		"print lines that persist the settings (rc file, setx, [Environment]::SetEnvironmentVariable)",
	)
	f.StringVar(
		&o.rcFile,
		"rc-file",
		"",
		"bash, zsh, fish: write the --persist block into this file, replacing an earlier one (implies --persist)",
	)
	f.StringVar(
		&o.scope,
		"scope",
		"user",
		"with --persist for powershell and cmd: user, or machine (every user; needs an elevated shell)",
	)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if !f.Changed("data-dir") && getenv("MODGATE_DATA_DIR") != "" {
			o.dataDir = getenv("MODGATE_DATA_DIR")
		}
		if o.rcFile != "" {
			if _, ok := posixDialects[o.shell]; !ok {
				return usageError{fmt.Errorf("--rc-file applies to --shell bash, zsh and fish, not %q", o.shell)}
			}
			o.persist = true
		}
		e, err := resolveClientEnv(cmd.Context(), o, getenv)
		if err != nil {
			return err
		}
		out, err := renderClientEnv(e)
		if err != nil {
			return err
		}
		if o.rcFile == "" {
			_, err = io.WriteString(stdout, out)
			return err
		}
		replaced, err := writeRCFile(o.rcFile, out)
		if err != nil {
			return err
		}
		verb := "added the modgate block to"
		if replaced {
			verb = "replaced the modgate block in"
		}
		fmt.Fprintf(stdout, "modgate: %s %s; new shells read it (this one: source %s)\n", verb, o.rcFile, o.rcFile)
		return nil
	}
	return cmd
}

// resolveClientEnv checks the options and works out the values.
func resolveClientEnv(ctx context.Context, o clientEnvOptions, getenv env) (clientEnv, error) {
	e := clientEnv{Shell: o.shell, Persist: o.persist}
	if !slices.Contains(clientShells, o.shell) {
		return e, usageError{fmt.Errorf("--shell %q: want one of %s", o.shell, strings.Join(clientShells, ", "))}
	}
	switch o.scope {
	case "user":
	case "machine":
		e.Machine = true
	default:
		return e, usageError{fmt.Errorf("--scope %q: want user or machine", o.scope)}
	}
	if o.persist && o.shell == "dockerfile" {
		return e, usageError{errors.New("--persist does not apply to --shell dockerfile")}
	}
	if err := resolveProxy(&e, o, getenv); err != nil {
		return e, err
	}
	if err := resolveVerifier(ctx, &e, o); err != nil {
		return e, err
	}
	e.CAFile = o.caFile
	if e.CAFile == "" {
		e.CAFile = filepath.Join(o.dataDir, "ca.pem")
	}
	for name, v := range map[string]string{"--proxy": e.Proxy, "--no-proxy": e.NoProxy, "--ca-file": e.CAFile, "--admin": e.CAURL} {
		if i := strings.IndexFunc(v, unicode.IsControl); i >= 0 {
			return e, usageError{fmt.Errorf("%s %q: control characters cannot be written in a shell line", name, v)}
		}
	}
	return e, nil
}

// resolveProxy fills Proxy, Gate, CAURL and NoProxy.
func resolveProxy(e *clientEnv, o clientEnvOptions, getenv env) error {
	p := o.proxy
	if p == "" && o.gate != "" {
		p = o.gate
	}
	if p == "" {
		listen := getenv("MODGATE_LISTEN")
		if listen == "" {
			listen = defaultListen
		}
		p = proxyURL(listen)
	}
	u, err := parseProxyURL(p)
	if err != nil {
		return usageError{fmt.Errorf("--proxy: %w", err)}
	}
	e.Proxy = p
	gate := &url.URL{Scheme: "http", Host: u.Host}
	if o.gate != "" {
		if gate, err = parseGateURL(o.gate); err != nil {
			return usageError{err}
		}
	}
	e.Gate, e.CAURL = gate.String(), publicURL(gate, proxy.PublicCA)
	if o.admin != "" {
		a, err := adminURL(o.admin, u)
		if err != nil {
			return usageError{err}
		}
		e.Gate, e.CAURL = "", a+"/ca.pem"
	}
	e.Intercept = splitList(o.intercept)
	if len(e.Intercept) == 0 {
		return usageError{errors.New("--intercept: want at least one host")}
	}
	kept, dropped := filterNoProxy(o.noProxy, e.Intercept)
	all := append(slices.Clone(baseNoProxy), kept...)
	slices.Sort(all[len(baseNoProxy):])
	e.NoProxy = strings.Join(slices.Compact(all), ",")
	e.Dropped = dropped
	return nil
}

// resolveVerifier fills GOSUMDB and DBName: --verifier, else the key the
// gate serves (--gate), else the data directory's note.pub (the public
// half, which needs no access to the signer key), else the key served by
// the gate that an http:// --proxy names.
func resolveVerifier(ctx context.Context, e *clientEnv, o clientEnvOptions) error {
	vkey := strings.TrimSpace(o.verifier)
	switch {
	case vkey != "":
	case o.gate != "":
		base, err := parseGateURL(o.gate)
		if err != nil {
			return usageError{err}
		}
		if vkey, err = fetchVerifierKey(ctx, base); err != nil {
			return fmt.Errorf("no verifier key: %w", err)
		}
	default:
		k, err := signer.LoadVerifier(o.dataDir)
		if err != nil && o.proxy != "" {
			// No data directory here: the --proxy given is the gate, which serves its key.
			if u, perr := parseProxyURL(o.proxy); perr == nil && u.Scheme == "http" {
				k, err = fetchVerifierKey(ctx, &url.URL{Scheme: "http", Host: u.Host})
			}
		}
		if err != nil {
			return fmt.Errorf("no verifier key: %w; give the gate's address (--gate http://<gate>:3128), "+
				"--verifier, or the gate's --data-dir", err)
		}
		vkey = k
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return usageError{fmt.Errorf("verifier key %q: %v", vkey, err)}
	}
	if !safeDBName(v.Name()) {
		return fmt.Errorf("verifier key name %q: want letters, digits, dots, dashes and underscores only", v.Name())
	}
	e.GOSUMDB, e.DBName = vkey, v.Name()
	return nil
}

// safeDBName reports whether name can appear unquoted in a path in every shell.
func safeDBName(name string) bool {
	return name != "" && strings.Trim(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") == ""
}

// renderClientEnv writes e in the syntax of e.Shell.
func renderClientEnv(e clientEnv) (string, error) {
	s := &script{}
	switch e.Shell {
	case "bash", "zsh", "fish":
		renderPOSIX(s, e, posixDialects[e.Shell])
	case "powershell":
		renderPowerShell(s, e)
	case "cmd":
		if err := renderCmd(s, e); err != nil {
			return "", err
		}
	case "dockerfile":
		renderDockerfile(s, e)
	}
	return s.String(), nil
}

// script builds a text of lines with comments.
type script struct {
	strings.Builder
	rem string // the comment marker: "#" or "@rem"
}

// line writes one line, formatted.
func (s *script) line(format string, args ...any) {
	fmt.Fprintf(s, format, args...)
	s.WriteByte('\n')
}

// comment writes each line as a comment; an empty line is a bare marker.
func (s *script) comment(lines ...string) {
	for _, l := range lines {
		if l == "" {
			s.line("%s", s.rem)
		} else {
			s.line("%s %s", s.rem, l)
		}
	}
}

// quoteSh quotes for POSIX shells (bash, zsh): single quotes, with a
// single quote written as '\”.
func quoteSh(v string) string {
	return "'" + strings.ReplaceAll(v, "'", `'\''`) + "'"
}

// quoteFish quotes for fish: single quotes, in which only \ and ' are escaped.
func quoteFish(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// quotePS quotes for PowerShell: single quotes, in which a quote is doubled.
// PowerShell also takes the typographic single quotes as quotes, so those
// are doubled too.
func quotePS(v string) string {
	return "'" + strings.NewReplacer("'", "''", "\u2018", "\u2018\u2018", "\u2019", "\u2019\u2019", "\u201a", "\u201a\u201a", "\u201b", "\u201b\u201b").
		Replace(v) +
		"'"
}

// quoteDockerfile quotes an ENV value: double quotes, with \, " and $
// escaped so the builder neither ends the string nor expands variables.
func quoteDockerfile(v string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, `$`, `\$`).Replace(v) + `"`
}

// cmdValue makes v safe inside "..." in a batch file: a percent sign is
// doubled; a double quote cannot be written.
func cmdValue(v string) (string, error) {
	if strings.Contains(v, `"`) {
		return "", fmt.Errorf("value %q: cmd cannot set a variable that contains a double quote", v)
	}
	return strings.ReplaceAll(v, "%", "%%"), nil
}

// setxArg quotes v as one argument of setx: in "...", backslashes before
// the closing quote are doubled (the C runtime's rules), % is doubled.
func setxArg(v string) (string, error) {
	v, err := cmdValue(v)
	if err != nil {
		return "", err
	}
	trail := len(v) - len(strings.TrimRight(v, `\`))
	return `"` + v + strings.Repeat(`\`, trail) + `"`, nil
}
