package main

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"text/tabwriter"

	"github.com/dustin/go-humanize"
	"github.com/modgate/modgate/proxy/admin"
	"github.com/spf13/cobra"
)

// newCacheCmd is "modgate cache": what the running gate's cache holds.
func newCacheCmd(getenv env, stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "cache", Short: "The running gate's cache"}
	stats := adminCommand(getenv, "stats", "Print objects and bytes by kind, and the hit ratio since start", cobra.NoArgs,
		func(cmd *cobra.Command, c *adminClient, o *adminOptions, _ []string) error {
			var s admin.CacheStats
			raw, err := c.do(cmd.Context(), http.MethodGet, "/api/v1/cache/stats", "", nil, &s)
			if err != nil {
				return err
			}
			if o.json {
				_, err := stdout.Write(raw)
				return err
			}
			printCacheStats(stdout, s)
			return nil
		})
	cmd.AddCommand(stats)
	return cmd
}

// printCacheStats prints a table of the cache by kind.
func printCacheStats(w io.Writer, s admin.CacheStats) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tOBJECTS\tBYTES")
	kinds := make([]string, 0, len(s.Kinds))
	for k := range s.Kinds {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	for _, k := range kinds {
		fmt.Fprintf(tw, "%s\t%d\t%s\n", k, s.Kinds[k].Objects, humanize.IBytes(uint64(s.Kinds[k].Bytes)))
	}
	fmt.Fprintf(tw, "total\t%d\t%s\n", s.TotalObjects, humanize.IBytes(uint64(s.TotalBytes)))
	tw.Flush()
	if s.Requests == 0 {
		fmt.Fprintln(w, "hit ratio since start: no requests yet")
		return
	}
	fmt.Fprintf(w, "hit ratio since start: %.1f%% of %d requests\n", 100*s.HitRatio, s.Requests)
}
