package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/modgate/modgate/policy"
	"github.com/modgate/modgate/proxy/admin"
)

// policyFile is the policy's file name in the data directory.
const policyFile = "policy.yaml"

// newPolicyCmd is "modgate policy": the subcommands that manage the
// running gate's policy through its admin API, and check (offline).
func newPolicyCmd(getenv env, stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Manage the module policy of a running gate (exit 1: refused, invalid or denied; 2: usage)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usageError{errors.New("policy: want a subcommand: list, allow, deny, rm, test, export, import, log or check")}
		},
	}
	cmd.AddCommand(
		policyListCmd(getenv, stdout),
		policyRuleCmd(getenv, stdout, policy.Allow),
		policyRuleCmd(getenv, stdout, policy.Deny),
		policyRmCmd(getenv, stdout),
		policyTestCmd(getenv, stdout),
		policyExportCmd(getenv, stdout),
		policyImportCmd(getenv, stdout),
		policyLogCmd(getenv, stdout),
		policyCheckCmd(getenv, stdout),
	)
	return cmd
}

// adminCommand makes a subcommand that calls the admin API: run gets the
// client and the options once the flags are applied.
func adminCommand(
	getenv env,
	use, short string,
	args cobra.PositionalArgs,
	run func(cmd *cobra.Command, c *adminClient, o *adminOptions, args []string) error,
) *cobra.Command {
	cmd := &cobra.Command{Use: use, Short: short, Args: usageArgs(args)}
	o := addAdminFlags(cmd, getenv)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := applyEnvAndConfig(cmd.Flags(), getenv, ""); err != nil {
			return err
		}
		c, err := o.client(getenv)
		if err != nil {
			return err
		}
		return run(cmd, c, o, args)
	}
	return cmd
}

// usageArgs makes an argument error a usage error (exit 2).
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}

func policyListCmd(getenv env, stdout io.Writer) *cobra.Command {
	return adminCommand(getenv, "list", "List the policy's settings and rules", cobra.NoArgs,
		func(cmd *cobra.Command, c *adminClient, o *adminOptions, _ []string) error {
			var p policy.Policy
			data, err := c.do(cmd.Context(), http.MethodGet, "/api/v1/policy", "", nil, &p)
			if err != nil {
				return err
			}
			if o.json {
				_, err = stdout.Write(data)
				return err
			}
			printPolicy(stdout, &p)
			return nil
		})
}

// printPolicy prints the settings and a table of the rules.
func printPolicy(w io.Writer, p *policy.Policy) {
	cooldown := "none"
	if p.Cooldown > 0 {
		cooldown = policy.FormatDuration(p.Cooldown)
	}
	fmt.Fprintf(
		w,
		"mode: %s  default: %s  deny_retracted: %v  cooldown: %s\n",
		p.Mode,
		p.Default,
		p.DenyRetracted,
		cooldown,
	)
	if len(p.Private) > 0 {
		fmt.Fprintf(w, "private: %s\n", strings.Join(p.Private, ", "))
	}
	if len(p.Rules) == 0 {
		fmt.Fprintln(w, "no rules")
	} else {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tACTION\tMODULE\tVERSIONS\tREASON")
		for _, r := range p.Rules {
			versions := orDash(r.Versions)
			if r.Commit != "" {
				versions = "commit:" + r.Commit
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.ID, r.Action, r.Module, versions, orDash(r.Reason))
		}
		tw.Flush()
	}
	if len(p.Egress.Rules) > 0 || p.Egress.Default == policy.Allow {
		fmt.Fprintf(
			w,
			"egress: mode: %s  default: %s  (%d rules; see export)\n",
			p.Egress.Mode,
			p.Egress.Default,
			len(p.Egress.Rules),
		)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// policyRuleCmd is "allow" or "deny PATTERN[@CONSTRAINT|@commit:HASH]
// --reason R [--id ID] [--first|--last|--position N]".
func policyRuleCmd(getenv env, stdout io.Writer, action policy.Action) *cobra.Command {
	var reason, id string
	var position int
	var first, last bool
	verb := map[policy.Action]string{policy.Allow: "allows", policy.Deny: "denies"}[action]
	short := fmt.Sprintf("Add a rule that %s matching modules (and versions, such as example.com/m@<v1.2.0, "+
		"or every version of a commit: example.com/m@commit:HASH)", verb)
	cmd := adminCommand(getenv, string(action)+" PATTERN[@CONSTRAINT|@commit:HASH]", short, cobra.ExactArgs(1),
		func(cmd *cobra.Command, c *adminClient, o *adminOptions, args []string) error {
			if action == policy.Deny && strings.TrimSpace(reason) == "" {
				return usageError{errors.New("deny needs --reason (a CVE, a ticket, a sentence)")}
			}
			pattern, constraint, commit := splitPattern(args[0])
			if strings.HasSuffix(args[0], "@commit:") {
				return usageError{fmt.Errorf("%q: want PATTERN@commit:HASH (such as example.com/m@commit:0123456789ab)",
					args[0])}
			}
			rule := policy.Rule{ID: id, Action: action, Module: pattern, Versions: constraint, Commit: commit,
				Reason: reason}
			req := admin.AddRuleRequest{Rule: rule}
			var err error
			if req.Position, err = positionFlag(cmd, position, first, last); err != nil {
				return err
			}
			body, _ := json.Marshal(req)
			var resp admin.AddRuleResponse
			data, err := c.do(cmd.Context(), http.MethodPost, "/api/v1/policy/rules", "application/json", body, &resp)
			if err != nil {
				return err
			}
			if o.json {
				_, err = stdout.Write(data)
				return err
			}
			r := resp.Rule
			what := orDash(r.Versions)
			if r.Commit != "" {
				what = "commit:" + r.Commit
			}
			fmt.Fprintf(stdout, "added rule %s at position %d: %s %s %s  (%s)\n",
				r.ID, resp.Position, r.Action, r.Module, what, orDash(r.Reason))
			printShadows(cmd.ErrOrStderr(), resp.Shadows)
			return nil
		})
	defaultWhere := "last, so that it never overrides an existing deny"
	if action == policy.Deny {
		defaultWhere = "first, so that it takes effect whatever allow rules exist"
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why (required for deny): shown to go users with the denial")
	cmd.Flags().StringVar(&id, "id", "", "the rule's id (default: "+string(action)+"-<n>)")
	cmd.Flags().IntVar(&position, "position", 0, "where the rule goes, 0 being first (default: "+defaultWhere+")")
	cmd.Flags().BoolVar(&first, "first", false, "put the rule first (the same as --position 0)")
	cmd.Flags().BoolVar(&last, "last", false, "put the rule last")
	return cmd
}

// positionFlag turns --position, --first and --last (at most one) into
// the API's position; nil leaves the API's default.
func positionFlag(cmd *cobra.Command, position int, first, last bool) (*int, error) {
	var set []string
	for _, name := range []string{"position", "first", "last"} {
		if cmd.Flags().Changed(name) {
			set = append(set, "--"+name)
		}
	}
	switch {
	case len(set) > 1:
		return nil, usageError{fmt.Errorf("%s: give one of --position, --first and --last", strings.Join(set, " and "))}
	case first:
		position = 0
	case last:
		position = admin.PositionLast
	case !cmd.Flags().Changed("position"):
		return nil, nil
	case position < 0:
		return nil, usageError{fmt.Errorf("--position %d: want 0 or more (or --last)", position)}
	}
	return &position, nil
}

// printShadows warns of earlier rules that decide what a rule matches.
func printShadows(w io.Writer, shadows []policy.Shadow) {
	for _, s := range shadows {
		hint := ""
		if s.Full {
			hint = fmt.Sprintf(" (to make it take effect: modgate policy rm %s, then add it again with --position %d)",
				s.Rule, s.ByPosition)
		}
		fmt.Fprintf(w, "warning: %s%s\n", s.Message, hint)
	}
}

// splitPattern splits "PATTERN@CONSTRAINT" or "PATTERN@commit:HASH" at the
// last '@', if what follows it starts like a constraint (v, <, >, =) or is
// commit:; else it is all pattern.
func splitPattern(arg string) (pattern, constraint, commit string) {
	i := strings.LastIndexByte(arg, '@')
	if i < 0 || i+1 >= len(arg) {
		return arg, "", ""
	}
	if c, ok := strings.CutPrefix(arg[i+1:], "commit:"); ok {
		return arg[:i], "", c
	}
	if !strings.ContainsRune("v<>=", rune(arg[i+1])) {
		return arg, "", ""
	}
	return arg[:i], arg[i+1:], ""
}

func policyRmCmd(getenv env, stdout io.Writer) *cobra.Command {
	return adminCommand(getenv, "rm ID", "Remove the rule with this id", cobra.ExactArgs(1),
		func(cmd *cobra.Command, c *adminClient, o *adminOptions, args []string) error {
			var resp map[string]policy.Rule
			data, err := c.do(cmd.Context(), http.MethodDelete, "/api/v1/policy/rules/"+url.PathEscape(args[0]), "", nil, &resp)
			if err != nil {
				return err
			}
			if o.json {
				_, err = stdout.Write(data)
				return err
			}
			r := resp["removed"]
			fmt.Fprintf(stdout, "removed rule %s: %s %s %s\n", r.ID, r.Action, r.Module, orDash(r.Versions))
			return nil
		})
}

// deniedError makes "policy test" exit 1 for a denied version.
type deniedError struct{ what, rule string }

func (e deniedError) Error() string { return fmt.Sprintf("%s is denied by rule %s", e.what, e.rule) }

func policyTestCmd(getenv env, stdout io.Writer) *cobra.Command {
	return adminCommand(
		getenv,
		"test MODULE@VERSION",
		"Show what the policy decides for a module version (exit 1 when denied)",
		cobra.ExactArgs(1),
		func(cmd *cobra.Command, c *adminClient, o *adminOptions, args []string) error {
			i := strings.LastIndexByte(args[0], '@')
			if i <= 0 || i == len(args[0])-1 {
				return usageError{fmt.Errorf("%q: want MODULE@VERSION, such as example.com/m@v1.2.3", args[0])}
			}
			mod, version := args[0][:i], args[0][i+1:]
			body, _ := json.Marshal(admin.TestRequest{Module: mod, Version: version})
			var resp admin.TestResponse
			data, err := c.do(cmd.Context(), http.MethodPost, "/api/v1/policy/test", "application/json", body, &resp)
			if err != nil {
				return err
			}
			if o.json {
				stdout.Write(data)
			} else {
				printTest(stdout, &resp)
			}
			if !resp.Decision.Allowed {
				return deniedError{what: args[0], rule: resp.Decision.Rule}
			}
			return nil
		},
	)
}

// printTest prints a decision as "key: value" lines.
func printTest(w io.Writer, r *admin.TestResponse) {
	d := r.Decision
	verdict := "allowed"
	switch {
	case d.WouldDeny:
		verdict = "allowed (report mode; enforce would deny)"
	case !d.Allowed:
		verdict = "denied"
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "%s@%s:\t%s\n", r.Module, r.Version, verdict)
	fmt.Fprintf(tw, "rule:\t%s\n", d.Rule)
	fmt.Fprintf(tw, "reason:\t%s\n", d.Reason)
	if f := r.Facts; f.RetractedKnown {
		retracted := "no"
		if f.Retracted {
			retracted = "yes " + f.Rationale
		}
		fmt.Fprintf(tw, "retracted:\t%s\n", retracted)
	}
	printDating(tw, r.Facts)
	if r.FactsError != "" {
		fmt.Fprintf(tw, "facts:\tunknown: %s\n", strings.ReplaceAll(r.FactsError, "\n", "; "))
	}
	if r.Commit != "" {
		fmt.Fprintf(tw, "commit:\t%s (from %s)\n", r.Commit, r.CommitSource)
	} else {
		fmt.Fprintf(tw, "commit:\tunknown\n")
	}
	if r.Note != "" {
		fmt.Fprintf(tw, "note:\t%s\n", r.Note)
	}
	tw.Flush()
}

// printDating prints the publication time the cooldown measures from, and
// both of its sources: the .info Time and the witness's first sight of the
// version's checksum-database record.
func printDating(w io.Writer, f policy.Facts) {
	stamp := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	if !f.Published.IsZero() {
		fmt.Fprintf(w, "published:\t%s (the later of the two below)\n", stamp(f.Published))
	}
	if !f.InfoTime.IsZero() {
		fmt.Fprintf(w, "info time:\t%s (what its .info claims)\n", stamp(f.InfoTime))
	}
	switch {
	case !f.FirstSeen.IsZero():
		fmt.Fprintf(w, "first seen:\t%s (record %d, first in a tree head this gate witnessed)\n",
			stamp(f.FirstSeen), f.Record)
	case f.BeforeWitness:
		fmt.Fprintf(w, "first seen:\tbefore this gate's first witnessed tree head (record %d): "+
			"only its .info dates it\n", f.Record)
	}
}

func policyExportCmd(getenv env, stdout io.Writer) *cobra.Command {
	return adminCommand(getenv, "export", "Print the policy as YAML (a file import and check read)", cobra.NoArgs,
		func(cmd *cobra.Command, c *adminClient, o *adminOptions, _ []string) error {
			var data []byte
			var err error
			if o.json {
				data, err = c.do(cmd.Context(), http.MethodGet, "/api/v1/policy", "", nil, nil)
			} else {
				data, err = c.do(cmd.Context(), http.MethodGet, "/api/v1/policy/export", "", nil, nil)
			}
			if err != nil {
				return err
			}
			_, err = stdout.Write(data)
			return err
		})
}

func policyImportCmd(getenv env, stdout io.Writer) *cobra.Command {
	return adminCommand(getenv, "import FILE", "Replace the whole policy with a YAML (or .json) file", cobra.ExactArgs(1),
		func(cmd *cobra.Command, c *adminClient, o *adminOptions, args []string) error {
			body, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			if !strings.EqualFold(filepath.Ext(args[0]), ".json") {
				// The API takes JSON bodies only: the YAML text travels
				// inside one, and the gate parses it as the policy file.
				if body, err = json.Marshal(map[string]string{"yaml": string(body)}); err != nil {
					return err
				}
			}
			var resp admin.ReplaceResponse
			data, err := c.do(cmd.Context(), http.MethodPut, "/api/v1/policy", "application/json", body, &resp)
			if err != nil {
				return err
			}
			if o.json {
				_, err = stdout.Write(data)
				return err
			}
			fmt.Fprintf(stdout, "imported %s\n", args[0])
			if resp.Policy != nil {
				printPolicy(stdout, resp.Policy)
			}
			printShadows(cmd.ErrOrStderr(), resp.Shadows)
			return nil
		})
}

func policyLogCmd(getenv env, stdout io.Writer) *cobra.Command {
	var limit int
	var before string
	cmd := adminCommand(
		getenv,
		"log",
		"Print the audit log (policy changes, hand edits, would-be denials, fork clearings), newest last",
		cobra.NoArgs,
		func(cmd *cobra.Command, c *adminClient, o *adminOptions, _ []string) error {
			var resp admin.AuditPage
			q := url.Values{"limit": {fmt.Sprint(limit)}}
			if before != "" {
				q.Set("before", before)
			}
			data, err := c.do(cmd.Context(), http.MethodGet, "/api/v1/audit?"+q.Encode(), "", nil, &resp)
			if err != nil {
				return err
			}
			if o.json {
				_, err = stdout.Write(data)
				return err
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tWHO\tACTION\tSUBJECT\tREASON")
			for _, e := range resp.Entries {
				subject := e.Subject
				if e.Count > 0 {
					subject = fmt.Sprintf("%s (%d requests until %s)",
						subject, e.Count, e.Until.UTC().Format(time.RFC3339))
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n",
					e.Time.UTC().Format(time.RFC3339), e.Who, e.Action, orDash(subject), orDash(reasonLine(e.Reason)))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if resp.Next != "" {
				fmt.Fprintf(stdout, "older entries: modgate policy log --before %s\n", resp.Next)
			}
			return nil
		},
	)
	cmd.Flags().IntVar(&limit, "limit", 50, "how many of the newest entries")
	cmd.Flags().StringVar(&before, "before", "", "show the entries older than this cursor (printed under a full page)")
	return cmd
}

func reasonLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

func policyCheckCmd(getenv env, stdout io.Writer) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "check FILE",
		Short: "Validate a policy file offline (exit 1 if invalid)",
		Args:  usageArgs(cobra.ExactArgs(1)),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of text")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		data, err := os.ReadFile(args[0])
		if err != nil {
			return err
		}
		p, perr := policy.Parse(data)
		problems := validationProblems(perr)
		var shadows []policy.Shadow
		if p != nil {
			shadows = p.AllShadows()
		}
		if asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			enc.Encode(map[string]any{"file": args[0], "ok": perr == nil, "policy": p, "problems": problems,
				"shadows": shadows})
		} else if perr == nil {
			fmt.Fprintf(stdout, "%s: ok: mode %s, default %s, %d rules\n", args[0], p.Mode, p.Default, len(p.Rules))
			for _, sh := range shadows {
				fmt.Fprintf(stdout, "%s: rules[%d]: warning: %s\n", args[0], sh.Position, sh.Message)
			}
		} else {
			for _, ve := range problems {
				where := args[0]
				if ve.Line > 0 {
					where += ":" + strconv.Itoa(ve.Line)
				}
				fmt.Fprintf(stdout, "%s: %s: %s\n", where, orDash(ve.Field), ve.Problem)
			}
		}
		if perr != nil {
			return fmt.Errorf("%s: invalid policy (%d problems)", args[0], len(problems))
		}
		return nil
	}
	return cmd
}

// validationProblems lists the *policy.ValidationErrors joined in err.
func validationProblems(err error) []*policy.ValidationError {
	if err == nil {
		return nil
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	var out []*policy.ValidationError
	for _, e := range errs {
		var ve *policy.ValidationError
		if !errors.As(e, &ve) {
			ve = &policy.ValidationError{Problem: e.Error()}
		}
		out = append(out, ve)
	}
	return out
}
