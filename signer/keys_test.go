package signer

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCreateKeyNeverOverwrites(t *testing.T) {
	dir := t.TempDir()
	vkey, created, err := CreateKey(dir, "sum.golang.org")
	if err != nil || !created {
		t.Fatalf("CreateKey: %v, created %v", err, created)
	}
	if !strings.HasPrefix(vkey, "sum.golang.org+") {
		t.Errorf("verifier key %q is not named sum.golang.org", vkey)
	}
	fi, err := os.Stat(filepath.Join(dir, SignerKeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("signer key mode %v, %v", fi.Mode(), err)
	}
	again, created, err := CreateKey(dir, "sum.golang.org")
	if err != nil || created || again != vkey {
		t.Fatalf("second CreateKey: %q created=%v err=%v", again, created, err)
	}
	s, loaded, err := LoadKey(dir)
	if err != nil || loaded != vkey || s.Name() != "sum.golang.org" {
		t.Fatalf("LoadKey: %v %q", err, loaded)
	}
}

func TestLoadKeyRefusesReadableSecret(t *testing.T) {
	tests := []struct {
		mode os.FileMode
		want error
	}{
		{0o600, nil},
		{0o400, nil},
		{0o640, ErrInsecureKey},
		{0o644, ErrInsecureKey},
		{0o604, ErrInsecureKey},
	}
	for _, tc := range tests {
		t.Run(tc.mode.String(), func(t *testing.T) {
			dir := t.TempDir()
			if _, _, err := CreateKey(dir, "sum.golang.org"); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(filepath.Join(dir, SignerKeyFile), tc.mode); err != nil {
				t.Fatal(err)
			}
			_, _, err := LoadKey(dir)
			if !errors.Is(err, tc.want) {
				t.Fatalf("LoadKey with mode %v: %v, want %v", tc.mode, err, tc.want)
			}
		})
	}
}

func TestLoadVerifierNeedsOnlyNotePub(t *testing.T) {
	dir := t.TempDir()
	vkey, _, err := CreateKey(dir, "sum.golang.org")
	if err != nil {
		t.Fatal(err)
	}
	pubOnly := t.TempDir()
	if err := os.WriteFile(filepath.Join(pubOnly, VerifierKeyFile), []byte(vkey+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, VerifierKeyFile), []byte("not a key\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, dir, want string
		wantErr         string
	}{
		{"full data directory", dir, vkey, ""},
		{"note.pub alone", pubOnly, vkey, ""},
		{"no note.pub", t.TempDir(), "", "reading the verifier key"},
		{"invalid note.pub", bad, "", "parsing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := LoadVerifier(tc.dir)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("LoadVerifier: %q, %v; want an error with %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("LoadVerifier: %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
