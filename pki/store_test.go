package pki

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

func TestSaveLoadRoundtrip(t *testing.T) {
	ca := newTestCA(t)
	dir := filepath.Join(t.TempDir(), "data")
	if err := ca.Save(dir); err != nil {
		t.Fatalf("Save: %v", err)
	}
	wantModes := map[string]fs.FileMode{CertFile: 0o644, KeyFile: 0o600}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(wantModes) {
		t.Errorf("dir holds %d entries, want only %d (temporary files left?)", len(entries), len(wantModes))
	}
	for name, want := range wantModes {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if runtime.GOOS != "windows" && fi.Mode().Perm() != want {
			t.Errorf("%s has mode %04o, want %04o", name, fi.Mode().Perm(), want)
		}
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(keyPEM, []byte("-----BEGIN PRIVATE KEY-----")) {
		t.Errorf("key file is not PKCS #8 PEM: %.40q", keyPEM)
	}
	got, err := Load(dir)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !got.Cert.Equal(ca.Cert) || !got.Key.Equal(ca.Key) || !bytes.Equal(got.CertPEM, ca.CertPEM) {
		t.Error("loaded CA differs from the saved one")
	}
	if !slices.Equal(got.Names(), ca.Names()) {
		t.Errorf("Names() = %q, want %q", got.Names(), ca.Names())
	}
}

func TestSaveRefusesToOverwrite(t *testing.T) {
	tests := []struct {
		name    string
		present []string // files that exist before Save
	}{
		{"both", []string{CertFile, KeyFile}},
		{"cert only", []string{CertFile}},
		{"key only", []string{KeyFile}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range tc.present {
				if err := os.WriteFile(filepath.Join(dir, f), []byte("old"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			err := newTestCA(t).Save(dir)
			if !errors.Is(err, ErrExists) {
				t.Fatalf("Save = %v, want ErrExists", err)
			}
			for _, f := range tc.present {
				if b, _ := os.ReadFile(filepath.Join(dir, f)); string(b) != "old" {
					t.Errorf("%s was overwritten", f)
				}
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != len(tc.present) {
				t.Errorf("Save left %d files, want %d", len(entries), len(tc.present))
			}
		})
	}
}

func TestSaveTwice(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	if err := ca.Save(dir); err != nil {
		t.Fatal(err)
	}
	if err := ca.Save(dir); !errors.Is(err, ErrExists) {
		t.Fatalf("second Save = %v, want ErrExists", err)
	}
	if err := newTestCA(t).Save(dir); !errors.Is(err, ErrExists) {
		t.Fatalf("Save of another CA = %v, want ErrExists", err)
	}
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Cert.Equal(ca.Cert) {
		t.Error("the first CA was replaced")
	}
}

func TestSaveInvalidCA(t *testing.T) {
	good := newTestCA(t)
	other := newTestCA(t)
	unconstrained := *good.Cert
	unconstrained.PermittedDNSDomains = nil
	tests := []struct {
		name string
		ca   *CA
	}{
		{"nil", nil},
		{"no certificate", &CA{Key: good.Key}},
		{"no key", &CA{Cert: good.Cert}},
		{"key of another CA", &CA{Cert: good.Cert, Key: other.Key}},
		{"unconstrained", &CA{Cert: &unconstrained, Key: good.Key}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := tc.ca.Save(dir); !errors.Is(err, ErrInvalidCA) {
				t.Fatalf("Save = %v, want ErrInvalidCA", err)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("Save wrote %d files", len(entries))
			}
		})
	}
}

func TestLoadKeyMode(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no POSIX modes on Windows")
	}
	dir := t.TempDir()
	if err := newTestCA(t).Save(dir); err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(dir, KeyFile)
	tests := []struct {
		mode fs.FileMode
		ok   bool
	}{
		{0o600, true},
		{0o400, true},
		{0o644, false},
		{0o640, false},
		{0o604, false},
		{0o660, false},
		{0o601, false},
	}
	for _, tc := range tests {
		t.Run(tc.mode.String(), func(t *testing.T) {
			if err := os.Chmod(keyPath, tc.mode); err != nil {
				t.Fatal(err)
			}
			_, err := Load(dir)
			if tc.ok {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInsecureKey) {
				t.Fatalf("Load = %v, want ErrInsecureKey", err)
			}
			if want := "chmod 600 " + keyPath; !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, dir string)
		want    error
	}{
		{"empty dir", func(*testing.T, string) {}, fs.ErrNotExist},
		{"cert missing", func(t *testing.T, dir string) {
			mustSave(t, dir)
			mustRemove(t, filepath.Join(dir, CertFile))
		}, fs.ErrNotExist},
		{"key of another CA", func(t *testing.T, dir string) {
			mustSave(t, dir)
			other := t.TempDir()
			mustSave(t, other)
			mustRemove(t, filepath.Join(dir, KeyFile))
			mustCopy(t, filepath.Join(other, KeyFile), filepath.Join(dir, KeyFile), 0o600)
		}, ErrInvalidCA},
		{"garbage key", func(t *testing.T, dir string) {
			mustSave(t, dir)
			mustWrite(t, filepath.Join(dir, KeyFile), "not a key", 0o600)
		}, ErrInvalidCA},
		{"garbage cert", func(t *testing.T, dir string) {
			mustSave(t, dir)
			mustWrite(t, filepath.Join(dir, CertFile), "not a cert", 0o644)
		}, ErrInvalidCA},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.prepare(t, dir)
			if _, err := Load(dir); !errors.Is(err, tc.want) {
				t.Fatalf("Load = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestLoadOrCreate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	ca, created, err := LoadOrCreate(dir, testNames)
	if err != nil || !created {
		t.Fatalf("first LoadOrCreate = %v, %v; want created", created, err)
	}
	tests := []struct {
		name  string
		names []string
		want  error
	}{
		{"same names", testNames, nil},
		{"subset", testNames[:1], nil},
		{"subdomain", []string{"x.proxy.golang.org"}, nil},
		{"new name", []string{"proxy.golang.org", "modgate.internal"}, ErrNotPermitted},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, created, err := LoadOrCreate(dir, tc.names)
			if !errors.Is(err, tc.want) {
				t.Fatalf("LoadOrCreate = %v, want %v", err, tc.want)
			}
			if err != nil {
				return
			}
			if created || got.Fingerprint() != ca.Fingerprint() {
				t.Errorf("LoadOrCreate made a new CA (created=%v)", created)
			}
		})
	}
	t.Run("key without certificate", func(t *testing.T) {
		// What a crash inside Save leaves: the key is written first.
		mustRemove(t, filepath.Join(dir, CertFile))
		got, created, err := LoadOrCreate(dir, testNames)
		if err != nil || !created {
			t.Fatalf("LoadOrCreate over a lone key = %v, created %v; want its certificate made", err, created)
		}
		if !got.Key.Equal(ca.Key) {
			t.Error("LoadOrCreate replaced the CA key")
		}
		if again, err := Load(dir); err != nil || again.Fingerprint() != got.Fingerprint() {
			t.Errorf("the completed CA does not load: %v", err)
		}
	})
	t.Run("certificate without key", func(t *testing.T) {
		// A client's copy of ca.pem: never replaced.
		d := t.TempDir()
		cert, _ := os.ReadFile(filepath.Join(dir, CertFile))
		if err := os.WriteFile(filepath.Join(d, CertFile), cert, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, _, err := LoadOrCreate(d, testNames); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("LoadOrCreate over a lone certificate = %v, want fs.ErrNotExist", err)
		}
		if now, _ := os.ReadFile(filepath.Join(d, CertFile)); string(now) != string(cert) {
			t.Error("LoadOrCreate replaced a lone certificate")
		}
	})
	t.Run("bad names", func(t *testing.T) {
		if _, _, err := LoadOrCreate(t.TempDir(), []string{"*.example"}); !errors.Is(err, ErrInvalidName) {
			t.Fatalf("LoadOrCreate = %v, want ErrInvalidName", err)
		}
	})
}

func mustSave(t *testing.T, dir string) {
	t.Helper()
	if err := newTestCA(t).Save(dir); err != nil {
		t.Fatal(err)
	}
}

func mustRemove(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

func mustWrite(t *testing.T, path, data string, mode fs.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
}

func mustCopy(t *testing.T, from, to string, mode fs.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, to, string(b), mode)
}
