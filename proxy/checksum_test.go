package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"golang.org/x/mod/module"

	"github.com/modgate/modgate/signer"
)

// TestMatchSum checks verification against the proven go.sum lines; the
// witness is one function here.
func TestMatchSum(t *testing.T) {
	req := Request{Kind: KindMod, Module: "example.com/lib", Version: "v1.0.0"}
	lines := func(ls []string, err error) func(context.Context, module.Version) ([]string, error) {
		return func(_ context.Context, m module.Version) ([]string, error) {
			if m.Path != "example.com/lib" || (m.Version != "v1.0.0" && m.Version != "v1.0.0/go.mod") {
				return nil, fmt.Errorf("asked for %v", m)
			}
			return ls, err
		}
	}
	modLine := []string{"example.com/lib v1.0.0/go.mod h1:mod="}
	tests := []struct {
		name         string
		fn           func(context.Context, module.Version) ([]string, error)
		suffix, hash string
		want         error
		status       int
	}{
		{"go.mod matches", lines(modLine, nil), "/go.mod", "h1:mod=", nil, 0},
		{"zip matches", lines([]string{"example.com/lib v1.0.0 h1:zip="}, nil), "", "h1:zip=", nil, 0},
		{"go.mod differs", lines(modLine, nil), "/go.mod", "h1:other=", ErrMismatch, http.StatusBadGateway},
		{"no line", lines(nil, nil), "", "h1:zip=", ErrMismatch, http.StatusBadGateway},
		{"not in the database", lines(nil, fmt.Errorf("%w: gone", signer.ErrNotFound)), "", "h1:zip=", ErrMismatch, http.StatusBadGateway},
		{"fork", lines(nil, signer.ErrFork), "", "h1:zip=", signer.ErrFork, 0},
		{"does not verify", lines(nil, signer.ErrVerify), "", "h1:zip=", signer.ErrVerify, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := matchSum(context.Background(), tc.fn, "sum.golang.org", req, tc.suffix, tc.hash)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if tc.status != 0 && statusOf(err) != tc.status {
				t.Errorf("status %d, want %d", statusOf(err), tc.status)
			}
		})
	}
}
