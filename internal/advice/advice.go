// Package advice is the one source of what modgate tells a go client to
// set: the settings modgate client-env prints, the values modgate doctor
// recommends in its fixes, and the table in the README's "Checking a
// machine" section. Tests of cmd/modgate check that the three agree with
// it, so a change of advice is made here once.
package advice

import (
	"fmt"
	"slices"
	"strings"
)

// DefaultProxy is the upstream module proxy the gate intercepts.
const DefaultProxy = "https://proxy.golang.org"

// Item is the advice for one go client setting.
type Item struct {
	Name      string // the variable, such as GOPROXY
	Want      string // what it should be, for people (Markdown)
	Why       string // why, for people
	ClientEnv bool   // modgate client-env prints it
}

// Items returns the advice for each setting, in the order doctor checks
// them.
func Items() []Item {
	return []Item{
		{
			"HTTPS_PROXY",
			"the gate's proxy URL, such as `http://modgate.example.com:3128`; not needed when `GOPROXY` is the gate",
			"the go command reaches proxy.golang.org and sum.golang.org through it, so the gate sees every download",
			true,
		},
		{"NO_PROXY", "no entry that matches proxy.golang.org or sum.golang.org (nor a parent domain, such as `.golang.org`)",
			"an entry that matches them sends the go command around the gate", true},
		{"GOSUMDB", "the gate's verifier key: `modgate key verifier --gate URL` prints it",
			"the go command then accepts only checksum-database notes that the gate witnessed and co-signed", true},
		{
			"SSL_CERT_FILE",
			"Linux: a file that holds the gate's CA (`modgate ca cert --gate URL`), or trust the CA system-wide",
			"intercepted TLS is signed by the gate's CA; on Linux SSL_CERT_FILE replaces the go command's roots",
			true,
		},
		{"GOPROXY", "`" + DefaultProxy + "` with `HTTPS_PROXY`, or the gate's URL; without `,direct`",
			"`,direct` lets the go command fetch modules from their hosts, around the gate's checks", false},
		{
			"GONOSUMDB",
			"only the patterns of modules that only the gate's upstream serves (the gate's `--private`), such as `git.example.com/*`",
			"a broad pattern exempts public modules from the checksum database; do not use GOPRIVATE for this: it also fetches them `direct`",
			false,
		},
		{"GOPRIVATE, GONOPROXY", "unset, or only modules fetched from their VCS host (which needs an egress rule)",
			"matching modules are fetched `direct`, not through the gate's pipeline, and skip the checksum database", false},
		{"GOFLAGS", "no `-insecure`", "`-insecure` lets downloads skip certificate checks", false},
		{"GOINSECURE", "unset", "matching modules may be fetched over plain HTTP or without certificate checks", false},
	}
}

// ClientEnvVars are the variables that modgate client-env sets, in order.
func ClientEnvVars() []string {
	var out []string
	for _, it := range Items() {
		if it.ClientEnv {
			out = append(out, it.Name)
		}
	}
	return out
}

// PrintedByClientEnv reports whether modgate client-env sets name.
func PrintedByClientEnv(name string) bool {
	return slices.Contains(ClientEnvVars(), name)
}

// GOPROXY is the GOPROXY to recommend: the gate's endpoint when the client
// uses it as GOPROXY (gate is its URL), else proxy.golang.org, which the
// gate intercepts. Never with ",direct".
func GOPROXY(gate string) string {
	if gate != "" {
		return strings.TrimRight(gate, "/")
	}
	return DefaultProxy
}

// PrivateVar is the variable for modules that only the gate's upstream
// serves.
const PrivateVar = "GONOSUMDB"

// PrivateExample is the example pattern of PrivateVar's advice.
const PrivateExample = "git.example.com/*"

// Markdown renders Items as the README's table, without a trailing newline.
func Markdown() string {
	var b strings.Builder
	b.WriteString("| setting | want | why |\n|---|---|---|\n")
	for _, it := range Items() {
		name := "`" + strings.ReplaceAll(it.Name, ", ", "`, `") + "`"
		if it.ClientEnv {
			name += " (client-env)"
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", name, it.Want, it.Why)
	}
	return strings.TrimSuffix(b.String(), "\n")
}
