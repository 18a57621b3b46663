package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRenameModule(t *testing.T) {
	in := "module github.com/caddyserver/caddy/v2\n\ngo 1.25\n\nrequire golang.org/x/net v0.43.0\n\nreplace example.com/a => ../a\n"
	out, err := renameModule([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	got := string(out)
	for _, want := range []string{"module modgate.bench/workload", "require golang.org/x/net v0.43.0"} {
		if !strings.Contains(got, want) {
			t.Errorf("renamed go.mod lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "replace") {
		t.Errorf("replace directive kept:\n%s", got)
	}
}

func TestDownloadErrors(t *testing.T) {
	tests := []struct {
		name, out string
		runErr    error
		want      string // substring of the error; "" for none
	}{
		{"all fine", `{"Path":"a","Version":"v1.0.0"}{"Path":"b","Version":"v1.0.0"}`, nil, ""},
		{"one refused", `{"Path":"a","Version":"v1.0.0"}{"Path":"b","Version":"v1.0.0","Error":"403 Forbidden"}`, errors.New("exit 1"), "1 modules failed, first: b@v1.0.0: 403 Forbidden"},
		{"run error only", ``, errors.New("exit 1"), "exit 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := downloadErrors([]byte(tt.out), tt.runErr)
			if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("downloadErrors = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestMedianOfPairedRatios(t *testing.T) {
	tests := []struct {
		a, b []float64
		want float64
	}{
		{[]float64{2, 4, 9}, []float64{1, 4, 3}, 2},         // ratios 2, 1, 3
		{[]float64{1, 3, 2, 8}, []float64{1, 1, 1, 1}, 2.5}, // even count: mean of the middle two
		{nil, nil, 0},
	}
	for _, tt := range tests {
		if got := median(ratios(tt.a, tt.b)); got != tt.want {
			t.Errorf("median(ratios(%v, %v)) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestTableOrder(t *testing.T) {
	b := &runner{logf: func(string, ...any) {}}
	for _, id := range []string{"7b", "4b", "1c", "10", "2", "4a", "1"} {
		b.add(id, "m", "v", "t", nil)
	}
	var out strings.Builder
	b.printTable(&out)
	var ids []string
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n")[1:] {
		ids = append(ids, strings.Fields(line)[0])
	}
	if got := strings.Join(ids, " "); got != "1 1c 2 4a 4b 7b 10" {
		t.Errorf("table order %s", got)
	}
}

func TestSumAccessLog(t *testing.T) {
	tests := []struct {
		name, log, want string
	}{
		{"zips and mods", `{"msg":"modgate serving"}
{"msg":"request","kind":"zip","duration":1500,"upstream_ms":500,"bytes":2000000}
{"msg":"request","kind":"zip","duration":500.5,"upstream_ms":250,"bytes":1000000}
{"msg":"request","kind":"mod","duration":10,"upstream_ms":9,"bytes":100}
{"msg":"request","kind":"info","duration":10,"upstream_ms":9,"bytes":100}
not json
`, "2 zips: answers 2.0s, upstream 0.8s, 3 MB; 1 .mod: answers 0.0s, upstream 0.0s"},
		{"empty", "", "0 zips: answers 0.0s, upstream 0.0s, 0 MB; 0 .mod: answers 0.0s, upstream 0.0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "modgate.log")
			if err := os.WriteFile(file, []byte(tt.log), 0o644); err != nil {
				t.Fatal(err)
			}
			s, err := sumAccessLog(file)
			if err != nil || s.String() != tt.want {
				t.Errorf("sumAccessLog = %q, %v; want %q", s, err, tt.want)
			}
		})
	}
}
