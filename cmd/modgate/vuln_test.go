package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"golang.org/x/mod/module"

	"github.com/modgate/modgate/pki"
	"github.com/modgate/modgate/policy/vuln"
	"github.com/modgate/modgate/proxy"
)

func TestReadModuleVersions(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name, file, text string
		want             []module.Version
		err              string
	}{
		{"go.sum", "go.sum", "golang.org/x/text v0.3.5 h1:a=\ngolang.org/x/text v0.3.5/go.mod h1:b=\n\n" +
			"example.com/lib v1.0.0/go.mod h1:c=\n",
			[]module.Version{{Path: "golang.org/x/text", Version: "v0.3.5"}, {Path: "example.com/lib", Version: "v1.0.0"}}, ""},
		{"go.mod", "go.mod", "module example.com/app\n\nrequire (\n\tgolang.org/x/text v0.3.5\n\texample.com/lib v1.0.0 // indirect\n)\n",
			[]module.Version{{Path: "golang.org/x/text", Version: "v0.3.5"}, {Path: "example.com/lib", Version: "v1.0.0"}}, ""},
		{"not a go.sum", "deps.txt", "golang.org/x/text v0.3.5\n", nil, "deps.txt:1: not a go.sum line"},
		{"bad version", "go.sum", "golang.org/x/text 0.3.5 h1:a=\n", nil, "go.sum:1"},
		{"bad go.mod", "go.mod", "require (\n", nil, "go.mod"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readModuleVersions(write(tt.file, tt.text))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want one holding %q", err, tt.err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tt.want)
			}
		})
	}
	if _, err := readModuleVersions(filepath.Join(dir, "missing.sum")); err == nil {
		t.Error("a missing file read")
	}
}

func TestCheckVulnFlags(t *testing.T) {
	for _, tt := range []struct {
		refresh time.Duration
		version string
		ok      bool
	}{
		{time.Hour, "", true},
		{time.Hour, "v0.0.0-20261105234957-e22db6528018", true},
		{0, "", false},
		{-time.Second, "", false},
		{time.Hour, "latest", false},
		{time.Hour, "v1.0", false},
	} {
		err := checkVulnFlags(serveOptions{vulnRefresh: tt.refresh, vulnVersion: tt.version})
		if (err == nil) != tt.ok {
			t.Errorf("--vuln-refresh %s --vuln-module-version %q: err %v, want ok %v", tt.refresh, tt.version, err, tt.ok)
		}
	}
}

func TestVulnHostForOldCA(t *testing.T) {
	old, err := pki.NewCA([]string{"proxy.golang.org", "sum.golang.org"})
	if err != nil {
		t.Fatal(err)
	}
	current, err := pki.NewCA(proxy.DefaultIntercept)
	if err != nil {
		t.Fatal(err)
	}
	def := proxy.DefaultIntercept
	for _, tt := range []struct {
		name     string
		ca       *pki.CA
		explicit bool
		want     []string
	}{
		{"old CA, default hosts", old, false, []string{"proxy.golang.org", "sum.golang.org"}},
		{"old CA, explicit hosts", old, true, def},
		{"new CA", current, false, def},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := vulnHostForOldCA(tt.ca, def, tt.explicit, zap.NewNop()); !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
	if !slices.Contains(proxy.DefaultIntercept, proxy.VulnHost) || !current.Permits(proxy.VulnHost) {
		t.Error("vuln.go.dev is not a default intercepted host permitted by a new CA")
	}
}

func TestPrintVulnStatus(t *testing.T) {
	var b bytes.Buffer
	printVulnStatus(&b, proxy.VulnStatus{})
	if !strings.Contains(b.String(), "no database built yet") || !strings.Contains(b.String(), "not yet") {
		t.Errorf("empty status:\n%s", b.String())
	}
	b.Reset()
	at := time.Date(2026, 11, 5, 23, 49, 57, 0, time.UTC)
	printVulnStatus(&b, proxy.VulnStatus{
		DB: &vuln.DB{Source: vuln.Source{Module: "golang.org/x/vulndb", Version: "v0.0.0-x", Time: at},
			Entries: 4789, Skipped: 1, Skips: []vuln.Skip{{File: "GO-2099-0005.json", Reason: "invalid"}}},
		LastRefresh: at, LastOutcome: "failed", LastError: "boom",
	})
	for _, want := range []string{"golang.org/x/vulndb@v0.0.0-x", "2026-11-05T23:49:57Z", "entries:       4789",
		"skipped:       1", "GO-2099-0005.json: invalid", "failed", "error: boom"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
}
