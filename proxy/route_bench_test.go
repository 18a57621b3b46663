package proxy

import "testing"

// BenchmarkRoute parses the request paths the go command sends most.
func BenchmarkRoute(b *testing.B) {
	paths := []struct{ name, path string }{
		{"zip", "/github.com/!burnt!sushi/toml/@v/v1.5.0.zip"},
		{"mod", "/golang.org/x/net/@v/v0.43.0.mod"},
		{"info", "/go.opentelemetry.io/otel/sdk/metric/@v/v1.38.0.info"},
		{"list", "/github.com/caddyserver/certmagic/@v/list"},
		{"lookup", "/sumdb/sum.golang.org/lookup/github.com/klauspost/compress@v1.18.0"},
		{"tile", "/sumdb/sum.golang.org/tile/8/1/234.p/17"},
	}
	for _, p := range paths {
		b.Run(p.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := parsePath(p.path); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
