package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/modgate/modgate/pki"
)

// errNotReady is the error of a healthcheck whose gate is not ready.
var errNotReady = errors.New("not ready")

func newHealthcheckCmd(getenv env, stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "healthcheck",
		Short: "Exit 0 if the gate's admin listener answers /readyz with 200, else 1 (for HEALTHCHECK and probes)",
		Args:  cobra.NoArgs,
	}
	admin := cmd.Flags().
		String("admin", "", "the admin listener's URL or host:port (default from MODGATE_ADMIN_LISTEN, else 127.0.0.1:3129)")
	timeout := cmd.Flags().Duration("timeout", 3*time.Second, "how long to wait for the answer")
	dataDir := addDataDir(cmd, getenv)
	cmd.Flags().Lookup("data-dir").Usage = "data directory whose ca.pem verifies an https admin listener (--admin-tls)"
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := applyEnvAndConfig(cmd.Flags(), getenv, ""); err != nil {
			return err
		}
		base := *admin
		if base == "" {
			listen := getenv("MODGATE_ADMIN_LISTEN")
			if listen == "" {
				listen = defaultAdminListen
			}
			base = listenAddrURL(listen)
			if tlsOn, _ := strconv.ParseBool(getenv("MODGATE_ADMIN_TLS")); tlsOn {
				base = "https://" + strings.TrimPrefix(base, "http://")
			}
		}
		u, err := adminURL(base, nil)
		if err != nil {
			return usageError{err}
		}
		msg, err := healthcheck(cmd.Context(), u, *timeout, filepath.Join(*dataDir, pki.CertFile))
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, msg)
		return nil
	}
	return cmd
}

// healthcheck asks base/readyz and returns a one-line verdict, or an
// error (wrapping errNotReady when the gate answered but is not ready).
// An https admin listener (--admin-tls) is verified with the CA in caFile
// for the name modgate.admin.
func healthcheck(ctx context.Context, base string, timeout time.Duration, caFile string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/readyz", nil)
	if err != nil {
		return "", err
	}
	// The admin listener is reached directly: a proxy from the environment
	// must not decide the gate's health.
	tr := &http.Transport{Proxy: nil, DisableKeepAlives: true}
	if strings.HasPrefix(base, "https://") {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return "", fmt.Errorf("healthcheck over https needs the gate's CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return "", fmt.Errorf("healthcheck: no certificate in %s", caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, ServerName: pki.AdminName, MinVersion: tls.VersionTLS12}
	}
	client := &http.Client{Transport: tr}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("healthcheck %s/readyz: %w", base, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	text := strings.TrimSpace(string(body))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("healthcheck %s/readyz: %s %q: %w", base, resp.Status, text, errNotReady)
	}
	return fmt.Sprintf("%s/readyz: %s", base, text), nil
}
