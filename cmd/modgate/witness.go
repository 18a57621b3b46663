package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/modgate/modgate/cache"
	"github.com/modgate/modgate/proxy"
	"github.com/modgate/modgate/proxy/admin"
	"github.com/modgate/modgate/proxy/audit"
	"github.com/modgate/modgate/signer"
)

func newWitnessCmd(getenv env, stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "witness",
		Short: "Show the witnessed checksum database and clear fork evidence",
		Long: `The witness checks every tree head of the upstream checksum database
against the ones it has seen before. A tree that is not an extension of
them is a fork: its evidence is kept, and checksum-database requests fail
until an operator has looked at it and cleared it. If the operator decides
to follow the upstream's new timeline instead, clear-fork --reset archives
the witness state and accepts the upstream's next tree head as the first.

Both commands use the running gate's admin API (--admin, with the data
directory's admin.token). When --admin is not given and no gate answers
there, they read the data directory's cache directly; that needs the gate
stopped, since only one process may open the cache.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usageError{errors.New("witness: want a subcommand: status or clear-fork")}
		},
	}
	cmd.AddCommand(witnessStatusCmd(getenv, stdout), witnessClearForkCmd(getenv, stdout))
	return cmd
}

func witnessStatusCmd(getenv env, stdout io.Writer) *cobra.Command {
	return witnessCommand(getenv, "status", "Show the witnessed tree head and any fork evidence (exit 1 while forked)",
		func(cmd *cobra.Command, c *adminClient, o *adminOptions) error {
			var st signer.Status
			_, err := c.do(cmd.Context(), "GET", "/api/v1/witness", "", nil, &st)
			if offlineFallback(cmd, err) {
				st, err = offlineStatus(cmd.Context(), o.dataDir)
			}
			if err != nil {
				return err
			}
			if err := printStatus(stdout, st, o.json); err != nil {
				return err
			}
			if st.Forked {
				return forkOnRecord{}
			}
			return nil
		})
}

func witnessClearForkCmd(getenv env, stdout io.Writer) *cobra.Command {
	var req admin.ClearForkRequest
	cmd := witnessCommand(getenv, "clear-fork",
		"Mark the fork evidence as cleared (it is kept) and let checksum-database traffic through again",
		func(cmd *cobra.Command, c *adminClient, o *adminOptions) error {
			body, _ := json.Marshal(req)
			var resp admin.ClearForkResponse
			_, err := c.do(cmd.Context(), "POST", "/api/v1/witness/clear-fork", "application/json", body, &resp)
			if offlineFallback(cmd, err) {
				resp, err = offlineClearFork(cmd.Context(), o.dataDir, req)
			}
			if err != nil {
				return err
			}
			if o.json {
				return writeJSONTo(stdout, resp)
			}
			if resp.Reset != nil {
				fmt.Fprintf(stdout, "witness reset: the old state is archived under %s; "+
					"the upstream's next tree head is accepted as the first\n", resp.Reset.Key)
			}
			fmt.Fprintf(stdout, "cleared %d fork evidence record(s); they stay on record "+
				"(modgate witness status shows them)\n", len(resp.Cleared))
			return printStatus(stdout, resp.Status, false)
		})
	cmd.Flags().StringVar(&req.Reason, "reason", "", "why the evidence is cleared, for the audit log")
	cmd.Flags().BoolVar(&req.Reset, "reset", false,
		"follow the upstream's new timeline: archive the witness state and accept the next tree head as the first")
	return cmd
}

// forkOnRecord makes witness status exit 1 while fork evidence is open.
type forkOnRecord struct{}

func (forkOnRecord) Error() string { return "checksum database fork on record" }

// witnessCommand is adminCommand for the witness subcommands.
func witnessCommand(
	getenv env,
	use, short string,
	run func(cmd *cobra.Command, c *adminClient, o *adminOptions) error,
) *cobra.Command {
	return adminCommand(
		getenv,
		use,
		short,
		cobra.NoArgs,
		func(cmd *cobra.Command, c *adminClient, o *adminOptions, _ []string) error {
			return run(cmd, c, o)
		},
	)
}

// offlineFallback reports whether a failed API call should be retried on
// the cache: the gate did not answer and --admin was left at its default.
func offlineFallback(cmd *cobra.Command, err error) bool {
	var ae *apiCallError
	return err != nil && !errors.As(err, &ae) && !cmd.Flags().Changed("admin") // MODGATE_ADMIN marks it changed
}

// openCacheOffline opens the data directory's cache, explaining a lock
// held by a running gate.
func openCacheOffline(ctx context.Context, dataDir string) (*cache.Store, string, error) {
	sig, _, err := signer.LoadKey(dataDir)
	if err != nil {
		return nil, "", fmt.Errorf("no gate answered the admin API, and reading %s failed: %w", dataDir, err)
	}
	if err := refuseClustered(dataDir); err != nil { // cluster.go
		return nil, "", err
	}
	st, err := cache.Open(ctx, cache.Config{Dir: filepath.Join(dataDir, "cache")})
	if err != nil {
		if strings.Contains(err.Error(), "lock") {
			return nil, "", fmt.Errorf(
				"the cache in %s is in use by a running modgate whose admin API did not answer: "+
					"pass its --admin URL, or stop it: %w",
				dataDir,
				err,
			)
		}
		return nil, "", err
	}
	return st, sig.Name(), nil
}

func offlineStatus(ctx context.Context, dataDir string) (signer.Status, error) {
	st, name, err := openCacheOffline(ctx, dataDir)
	if err != nil {
		return signer.Status{}, err
	}
	defer st.Close()
	return signer.ReadStatus(ctx, proxy.WitnessStore{Cache: st}, name)
}

func offlineClearFork(ctx context.Context, dataDir string,
	req admin.ClearForkRequest) (admin.ClearForkResponse, error) {
	st, name, err := openCacheOffline(ctx, dataDir)
	if err != nil {
		return admin.ClearForkResponse{}, err
	}
	defer st.Close()
	who := "cli"
	if u, err := user.Current(); err == nil {
		who = "cli:" + u.Username
	}
	store := proxy.WitnessStore{Cache: st}
	var resp admin.ClearForkResponse
	e := audit.Entry{Who: who, Action: "witness.clear-fork", Subject: name, Reason: req.Reason}
	if req.Reset {
		now := time.Now()
		arch, err := signer.Reset(ctx, store, name, who, req.Reason, now)
		if err != nil {
			return resp, err
		}
		resp.Reset, e.Action, e.Subject = &arch, "witness.reset", arch.Key
	} else if resp.Cleared, err = signer.ClearFork(ctx, store, name, who, time.Now()); err != nil {
		return resp, err
	}
	if len(resp.Cleared) > 0 || resp.Reset != nil {
		if err := audit.New(st).Append(ctx, e); err != nil {
			return resp, err
		}
	}
	if resp.Status, err = signer.ReadStatus(ctx, store, name); err != nil {
		return resp, err
	}
	if resp.Reset != nil {
		for _, c := range resp.Status.Cleared {
			if c.ClearedAt.Equal(resp.Reset.Time) {
				resp.Cleared = append(resp.Cleared, c)
			}
		}
	}
	if resp.Cleared == nil {
		resp.Cleared = []signer.ClearedEvidence{}
	}
	return resp, nil
}

// printStatus prints a witness status as text, or as JSON.
func printStatus(w io.Writer, st signer.Status, asJSON bool) error {
	if asJSON {
		return writeJSONTo(w, st)
	}
	fmt.Fprintf(w, "checksum database  %s\n", st.Database)
	if st.Tree == nil {
		fmt.Fprintln(w, "witnessed tree     none yet")
	} else {
		fmt.Fprintf(w, "witnessed tree     size %d, hash %s\n", st.Tree.Size, st.Tree.Hash)
		fmt.Fprintf(w, "signed note\n%s", indent(st.Tree.Note))
	}
	if h := st.CoSigned; h == nil {
		fmt.Fprintln(w, "last co-signed     none yet")
	} else {
		fmt.Fprintf(w, "last co-signed     size %d, hash %s, at %s\n", h.Size, h.Hash, h.Time.Format(time.RFC3339))
		fmt.Fprintf(w, "co-signed note\n%s", indent(h.Note))
	}
	if h := st.History; h != nil {
		fmt.Fprintf(w, "first witnessed    size %d at %s (older records are dated by their .info only)\n",
			h.First.Size, h.First.Time.Format(time.RFC3339))
		fmt.Fprintf(w, "history            %d entries (%d bytes), newest size %d at %s\n",
			h.Entries, h.Bytes, h.Latest.Size, h.Latest.Time.Format(time.RFC3339))
	}
	if st.Forked {
		fmt.Fprintln(w, "status             FORKED: checksum-database requests fail until the evidence is cleared "+
			"(modgate witness clear-fork; with --reset to follow the upstream's new timeline)")
	} else {
		fmt.Fprintln(w, "status             ok")
	}
	for i, ev := range st.Evidence {
		printEvidence(w, i+1, ev)
	}
	for _, ce := range st.Cleared {
		fmt.Fprintf(w, "cleared            %s by %s: fork of %s (tree #%d vs #%d), kept under %s\n",
			ce.ClearedAt.Format(time.RFC3339), ce.ClearedBy, ce.Time.Format(time.RFC3339), ce.OlderSize, ce.NewerSize, ce.Key)
	}
	for _, a := range st.Archived {
		fmt.Fprintf(w, "archived           %s by %s (reset: %s), kept under %s\n",
			a.Time.Format(time.RFC3339), a.By, a.Reason, a.Key)
		if a.Note != "" {
			fmt.Fprintf(w, "  witnessed note\n%s", indent(a.Note))
		}
	}
	return nil
}

// printEvidence prints one piece of open fork evidence with its proof.
func printEvidence(w io.Writer, i int, ev signer.Evidence) {
	fmt.Fprintf(w, "evidence %d         %s: tree #%d (hash %s) is not contained in tree #%d (which gives %s)\n",
		i, ev.Time.Format(time.RFC3339), ev.OlderSize, ev.OlderHash, ev.NewerSize, ev.ComputedAt)
	fmt.Fprintf(w, "  older note\n%s  newer note\n%s", indent(ev.OlderNote), indent(ev.NewerNote))
	if len(ev.Proof) > 0 {
		fmt.Fprintf(w, "  proof (tlog tree proof of tree #%d in tree #%d, giving %s)\n",
			ev.OlderSize, ev.NewerSize, ev.ComputedAt)
		for _, h := range ev.Proof {
			fmt.Fprintf(w, "    %s\n", h)
		}
	}
	if err := ev.CheckProof(); err != nil {
		fmt.Fprintf(w, "  proof check        FAILED: %v\n", err)
	} else {
		fmt.Fprintln(w, "  proof check        ok: the upstream signed two trees that cannot both be true")
	}
}

func indent(s string) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(s, "\n") {
		if line != "" {
			b.WriteString("    " + line)
		}
	}
	if b.Len() > 0 && !strings.HasSuffix(b.String(), "\n") {
		b.WriteString("\n")
	}
	return b.String()
}

func writeJSONTo(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
