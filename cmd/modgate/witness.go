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
until an operator has looked at it and cleared it.

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
	var reason string
	cmd := witnessCommand(
		getenv,
		"clear-fork",
		"Mark the fork evidence as cleared (it is kept) and let checksum-database traffic through again",
		func(cmd *cobra.Command, c *adminClient, o *adminOptions) error {
			body, _ := json.Marshal(admin.ClearForkRequest{Reason: reason})
			var resp admin.ClearForkResponse
			_, err := c.do(cmd.Context(), "POST", "/api/v1/witness/clear-fork", "application/json", body, &resp)
			if offlineFallback(cmd, err) {
				resp, err = offlineClearFork(cmd.Context(), o.dataDir, reason)
			}
			if err != nil {
				return err
			}
			if o.json {
				return writeJSONTo(stdout, resp)
			}
			fmt.Fprintf(
				stdout,
				"cleared %d fork evidence record(s); they stay on record (modgate witness status shows them)\n",
				len(resp.Cleared),
			)
			return printStatus(stdout, resp.Status, false)
		},
	)
	cmd.Flags().StringVar(&reason, "reason", "", "why the evidence is cleared, for the audit log")
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

func offlineClearFork(ctx context.Context, dataDir, reason string) (admin.ClearForkResponse, error) {
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
	cleared, err := signer.ClearFork(ctx, store, name, who, time.Now())
	if err != nil {
		return admin.ClearForkResponse{}, err
	}
	if len(cleared) > 0 {
		e := audit.Entry{Who: who, Action: "witness.clear-fork", Subject: name, Reason: reason}
		if err := audit.New(st).Append(ctx, e); err != nil {
			return admin.ClearForkResponse{}, err
		}
	}
	status, err := signer.ReadStatus(ctx, store, name)
	if cleared == nil {
		cleared = []signer.ClearedEvidence{}
	}
	return admin.ClearForkResponse{Cleared: cleared, Status: status}, err
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
	if st.Forked {
		fmt.Fprintln(
			w,
			"status             FORKED: checksum-database requests fail until the evidence is cleared "+
				"(modgate witness clear-fork)",
		)
	} else {
		fmt.Fprintln(w, "status             ok")
	}
	for i, ev := range st.Evidence {
		fmt.Fprintf(w, "evidence %d         %s: tree #%d (hash %s) is not contained in tree #%d (which gives %s)\n",
			i+1, ev.Time.Format(time.RFC3339), ev.OlderSize, ev.OlderHash, ev.NewerSize, ev.ComputedAt)
		fmt.Fprintf(w, "  older note\n%s  newer note\n%s", indent(ev.OlderNote), indent(ev.NewerNote))
	}
	for _, ce := range st.Cleared {
		fmt.Fprintf(w, "cleared            %s by %s: fork of %s (tree #%d vs #%d), kept under %s\n",
			ce.ClearedAt.Format(time.RFC3339), ce.ClearedBy, ce.Time.Format(time.RFC3339), ce.OlderSize, ce.NewerSize, ce.Key)
	}
	return nil
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
