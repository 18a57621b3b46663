package main

import (
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/module"
)

// TestPrefetchWithGoCommand drives the real go command through gates with
// prefetching on (the default) and off: the download succeeds either way,
// each go.mod and .info reaches the upstream once whether the client or a
// prefetch asked first, and the prefetch metric shows the work done ahead
// only when it is on.
func TestPrefetchWithGoCommand(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		on   bool
	}{
		{"on by default", nil, true},
		{"off", []string{"--prefetch", "0"}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			up, g := fakeGate(t, filepath.Join(t.TempDir(), "data"), tt.args...)
			c := newClient(t, g, viaGOPROXY, g.verifier, appMod)
			c.must(appDownload...)
			for _, target := range appDownload[2:] {
				path, vers, _ := strings.Cut(target, "@")
				esc, err := module.EscapePath(path)
				if err != nil {
					t.Fatal(err)
				}
				for _, ext := range []string{".mod", ".info"} {
					p := "/" + esc + "/@v/" + vers + ext
					if n := up.Requests(p); n > 1 {
						t.Errorf("%d upstream requests for %s, want at most 1", n, p)
					}
				}
			}
			metrics := adminGet(t, g, "/metrics")
			queued := strings.Contains(metrics, `modgate_prefetch_total{result="queued"}`)
			if queued != tt.on {
				t.Errorf("prefetch queued anything: %v, want %v\n%s", queued, tt.on,
					grepLines(metrics, "modgate_prefetch_total"))
			}
		})
	}
}
