package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "devel"

// Exit codes: 0 ok, 1 refused or failed, 2 usage.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// usageError marks errors in the command line itself.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// env reads the environment; tests pass their own.
type env func(string) string

// run runs the modgate command line and returns the exit code.
func run(ctx context.Context, args []string, getenv env, stdout, stderr io.Writer) int {
	root := newRoot(getenv, stdout, stderr)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "modgate: %v\n", err)
	if errors.As(err, new(usageError)) {
		return exitUsage
	}
	if _, _, ferr := root.Find(args); ferr != nil {
		return exitUsage // an unknown command: the one error cobra's Find reports
	}
	return exitFail
}

// markUsageErrors makes the errors of cmd's and its subcommands' argument
// validators usage errors (exit 2), as SetFlagErrorFunc does for flags.
func markUsageErrors(cmd *cobra.Command) {
	if cmd.Args != nil {
		cmd.Args = usageArgs(cmd.Args)
	}
	for _, c := range cmd.Commands() {
		markUsageErrors(c)
	}
}

func newRoot(getenv env, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "modgate",
		Short:         "An egress gate for Go modules: intercept, verify, cache and co-sign",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(
		newServeCmd(getenv, stderr),
		newInitCmd(getenv, stderr),
		withIssueClient(newCACmd(getenv, stdout), getenv, stdout),
		newPolicyCmd(getenv, stdout),
		newKeyCmd(getenv, stdout),
		newClientEnvCmd(getenv, stdout),
		newHealthcheckCmd(getenv, stdout),
		newDoctorCmd(getenv, stdout),
		newWitnessCmd(getenv, stdout),
		newCacheCmd(getenv, stdout),
		newVulnCmd(getenv, stdout),
		newBundleCmd(getenv, stdout),
		&cobra.Command{
			Use: "version", Short: "Print the version", Args: cobra.NoArgs,
			Run: func(cmd *cobra.Command, _ []string) { fmt.Fprintf(stdout, "modgate %s\n", version) },
		},
	)
	markUsageErrors(root)
	return root
}

// defaultDataDir is $XDG_DATA_HOME/modgate, else ~/.local/share/modgate.
func defaultDataDir(getenv env) string {
	if x := getenv("XDG_DATA_HOME"); x != "" {
		return filepath.Join(x, "modgate")
	}
	if home := getenv("HOME"); home != "" {
		return filepath.Join(home, ".local", "share", "modgate")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "share", "modgate")
	}
	return "modgate-data"
}

// addDataDir adds the --data-dir flag to cmd.
func addDataDir(cmd *cobra.Command, getenv env) *string {
	return cmd.Flags().String("data-dir", defaultDataDir(getenv), "data directory: keys, CA, admin token and cache")
}

// applyEnvAndConfig sets each flag not given on the command line from the
// environment (MODGATE_<FLAG>, upper case, dashes to underscores), else from
// the YAML file named by --config. Unknown settings in the file are errors.
func applyEnvAndConfig(fs *pflag.FlagSet, getenv env, configFile string) error {
	settings := map[string]configValue{}
	if configFile != "" {
		var err error
		if settings, err = readConfig(configFile); err != nil {
			return err
		}
		for name, v := range settings {
			f := fs.Lookup(name)
			if f == nil || name == "config" {
				return usageError{fmt.Errorf("config %s: unknown setting %q", configFile, name)}
			}
			if v.list && !acceptsList(f) {
				return usageError{fmt.Errorf("config %s: %s takes one value, not a list", configFile, name)}
			}
		}
	}
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed {
			return
		}
		envName := "MODGATE_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := lookup(getenv, envName); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, usageError{fmt.Errorf("%s=%q: %v", envName, v, err)})
			}
		} else if v, ok := settings[f.Name]; ok {
			if err := fs.Set(f.Name, v.value); err != nil {
				errs = append(errs, usageError{fmt.Errorf("config %s: %s: %v", configFile, f.Name, err)})
			}
		}
	})
	return errors.Join(errs...)
}

func lookup(getenv env, name string) (string, bool) {
	v := getenv(name)
	return v, v != ""
}

// listAnnotation marks a flag whose value is a comma list, so that a
// config file may give it as a YAML list.
const listAnnotation = "modgate_list"

// acceptsList reports whether f takes a comma list: a slice flag, or one
// annotated with listAnnotation.
func acceptsList(f *pflag.Flag) bool {
	_, ok := f.Annotations[listAnnotation]
	return ok || strings.HasSuffix(f.Value.Type(), "Slice")
}

// markList annotates the flags named as taking a comma list.
func markList(fs *pflag.FlagSet, names ...string) {
	for _, n := range names {
		fs.SetAnnotation(n, listAnnotation, []string{"true"})
	}
}

// configValue is one setting of a config file: its value as a flag reads
// it, and whether the file gave a YAML list.
type configValue struct {
	value string
	list  bool
}

// readConfig reads a flat YAML map of flag names to scalars or lists.
func readConfig(path string) (map[string]configValue, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	var raw map[string]any
	if err := yaml.Unmarshal(b, &raw); err != nil {
		return nil, usageError{fmt.Errorf("config %s: %v", path, err)}
	}
	out := make(map[string]configValue, len(raw))
	for k, v := range raw {
		switch v := v.(type) {
		case []any:
			parts := make([]string, len(v))
			for i, p := range v {
				parts[i] = fmt.Sprint(p)
			}
			out[k] = configValue{strings.Join(parts, ","), true}
		case map[string]any:
			return nil, usageError{fmt.Errorf("config %s: %s: want a value or a list, not a map", path, k)}
		case nil:
			out[k] = configValue{}
		default:
			out[k] = configValue{value: fmt.Sprint(v)}
		}
	}
	return out, nil
}
