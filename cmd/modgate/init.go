package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/mod/sumdb/note"

	"github.com/modgate/modgate/pki"
	"github.com/modgate/modgate/policy"
	"github.com/modgate/modgate/proxy"
	"github.com/modgate/modgate/signer"
)

// Defaults of the command-line contract.
const (
	defaultListen        = "127.0.0.1:3128"
	defaultAdminListen   = "127.0.0.1:3129"
	defaultUpstream      = "https://proxy.golang.org"
	defaultUpstreamSumDB = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"
	adminTokenFile       = "admin.token"
)

func newInitCmd(getenv env, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create the data directory: CA, enterprise note key and admin token (never overwrites)",
		Args:  cobra.NoArgs,
	}
	dataDir := addDataDir(cmd, getenv)
	intercept := cmd.Flags().
		String("intercept", strings.Join(proxy.DefaultIntercept, ","), "hosts the CA is constrained to")
	sumdb := cmd.Flags().
		String("upstream-sumdb", defaultUpstreamSumDB, "upstream checksum database verifier key (names the enterprise key)")
	listen := cmd.Flags().String("listen", defaultListen, "the proxy address clients will use")
	tlsNames := cmd.Flags().
		String("tls-names", "", "comma list of DNS names of the gate's own HTTPS endpoint (serve --tls-names) that a new CA also permits")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := applyEnvAndConfig(cmd.Flags(), getenv, ""); err != nil {
			return err
		}
		name, _, err := parseSumDB(*sumdb)
		if err != nil {
			return usageError{err}
		}
		extra := splitList(*tlsNames)
		if err := checkTLSNames(extra, splitList(*intercept)); err != nil {
			return usageError{err}
		}
		if err := checkListenAddr("listen", *listen); err != nil {
			return usageError{err}
		}
		created, vkey, err := initDataDir(*dataDir, splitList(*intercept), extra, name)
		if err != nil {
			return err
		}
		wrote, err := ensurePolicyFile(filepath.Join(*dataDir, policyFile), policy.DefaultFile())
		if err != nil {
			return fmt.Errorf("policy: %w", err)
		}
		if wrote {
			fmt.Fprintf(stderr, "modgate: wrote the default policy to %s\n", filepath.Join(*dataDir, policyFile))
		}
		if !created && !wrote {
			fmt.Fprintf(stderr, "modgate: %s is already initialized; nothing was changed\n", *dataDir)
		}
		printClientLines(stderr, *dataDir, proxyURL(*listen), vkey)
		return nil
	}
	return cmd
}

// initDataDir creates what is missing in the data directory: the
// directory (0700), the CA (a new one permits the intercepted hosts,
// pki.AdminName and tlsNames, the names of the gate's own HTTPS endpoint),
// the enterprise note key named dbName and the admin token. It never
// overwrites and reports whether it created anything. An existing CA must
// permit the intercepted hosts and tlsNames.
func initDataDir(dir string, intercept, tlsNames []string, dbName string) (created bool, vkey string, err error) {
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return false, "", fmt.Errorf("creating data directory: %w", err)
		}
		created = true
	}
	names := intercept
	if _, err := os.Lstat(filepath.Join(dir, pki.CertFile)); errors.Is(err, fs.ErrNotExist) {
		// A new CA also permits the admin listener's name (serve --admin-tls)
		// and the HTTPS endpoint's names (serve --tls-names).
		names = append(slices.Concat(intercept, tlsNames), pki.AdminName)
	}
	ca, caCreated, err := pki.LoadOrCreate(dir, names)
	if err != nil {
		return false, "", fmt.Errorf("CA: %w", err)
	}
	for _, n := range tlsNames {
		if !ca.Permits(n) {
			return false, "", errTLSNamesOutsideCA(ca, dir, n)
		}
	}
	vkey, keyCreated, err := signer.CreateKey(dir, dbName)
	if err != nil {
		return false, "", fmt.Errorf("enterprise note key: %w", err)
	}
	tokenCreated := false
	tokenPath := filepath.Join(dir, adminTokenFile)
	if _, err := os.Stat(tokenPath); errors.Is(err, fs.ErrNotExist) {
		b := make([]byte, 32)
		rand.Read(b)
		if err := signer.WriteSecret(tokenPath, hex.EncodeToString(b)); err != nil {
			return false, "", fmt.Errorf("admin token: %w", err)
		}
		tokenCreated = true
	}
	return created || caCreated || keyCreated || tokenCreated, vkey, nil
}

// parseSumDB parses "<verifier key> [URL]" and returns the database name.
func parseSumDB(s string) (name, url string, err error) {
	fields := strings.Fields(s)
	if len(fields) == 0 || len(fields) > 2 {
		return "", "", fmt.Errorf("--upstream-sumdb %q: want a verifier key, optionally followed by a space and a URL", s)
	}
	v, err := note.NewVerifier(fields[0])
	if err != nil {
		return "", "", fmt.Errorf("--upstream-sumdb: invalid verifier key %q: %v", fields[0], err)
	}
	if len(fields) == 2 {
		url = fields[1]
	}
	return v.Name(), url, nil
}

// proxyURL is the URL clients use for a listen address.
func proxyURL(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "http://" + listen
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		if h, err := os.Hostname(); err == nil {
			host = h
		} else {
			host = "127.0.0.1"
		}
	}
	return "http://" + net.JoinHostPort(host, port)
}

// printClientLines prints what a go client needs to use the gate.
func printClientLines(w io.Writer, dataDir, proxy, vkey string) {
	ca := filepath.Join(dataDir, "ca.pem")
	name, _, _ := strings.Cut(vkey, "+")
	fmt.Fprintf(w, `modgate: point a go client at this gate.
  bash/zsh (Linux):
    export HTTPS_PROXY=%[1]s
    export SSL_CERT_FILE=%[2]s
    export GOSUMDB='%[3]s'
  PowerShell (Windows; the CA goes into the certificate store):
    Import-Certificate -FilePath '%[2]s' -CertStoreLocation Cert:\CurrentUser\Root
    $env:HTTPS_PROXY = '%[1]s'
    $env:GOSUMDB = '%[3]s'
  macOS: sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain '%[2]s'
  A workstation without the data directory fetches the CA and the key from the gate:
    modgate ca cert --gate %[1]s > ~/.config/modgate/ca.pem
    modgate client-env --shell bash --gate %[1]s --ca-file ~/.config/modgate/ca.pem --rc-file ~/.bashrc
  A client that verified %[4]s with another key before must delete its cached notes:
    rm -rf "$(go env GOPATH)/pkg/sumdb/%[4]s/latest" "$(go env GOMODCACHE)/cache/download/sumdb/%[4]s/lookup"
`, proxy, ca, vkey, name)
}

// splitList splits a comma list, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, strings.ToLower(p))
		}
	}
	return out
}
