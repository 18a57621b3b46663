package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/mod/module"

	"github.com/modgate/modgate/cache/bundle"
	"github.com/modgate/modgate/proxy/admin"
)

func newBundleCmd(getenv env, stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bundle",
		Short: "Carry verified modules and their checksum proofs across an air gap",
		Long: `A bundle is a tar (or .tar.zst) whose tree is a Go module proxy with the
checksum database's lookups and tiles that prove every module, and a manifest
signed by the exporting gate's enterprise key (docs/BUNDLE.md).

Outside, export asks a running gate for a bundle; anywhere, verify checks one
with no gate and no network; inside, import gives one to a running gate
(started with --offline), which verifies all of it, witnesses its tree and
serves its modules.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usageError{errors.New("bundle: want a subcommand: export, verify, ls or import")}
		},
	}
	cmd.AddCommand(bundleExportCmd(getenv, stdout), bundleVerifyCmd(stdout), bundleLsCmd(stdout),
		bundleImportCmd(getenv, stdout))
	return cmd
}

// exportFlags are the inputs of bundle export.
type exportFlags struct {
	out                     string
	goSums, goMods, modules []string
	since                   string
	sinceSize               int64
	withVulnDB, zstd        bool
}

func bundleExportCmd(getenv env, stdout io.Writer) *cobra.Command {
	var f exportFlags
	cmd := adminCommand(getenv, "export", "Export a bundle from a running gate (outside the gap)", cobra.NoArgs,
		func(cmd *cobra.Command, c *adminClient, _ *adminOptions, _ []string) error {
			req, err := f.request()
			if err != nil {
				return err
			}
			m, err := exportBundle(cmd.Context(), c, req, f.out)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "wrote %s: %d module versions, tree #%d, signed by %s\n",
				f.out, len(m.Modules), m.Tree.Size, m.Signer)
			return nil
		})
	fl := cmd.Flags()
	fl.StringVarP(&f.out, "output", "o", "", "the bundle file to write (.tar, or .tar.zst to compress)")
	fl.StringArrayVar(&f.goSums, "go-sum", nil, "export exactly the module versions of this go.sum (repeatable)")
	fl.StringArrayVar(&f.goMods, "go-mod", nil, "export the transitive requirements of this go.mod (repeatable)")
	fl.StringArrayVar(&f.modules, "modules", nil, "export the module@version lines of this file (repeatable)")
	fl.StringVar(&f.since, "since", "",
		"an older bundle: leave out what it carried, and prove the new tree extends its tree")
	fl.Int64Var(&f.sinceSize, "since-size", 0,
		"prove the new tree extends the tree of this size (a gate's witnessed size)")
	fl.BoolVar(&f.withVulnDB, "with-vulndb", false,
		"add the newest golang.org/x/vulndb (the Go vulnerability database)")
	fl.BoolVar(&f.zstd, "zstd", false, "compress with zstd (the default for a -o name ending in .zst)")
	return cmd
}

// request builds the export request from the files named by the flags.
func (f *exportFlags) request() (admin.BundleExportRequest, error) {
	req := admin.BundleExportRequest{SinceSize: f.sinceSize, WithVulnDB: f.withVulnDB,
		Zstd: f.zstd || strings.HasSuffix(f.out, ".zst")}
	if f.out == "" {
		return req, usageError{errors.New("bundle export: -o FILE is required")}
	}
	if len(f.goSums)+len(f.goMods)+len(f.modules) == 0 && !f.withVulnDB {
		return req, usageError{errors.New("bundle export: give --go-sum, --go-mod or --modules")}
	}
	for _, name := range f.goSums {
		mods, err := readGoSum(name)
		if err != nil {
			return req, err
		}
		req.Modules = append(req.Modules, mods...)
	}
	for _, name := range f.modules {
		mods, err := readModuleList(name)
		if err != nil {
			return req, err
		}
		req.Modules = append(req.Modules, mods...)
	}
	for _, name := range f.goMods {
		data, err := os.ReadFile(name)
		if err != nil {
			return req, err
		}
		req.GoMods = append(req.GoMods, string(data))
	}
	if f.since != "" {
		if f.sinceSize != 0 {
			return req, usageError{errors.New("bundle export: --since and --since-size go alone")}
		}
		m, err := listBundle(context.Background(), f.since)
		if err != nil {
			return req, fmt.Errorf("--since: %w", err)
		}
		req.SinceSize = m.Tree.Size
		for _, mod := range m.Modules {
			req.SinceModules = append(req.SinceModules, admin.BundleModule{Path: mod.Path, Version: mod.Version})
		}
	}
	return req, nil
}

// readGoSum returns the module versions of a go.sum: with the zip for a
// version that has a zip line, the .mod only for one with a /go.mod line.
func readGoSum(name string) ([]admin.BundleModule, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	zip := map[module.Version]bool{}
	var order []module.Version
	for i, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 {
			return nil, fmt.Errorf("%s:%d: not a go.sum line", name, i+1)
		}
		v, isMod := strings.CutSuffix(f[1], "/go.mod")
		m := module.Version{Path: f[0], Version: v}
		if _, ok := zip[m]; !ok {
			order = append(order, m)
		}
		zip[m] = zip[m] || !isMod
	}
	out := make([]admin.BundleModule, 0, len(order))
	for _, m := range order {
		out = append(out, admin.BundleModule{Path: m.Path, Version: m.Version, ModOnly: !zip[m]})
	}
	return out, nil
}

// readModuleList returns the module@version lines of a file ("#" starts a
// comment).
func readModuleList(name string) ([]admin.BundleModule, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	var out []admin.BundleModule
	for i, line := range strings.Split(string(data), "\n") {
		line, _, _ = strings.Cut(line, "#")
		if line = strings.TrimSpace(line); line == "" {
			continue
		}
		p, v, ok := strings.Cut(line, "@")
		if !ok || module.Check(p, v) != nil {
			return nil, fmt.Errorf("%s:%d: %q is not module@version", name, i+1, line)
		}
		out = append(out, admin.BundleModule{Path: p, Version: v})
	}
	return out, nil
}

// exportBundle streams the gate's bundle into out (through a temporary
// file renamed once the whole bundle arrived) and returns its manifest.
func exportBundle(ctx context.Context, c *adminClient, req admin.BundleExportRequest, out string) (bundle.Manifest,
	error) {
	body, _ := json.Marshal(req)
	resp, err := c.stream(ctx, "/api/v1/bundle/export", nil, "application/json", bytes.NewReader(body))
	if err != nil {
		return bundle.Manifest{}, err
	}
	defer resp.Body.Close()
	tmp, err := os.CreateTemp(filepath.Dir(out), filepath.Base(out)+".part-*")
	if err != nil {
		return bundle.Manifest{}, err
	}
	defer os.Remove(tmp.Name())
	_, err = io.Copy(tmp, resp.Body)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return bundle.Manifest{}, fmt.Errorf("receiving the bundle: %w", err)
	}
	if st := resp.Trailer.Get(admin.BundleTrailer); st != "ok" {
		return bundle.Manifest{}, fmt.Errorf("the gate cut the bundle short: %s", cmpOrString(st, "no end marker"))
	}
	m, err := listBundle(ctx, tmp.Name())
	if err != nil {
		return bundle.Manifest{}, fmt.Errorf("the bundle received: %w", err)
	}
	return m, os.Rename(tmp.Name(), out)
}

func cmpOrString(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// listBundle reads a bundle file's manifest (see bundle.List).
func listBundle(ctx context.Context, name string) (bundle.Manifest, error) {
	f, err := os.Open(name)
	if err != nil {
		return bundle.Manifest{}, err
	}
	defer f.Close()
	return bundle.List(ctx, f, bundle.Limits{})
}

// stream sends a request whose answer may be large and slow: no overall
// timeout, the body left to the caller; an error answer is returned as
// an apiCallError.
func (c *adminClient) stream(ctx context.Context, path string, query url.Values, ctype string,
	body io.Reader) (*http.Response, error) {
	if err := c.checkIdentity(ctx); err != nil {
		return nil, err
	}
	u := c.base.JoinPath(path)
	u.RawQuery = query.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", ctype)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	// The gate answers only once it has fetched (export) or verified and
	// stored (import) everything: no timeout but the context's.
	client := *c.http
	client.Timeout = 0
	if tr, ok := client.Transport.(*http.Transport); ok {
		tr = tr.Clone()
		tr.ResponseHeaderTimeout = 0
		client.Transport = tr
		defer tr.CloseIdleConnections()
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("admin API %s: %w (is modgate serve running there? see --admin)",
			c.base.Redacted(), unwrapURLError(err))
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		e := &apiCallError{Status: resp.StatusCode}
		if json.Unmarshal(data, &e.Body) != nil || e.Body.Error == "" {
			e.Body.Error = strings.TrimSpace(string(data))
		}
		if resp.StatusCode == http.StatusUnauthorized {
			e.hint = c.tokenNote
		}
		return nil, e
	}
	return resp, nil
}

func bundleImportCmd(getenv env, stdout io.Writer) *cobra.Command {
	var trust []string
	cmd := adminCommand(getenv, "import FILE", "Import a bundle into a running gate (inside the gap)",
		cobra.ExactArgs(1),
		func(cmd *cobra.Command, c *adminClient, o *adminOptions, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			br := bufio.NewReader(f)
			ctype := "application/x-tar"
			if magic, _ := br.Peek(4); bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}) {
				ctype = "application/zstd"
			}
			resp, err := c.stream(cmd.Context(), "/api/v1/bundle/import", url.Values{"trust": trust}, ctype, br)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			var res admin.BundleImportResult
			if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&res); err != nil {
				return fmt.Errorf("admin API: unexpected answer: %w", err)
			}
			if o.json {
				return writeJSONTo(stdout, res)
			}
			fmt.Fprintf(stdout,
				"imported %s: %d module versions (%d zips), tree #%d; the gate has witnessed tree #%d\n",
				args[0], res.Modules, res.Zips, res.TreeSize, res.Witnessed)
			return nil
		})
	cmd.Flags().StringArrayVar(&trust, "trust", nil,
		"also accept manifests signed by this verifier key (the gate's own key is always trusted; repeatable)")
	return cmd
}

func bundleVerifyCmd(stdout io.Writer) *cobra.Command {
	var upstream, tmp string
	var trust []string
	cmd := &cobra.Command{
		Use:   "verify FILE",
		Short: "Verify a bundle offline, with no gate and no data directory (exit 1 on the first failure)",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := verifyBundleFile(cmd.Context(), args[0], tmp, bundle.VerifyOptions{Upstream: upstream,
				Trust: trust})
			if err != nil {
				return err
			}
			m := v.Manifest
			who := "a key of --trust"
			if !v.Trusted {
				who = "its own key " + m.Signer + " (give --trust to check who signed it)"
			}
			fmt.Fprintf(stdout, "ok: %d module versions, tree #%d proven by %s, manifest signed by %s\n",
				len(m.Modules), v.Tree.N, m.SumDB.Name, who)
			return nil
		},
	}
	cmd.Flags().StringVar(&upstream, "upstream-sumdb", defaultUpstreamSumDB,
		"the upstream checksum database's verifier key")
	cmd.Flags().StringArrayVar(&trust, "trust", nil,
		"a verifier key (an enterprise key) that may sign bundles (repeatable)")
	cmd.Flags().StringVar(&tmp, "tmp-dir", "", "where to unpack the bundle while verifying it (default: the system's)")
	return cmd
}

// verifyBundleFile unpacks a bundle into a temporary directory and
// verifies it.
func verifyBundleFile(ctx context.Context, name, tmp string, opts bundle.VerifyOptions) (*bundle.Verified, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dir, err := os.MkdirTemp(tmp, "modgate-bundle-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	ex, err := bundle.Extract(ctx, f, dir, bundle.Limits{})
	if err != nil {
		return nil, err
	}
	return bundle.Verify(ctx, ex, opts)
}

func bundleLsCmd(stdout io.Writer) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ls FILE",
		Short: "Print what a bundle holds (checks its files against its manifest; verify checks the proofs)",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := listBundle(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSONTo(stdout, m)
			}
			fmt.Fprintf(stdout, "bundle of %s, tree #%d, made %s, signed by %s\n",
				m.SumDB.Name, m.Tree.Size, m.Created.Format(time.RFC3339), m.Signer)
			if m.Since != nil {
				fmt.Fprintf(stdout, "incremental: extends tree #%d\n", m.Since.Size)
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "MODULE\tVERSION\tFILES\tRECORD\tFIRST SEEN")
			for _, mod := range m.Modules {
				files, seen := "info mod zip", "-"
				if !mod.Zip {
					files = "info mod"
				}
				if mod.FirstSeen != nil {
					seen = mod.FirstSeen.Time.Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", mod.Path, mod.Version, files, mod.Record, seen)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the manifest as JSON")
	return cmd
}
