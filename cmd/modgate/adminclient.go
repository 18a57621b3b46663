package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/modgate/modgate/internal/atomicfile"
	"github.com/modgate/modgate/pki"
	"github.com/modgate/modgate/proxy/admin"
	"github.com/modgate/modgate/signer"
)

// adminOptions are the flags of the commands that talk to a running gate.
type adminOptions struct {
	admin, dataDir, cert, key, adminCA string
	json                               bool
}

// addAdminFlags adds the admin connection flags to cmd.
func addAdminFlags(cmd *cobra.Command, getenv env) *adminOptions {
	o := &adminOptions{}
	f := cmd.Flags()
	f.StringVar(&o.admin, "admin", "http://"+defaultAdminListen, "URL of the gate's admin listener (env MODGATE_ADMIN)")
	f.StringVar(&o.dataDir, "data-dir", defaultDataDir(getenv), "data directory whose admin.token (and ca.pem) to use")
	f.StringVar(&o.cert, "cert", "", "client certificate (PEM) for an https --admin URL, from modgate ca issue-client")
	f.StringVar(&o.key, "key", "", "the client certificate's key (PEM)")
	f.StringVar(
		&o.adminCA,
		"admin-ca",
		"",
		"CA certificate that signed the admin listener's certificate (default: the data directory's ca.pem)",
	)
	f.BoolVar(&o.json, "json", false, "print JSON instead of a table")
	return o
}

// adminClient calls a running gate's admin API.
type adminClient struct {
	base      *url.URL
	http      *http.Client
	token     string
	tokenNote string // why there is no token, for the 401 hint
	// expectKey is the verifier key of the data directory given (its
	// note.pub), "" when it has none; identity records the check of the
	// gate's key against it, made once before the first call.
	expectKey, dataDir string
	identity           error
	checked            bool
}

// client builds the API client: the token comes from MODGATE_ADMIN_TOKEN,
// else from the data directory's admin.token; --cert and --key add a
// client certificate (an https URL is then required).
func (o *adminOptions) client(getenv env) (*adminClient, error) {
	raw := o.admin
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usageError{fmt.Errorf("--admin %q: want an http:// or https:// URL", o.admin)}
	}
	c := &adminClient{base: u, dataDir: o.dataDir}
	c.expectKey, _ = signer.LoadVerifier(o.dataDir)
	if c.token = getenv("MODGATE_ADMIN_TOKEN"); c.token == "" {
		path := filepath.Join(o.dataDir, adminTokenFile)
		if c.token, err = signer.ReadSecret(path); err != nil {
			c.tokenNote = fmt.Sprintf(
				"no admin token (set MODGATE_ADMIN_TOKEN, or --data-dir to the gate's data directory): %v",
				err,
			)
		}
	}
	tr := &http.Transport{Proxy: nil, TLSHandshakeTimeout: 10 * time.Second, ResponseHeaderTimeout: time.Minute}
	if u.Scheme == "https" {
		if tr.TLSClientConfig, err = o.tlsConfig(); err != nil {
			return nil, err
		}
	} else if o.cert != "" {
		return nil, usageError{errors.New("--cert needs an https:// --admin URL (serve with --admin-tls)")}
	}
	c.http = &http.Client{Transport: tr, Timeout: 2 * time.Minute}
	return c, nil
}

// tlsConfig trusts the CA and names the admin listener modgate.admin.
func (o *adminOptions) tlsConfig() (*tls.Config, error) {
	caFile := o.adminCA
	if caFile == "" {
		caFile = filepath.Join(o.dataDir, pki.CertFile)
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("admin CA (--admin-ca): %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("admin CA %s: no PEM certificate", caFile)
	}
	cfg := &tls.Config{RootCAs: pool, ServerName: pki.AdminName, MinVersion: tls.VersionTLS12}
	if (o.cert == "") != (o.key == "") {
		return nil, usageError{errors.New("--cert and --key go together")}
	}
	if o.cert != "" {
		pair, err := tls.LoadX509KeyPair(o.cert, o.key)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// apiCallError is an error answer of the admin API.
type apiCallError struct {
	Status int
	Body   admin.APIError
	hint   string
}

func (e *apiCallError) Error() string {
	msg := fmt.Sprintf("admin API: %d %s: %s", e.Status, http.StatusText(e.Status), e.Body.Error)
	if e.Body.Field != "" && !strings.Contains(e.Body.Error, e.Body.Field) {
		msg += " (field " + e.Body.Field + ")"
	}
	if e.hint != "" {
		msg += "\n" + e.hint
	}
	return msg
}

// do sends a request and decodes a JSON answer into out, or returns the
// raw body when out is nil.
func (c *adminClient) do(ctx context.Context, method, path, contentType string, body []byte, out any) ([]byte, error) {
	if err := c.checkIdentity(ctx); err != nil {
		return nil, err
	}
	path, query, _ := strings.Cut(path, "?")
	u := c.base.JoinPath(path)
	u.RawQuery = query
	req, err := http.NewRequestWithContext(ctx, method, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf(
			"admin API %s: %w (is modgate serve running there? see --admin)",
			c.base.Redacted(),
			unwrapURLError(err),
		)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("admin API: reading the answer: %w", err)
	}
	if resp.StatusCode >= 300 {
		e := &apiCallError{Status: resp.StatusCode}
		if json.Unmarshal(data, &e.Body) != nil || e.Body.Error == "" {
			e.Body.Error = strings.TrimSpace(string(data))
		}
		if resp.StatusCode == http.StatusUnauthorized {
			e.hint = c.tokenNote
		}
		return nil, e
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return nil, fmt.Errorf("admin API: unexpected answer: %w", err)
		}
	}
	return data, nil
}

// wrongGateError is an admin listener that answers for another gate than
// the data directory given: its verifier key differs from note.pub.
type wrongGateError struct {
	Admin, DataDir, Got, Want string
}

func (e *wrongGateError) Error() string {
	return fmt.Sprintf("the gate at %s is not the gate of %s: it serves the verifier key %s, and %s/note.pub holds %s; "+
		"give --admin of that data directory's gate, or the --data-dir of this gate",
		e.Admin, e.DataDir, e.Got, e.DataDir, e.Want)
}

// checkIdentity makes sure, once, that the admin listener belongs to the
// gate of the data directory given: its /verifier.txt must be note.pub's
// key. Nothing else, not even the token, is sent to a gate that fails.
// Without a note.pub (a token from MODGATE_ADMIN_TOKEN alone) there is
// nothing to compare, and the check passes.
func (c *adminClient) checkIdentity(ctx context.Context) error {
	if c.checked || c.expectKey == "" {
		return c.identity
	}
	c.checked = true
	u := c.base.JoinPath("/verifier.txt")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.identity = fmt.Errorf("admin API %s: %w (is modgate serve running there? see --admin)",
			c.base.Redacted(), unwrapURLError(err))
		return c.identity
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	got := strings.TrimSpace(string(b))
	switch {
	case resp.StatusCode != http.StatusOK:
		c.identity = fmt.Errorf(
			"admin API %s: GET /verifier.txt: %s: not a modgate admin listener, or one without a verifier key",
			c.base.Redacted(),
			resp.Status,
		)
	case got != c.expectKey:
		c.identity = &wrongGateError{Admin: c.base.Redacted(), DataDir: c.dataDir, Got: got, Want: c.expectKey}
	}
	return c.identity
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// newIssueClientCmd is "modgate ca issue-client NAME --out DIR".
func newIssueClientCmd(getenv env, stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "issue-client NAME",
		Short: "Issue a client certificate for the admin API (NAME.pem and NAME-key.pem in --out)",
		Args:  cobra.ExactArgs(1),
	}
	dataDir := addDataDir(cmd, getenv)
	out := cmd.Flags().String("out", ".", "directory to write NAME.pem and NAME-key.pem (0600) to")
	lifetime := cmd.Flags().Duration("lifetime", pki.DefaultClientLifetime, "how long the certificate is valid")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := applyEnvAndConfig(cmd.Flags(), getenv, ""); err != nil {
			return err
		}
		ca, err := pki.Load(*dataDir)
		if err != nil {
			return err
		}
		certPath, keyPath, err := ca.WriteClient(*out, args[0], *lifetime)
		if errors.Is(err, pki.ErrInvalidName) {
			return usageError{err}
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(
			stdout,
			"%s\n%s\nuse: modgate policy list --admin https://<admin address> --cert %s --key %s\n",
			certPath,
			keyPath,
			certPath,
			keyPath,
		)
		return nil
	}
	return cmd
}

// ensurePolicyFile writes the default policy to path unless a file is
// there; it never overwrites, and reports whether it wrote.
func ensurePolicyFile(path string, content []byte) (bool, error) {
	if _, err := os.Lstat(path); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	err := atomicfile.Create(path, content, 0o644) // fails if path appeared meanwhile
	if errors.Is(err, fs.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, nil
}

// withIssueClient adds "issue-client" to the ca command.
func withIssueClient(ca *cobra.Command, getenv env, stdout io.Writer) *cobra.Command {
	ca.AddCommand(newIssueClientCmd(getenv, stdout))
	return ca
}
