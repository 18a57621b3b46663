package advice

import (
	"strings"
	"testing"
)

func TestAdvice(t *testing.T) {
	if got := strings.Join(ClientEnvVars(), ","); got != "HTTPS_PROXY,NO_PROXY,GOSUMDB,SSL_CERT_FILE" {
		t.Errorf("ClientEnvVars = %s", got)
	}
	tests := []struct{ gate, want string }{
		{"", DefaultProxy},
		{"http://gate:3128/", "http://gate:3128"},
		{"https://modgate.corp.example", "https://modgate.corp.example"},
	}
	for _, tc := range tests {
		t.Run(tc.gate, func(t *testing.T) {
			if got := GOPROXY(tc.gate); got != tc.want || strings.Contains(got, "direct") {
				t.Errorf("GOPROXY(%q) = %q, want %q", tc.gate, got, tc.want)
			}
		})
	}
	md := Markdown()
	if strings.Count(md, "\n") != len(Items())+1 || !strings.Contains(md, "| `GOPRIVATE`, `GONOPROXY` |") {
		t.Errorf("Markdown:\n%s", md)
	}
}
