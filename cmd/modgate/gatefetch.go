package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/modgate/modgate/proxy"
)

// gateFetchTimeout bounds one fetch of a public file from the gate.
const gateFetchTimeout = 15 * time.Second

// parseGateURL parses --gate: the URL of the gate's proxy listener (or its
// HTTPS GOPROXY endpoint). A bare host:port means http://host:port.
func parseGateURL(s string) (*url.URL, error) {
	u, err := parseProxyURL(s)
	if err != nil {
		return nil, fmt.Errorf("--gate: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf(
			"--gate %q: want an http:// or https:// URL of the gate, such as http://modgate.example.com:3128",
			s,
		)
	}
	if u.User != nil || u.RawQuery != "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("--gate %q: want only a scheme, host and port", s)
	}
	return &url.URL{Scheme: u.Scheme, Host: u.Host}, nil
}

// publicURL is where the gate at base serves the public file name.
func publicURL(base *url.URL, name string) string {
	return strings.TrimRight(base.String(), "/") + proxy.PublicPrefix + name
}

// fetchPublic GETs the public file name from the gate at base, directly
// (never through HTTPS_PROXY), and returns its body.
func fetchPublic(ctx context.Context, base *url.URL, name string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, gateFetchTimeout)
	defer cancel()
	target := publicURL(base, name)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{Proxy: nil}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching %s from the gate: %w", target, unwrapURLError(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", target, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf(
			"fetching %s: %s: %s (is --gate the gate's proxy address?)",
			target,
			resp.Status,
			firstLineOf(body),
		)
	}
	return body, nil
}

// firstLineOf is the first line of an error body, for messages.
func firstLineOf(b []byte) string {
	line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return line
}

// fetchVerifierKey fetches and checks the gate's enterprise verifier key.
func fetchVerifierKey(ctx context.Context, base *url.URL) (string, error) {
	b, err := fetchPublic(ctx, base, proxy.PublicVerifier)
	if err != nil {
		return "", err
	}
	return checkVerifierKey(publicURL(base, proxy.PublicVerifier), b)
}

// checkVerifierKey checks that body (from where) is one verifier key.
func checkVerifierKey(where string, body []byte) (string, error) {
	key := strings.TrimSpace(string(body))
	if _, err := note.NewVerifier(key); err != nil {
		return "", fmt.Errorf("%s: %q is not a verifier key: %w", where, firstLineOf(body), err)
	}
	return key, nil
}

// fetchCA fetches the gate's CA certificate and checks it (checkCAPEM).
func fetchCA(ctx context.Context, base *url.URL) ([]byte, error) {
	b, err := fetchPublic(ctx, base, proxy.PublicCA)
	if err != nil {
		return nil, err
	}
	return b, checkCAPEM(publicURL(base, proxy.PublicCA), b)
}

// checkCAPEM checks that b (from where) is one PEM CA certificate.
func checkCAPEM(where string, b []byte) error {
	block, rest := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" || strings.TrimSpace(string(rest)) != "" {
		return fmt.Errorf("%s: not one PEM certificate", where)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	if !c.IsCA {
		return errors.New(where + ": the certificate is not a CA")
	}
	return nil
}
