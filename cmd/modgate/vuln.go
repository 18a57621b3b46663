package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"

	"github.com/modgate/modgate/pki"
	"github.com/modgate/modgate/proxy"
	"github.com/modgate/modgate/proxy/admin"
)

func newVulnCmd(getenv env, stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "vuln",
		Short: "Show the gate's vulnerability database and check a go.sum or go.mod against it",
		Long: `The gate mirrors the Go vulnerability database: it builds it from the
newest golang.org/x/vulndb module, fetched and verified through its own
pipeline, serves it to govulncheck (vuln.go.dev intercepted, and /vuln/ on
the GOPROXY endpoint), and the policy's vulnerable: section decides on it.

Both commands use the running gate's admin API (--admin, with the data
directory's admin.token).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usageError{errors.New("vuln: want a subcommand: status or check")}
		},
	}
	cmd.AddCommand(vulnStatusCmd(getenv, stdout), vulnCheckCmd(getenv, stdout))
	return cmd
}

func vulnStatusCmd(getenv env, stdout io.Writer) *cobra.Command {
	return adminCommand(getenv, "status",
		"Show the database's source version and commit time, its entries and skipped entries, and the last refresh",
		cobra.NoArgs, func(cmd *cobra.Command, c *adminClient, o *adminOptions, _ []string) error {
			var st proxy.VulnStatus
			raw, err := c.do(cmd.Context(), "GET", "/api/v1/vuln", "", nil, &st)
			if err != nil {
				return err
			}
			if o.json {
				_, err := stdout.Write(raw)
				return err
			}
			printVulnStatus(stdout, st)
			return nil
		})
}

// printVulnStatus writes the mirror's status for a person.
func printVulnStatus(w io.Writer, st proxy.VulnStatus) {
	stamp := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	if db := st.DB; db != nil {
		fmt.Fprintf(w, "source:        %s@%s\n", db.Source.Module, db.Source.Version)
		fmt.Fprintf(w, "commit time:   %s\n", stamp(db.Source.Time))
		fmt.Fprintf(w, "entries:       %d (%d withdrawn)\n", db.Entries, db.Withdrawn)
		fmt.Fprintf(w, "skipped:       %d\n", db.Skipped)
		for _, s := range db.Skips {
			fmt.Fprintf(w, "  %s: %s\n", s.File, s.Reason)
		}
	} else {
		fmt.Fprintln(w, "source:        none: no database built yet")
	}
	if st.LastRefresh.IsZero() {
		fmt.Fprintln(w, "last refresh:  not yet")
		return
	}
	fmt.Fprintf(w, "last refresh:  %s, %s\n", stamp(st.LastRefresh), st.LastOutcome)
	if st.LastError != "" {
		fmt.Fprintf(w, "  error: %s\n", st.LastError)
	}
}

// errAffected is returned by vuln check when a module version is affected.
var errAffected = errors.New("affected module versions found")

func vulnCheckCmd(getenv env, stdout io.Writer) *cobra.Command {
	return adminCommand(getenv, "check FILE",
		"List the module versions of a go.sum or go.mod that known vulnerabilities affect (exit 1 if any)",
		cobra.ExactArgs(1), func(cmd *cobra.Command, c *adminClient, o *adminOptions, args []string) error {
			mods, err := readModuleVersions(args[0])
			if err != nil {
				return err
			}
			body, err := json.Marshal(admin.VulnCheckRequest{Modules: mods})
			if err != nil {
				return err
			}
			var resp admin.VulnCheckResponse
			raw, err := c.do(cmd.Context(), "POST", "/api/v1/vuln/check", "application/json", body, &resp)
			if err != nil {
				return err
			}
			if o.json {
				_, err = stdout.Write(raw)
			} else {
				printVulnCheck(stdout, resp)
			}
			if err == nil && len(resp.Affected) > 0 {
				return fmt.Errorf("%w: %d of %d", errAffected, len(resp.Affected), resp.Checked)
			}
			return err
		})
}

// printVulnCheck writes the affected module versions, one a line.
func printVulnCheck(w io.Writer, resp admin.VulnCheckResponse) {
	for _, a := range resp.Affected {
		parts := make([]string, 0, len(a.Vulns))
		for _, v := range a.Vulns {
			fix := "no fixed version"
			if v.Fixed != "" {
				fix = "fixed in " + v.Fixed
			}
			if !v.Reviewed {
				fix += ", unreviewed"
			}
			parts = append(parts, fmt.Sprintf("%s (%s)", v.ID, fix))
		}
		fmt.Fprintf(w, "%s@%s: %s\n", a.Path, a.Version, strings.Join(parts, ", "))
	}
	fmt.Fprintf(w, "%d of %d module versions affected (database %s@%s, %s)\n", len(resp.Affected), resp.Checked,
		resp.Source.Module, resp.Source.Version, resp.Source.Time.UTC().Format(time.RFC3339))
}

// readModuleVersions reads the module versions of a go.mod (its require
// lines) or a go.sum (its lines, /go.mod ones folded into their version),
// told apart by the file's name.
func readModuleVersions(file string) ([]module.Version, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	if filepath.Base(file) == "go.mod" {
		f, err := modfile.ParseLax(file, data, nil)
		if err != nil {
			return nil, err
		}
		var out []module.Version
		for _, r := range f.Require {
			out = append(out, r.Mod)
		}
		return out, nil
	}
	return parseGoSum(file, data)
}

// parseGoSum reads the module versions of a go.sum, in order, once each.
func parseGoSum(file string, data []byte) ([]module.Version, error) {
	var out []module.Version
	seen := map[module.Version]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 || !strings.HasPrefix(f[2], "h1:") {
			return nil, fmt.Errorf("%s:%d: not a go.sum line (want: module version h1:hash)", file, n)
		}
		m := module.Version{Path: f[0], Version: strings.TrimSuffix(f[1], "/go.mod")}
		if err := module.Check(m.Path, m.Version); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", file, n, err)
		}
		if !seen[m] {
			seen[m] = true
			out = append(out, m)
		}
	}
	return out, sc.Err()
}

// checkVulnFlags checks --vuln-refresh and --vuln-module-version.
func checkVulnFlags(o serveOptions) error {
	if o.vulnRefresh <= 0 {
		return fmt.Errorf("--vuln-refresh %s: want a positive duration, such as 6h", o.vulnRefresh)
	}
	if v := o.vulnVersion; v != "" {
		if err := module.Check(proxy.DefaultVulnModule, v); err != nil || module.CanonicalVersion(v) != v {
			return fmt.Errorf("--vuln-module-version %q: want a canonical version of %s", v, proxy.DefaultVulnModule)
		}
	}
	return nil
}

// vulnHostForOldCA drops vuln.go.dev from the default intercepted hosts
// when the CA was created before it was one (its name constraints leave it
// out): the gate still starts, and serves the database at /vuln/ only.
// Given explicitly with --intercept, the host stays, and the CA check
// refuses to start.
func vulnHostForOldCA(ca *pki.CA, intercept []string, explicit bool, log *zap.Logger) []string {
	if explicit || ca.Permits(proxy.VulnHost) || !slices.Contains(intercept, proxy.VulnHost) {
		return intercept
	}
	log.Warn("the CA's name constraints leave out "+proxy.VulnHost+", so it is not intercepted; "+
		"govulncheck can use -db http://<gate>/vuln, or a new CA (modgate init) permits it",
		zap.Strings("ca_names", ca.Names()))
	return slices.DeleteFunc(slices.Clone(intercept), func(h string) bool { return h == proxy.VulnHost })
}

// checkVulnDB is doctor's check that govulncheck reaches the gate's
// vulnerability database: through the interception of vuln.go.dev with
// HTTPS_PROXY, or by GOVULNDB naming the gate's /vuln. Neither is needed
// by the go command, so it warns rather than fails; a client of the
// GOPROXY endpoint is told the -db to use.
func checkVulnDB(ctx context.Context, st *doctorState) result {
	gateDB := "http://<gate>" + strings.TrimSuffix(proxy.VulnPrefix, "/")
	if st.gate != nil {
		gateDB = strings.TrimRight(st.gate.Redacted(), "/") + strings.TrimSuffix(proxy.VulnPrefix, "/")
	}
	fix := "run govulncheck -db " + gateDB + " ./... (or with HTTPS_PROXY set to a gate that intercepts " +
		proxy.VulnHost + ")"
	if v := st.getenv("GOVULNDB"); v != "" {
		u, err := url.Parse(v)
		atGate := err == nil && st.gate != nil && sameHostPort(u, st.gate)
		if atGate && strings.TrimRight(u.Path, "/")+"/" == proxy.VulnPrefix {
			return ok("GOVULNDB=%s is the gate's vulnerability database (govulncheck v1 takes it as -db)", v)
		}
		return warn("set GOVULNDB="+gateDB, "GOVULNDB=%s is not the gate's vulnerability database %s", v, gateDB)
	}
	switch {
	case st.httpsProxy == nil && st.goproxyMode:
		return ok("GOPROXY is the gate's endpoint, so govulncheck reaches its vulnerability database with -db %s",
			gateDB)
	case st.httpsProxy == nil || st.proxyErr != nil:
		return warn(fix, "%s is not reached through the gate: no usable HTTPS_PROXY, and GOVULNDB is not set",
			proxy.VulnHost)
	case st.rootsErr != nil:
		return warn("", "not checked: the roots the go command uses do not load (see the TLS check)")
	}
	issuer, err := tlsThroughProxy(ctx, st.httpsProxy, proxy.VulnHost, st.roots, st.opts)
	if err != nil {
		return warn(fix, "%s through %s: %v", proxy.VulnHost, st.httpsProxy.Redacted(), err)
	}
	return ok("%s reaches the gate (issued by %q): govulncheck uses its mirror", proxy.VulnHost, issuer)
}
