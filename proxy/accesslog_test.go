package proxy

import (
	"crypto/sha256"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/modgate/modgate/internal/logfield"
)

// TestAccessLogWaited checks the access log of two requests that share
// one upstream fetch: the one that ran it and the one that joined it both
// log cache=miss and the fetch's upstream time, and only the joiner logs
// waited=true. (Before, a joiner of a checksum-database fetch logged
// cache=hit with no upstream time.)
func TestAccessLogWaited(t *testing.T) {
	tests := []struct {
		name string
		path func(tg *testGate) string // asked of the gate, and held back upstream
	}{
		{"zip", func(tg *testGate) string { return modPath(t, libV120, ".zip") }},
		{"lookup", func(tg *testGate) string { return "/sumdb/" + tg.fake.Name() + "/lookup/example.com/lib@v1.2.0" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			core, logs := observer.New(zapcore.InfoLevel)
			tg := newTestGate(t, nil, gateOptions{Logger: zap.New(core)})
			path := tt.path(tg)
			good := upstreamBytes(t, tg.fake, path)
			arrived, release := make(chan struct{}), make(chan struct{})
			var once sync.Once
			tg.fake.Handle(path, func(w http.ResponseWriter, r *http.Request) {
				once.Do(func() { close(arrived) })
				<-release
				w.Write(good)
			})
			results := make(chan string, 2)
			get := func() {
				status, body, err := fetch(t.Context(), tg.url+path)
				results <- fmt.Sprintf("%d %v %x", status, err, sha256.Sum256(body))
			}
			go get()
			<-arrived
			go get()
			time.Sleep(200 * time.Millisecond) // let the second request join the fetch
			close(release)
			first, second := <-results, <-results
			if !strings.HasPrefix(first, "200 <nil> ") || first != second {
				t.Errorf("answers %q and %q, want two equal 200s", first, second)
			}
			// A streamed zip's answer completes before its request's line
			// is logged (once the zip is stored): wait for both lines.
			lines := logs.FilterMessage("request").AllUntimed()
			for deadline := time.Now().Add(10 * time.Second); len(lines) < 2 && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
				lines = logs.FilterMessage("request").AllUntimed()
			}
			if len(lines) != 2 {
				t.Fatalf("%d request lines, want 2", len(lines))
			}
			waited := 0
			for _, l := range lines {
				f := l.ContextMap()
				if f[logfield.Cache] != cacheMiss {
					t.Errorf("%s = %v, want %s: %v", logfield.Cache, f[logfield.Cache], cacheMiss, f)
				}
				if ms, _ := f[logfield.UpstreamMS].(int64); ms < 150 {
					t.Errorf("%s = %v, want the held fetch's time: %v", logfield.UpstreamMS, f[logfield.UpstreamMS], f)
				}
				if f[logfield.Waited] == true {
					waited++
				}
			}
			if waited != 1 {
				t.Errorf("%d lines with %s=true, want 1 (the joiner)", waited, logfield.Waited)
			}
		})
	}
}
