package main

import (
	"fmt"
	"strings"
)

// posixDialect is how bash, zsh and fish write the same settings.
type posixDialect struct {
	name   string
	quote  func(string) string
	set    string // format of a variable assignment: %[1]s name, %[2]s quoted value
	load   string // how to load the output into the running shell
	rc     []string
	rmLine string // deletes the cached notes; %[1]s is the database name
}

// posixDialects are the dialects of client-env --shell bash, zsh and fish.
var posixDialects = map[string]posixDialect{
	"bash": {
		name: "bash", quote: quoteSh, set: "export %s=%s",
		load: `eval "$(modgate client-env --shell bash ...)"`,
		rc: []string{
			"Append these lines to ~/.bashrc (read by every interactive bash; login shells",
			"read ~/.bash_profile, which usually sources ~/.bashrc):",
			"  modgate client-env --shell bash --rc-file ~/.bashrc ...   (replaces this block when run again)",
		},
		rmLine: `rm -rf "$(go env GOPATH)/pkg/sumdb/%[1]s/latest" "$(go env GOMODCACHE)/cache/download/sumdb/%[1]s/lookup"`,
	},
	"zsh": {
		name: "zsh", quote: quoteSh, set: "export %s=%s",
		load: `eval "$(modgate client-env --shell zsh ...)"`,
		rc: []string{
			"Append these lines to ~/.zshrc (read by every interactive zsh; use ~/.zshenv",
			"to reach scripts as well):",
			"  modgate client-env --shell zsh --rc-file ~/.zshrc ...   (replaces this block when run again)",
		},
		rmLine: `rm -rf "$(go env GOPATH)/pkg/sumdb/%[1]s/latest" "$(go env GOMODCACHE)/cache/download/sumdb/%[1]s/lookup"`,
	},
	"fish": {
		name: "fish", quote: quoteFish, set: "set -gx %s %s",
		load: `modgate client-env --shell fish ... | source`,
		rc: []string{
			"Append these lines to ~/.config/fish/config.fish, or keep them in a file of their own:",
			"  modgate client-env --shell fish --rc-file ~/.config/fish/conf.d/modgate.fish ...",
		},
		rmLine: `rm -rf (go env GOPATH)/pkg/sumdb/%[1]s/latest (go env GOMODCACHE)/cache/download/sumdb/%[1]s/lookup`,
	},
}

// renderPOSIX writes the settings for bash, zsh or fish.
func renderPOSIX(s *script, e clientEnv, d posixDialect) {
	s.rem = "#"
	q := d.quote
	if e.Persist {
		s.comment(">>> modgate client-env >>>")
		s.comment("modgate client environment for " + d.name + ", kept for new shells.")
		s.comment(d.rc...)
	} else {
		s.comment("modgate client environment for "+d.name+". Load it into this shell:", "  "+d.load,
			"or save it to a file and source that file. --persist prints lines for your rc file.")
	}
	s.comment("The go command then reaches " + joinWords(e.Intercept, "and") + " through the gate.")
	s.line(d.set, "HTTPS_PROXY", q(e.Proxy))
	writeNoProxyNote(s, e)
	s.line(d.set, "NO_PROXY", q(e.NoProxy))
	s.comment("The enterprise verifier: the go command accepts only checksum-database notes the gate co-signed.")
	s.line(d.set, "GOSUMDB", q(e.GOSUMDB))
	s.comment("On Linux the go command takes its roots from SSL_CERT_FILE, which replaces the system",
		"roots (for OpenSSL-based tools such as git and curl, too). To keep both, point it at a bundle:",
		"  cat /etc/ssl/certs/ca-certificates.crt "+q(e.CAFile)+" > roots.pem",
		"or trust the CA system-wide (below) and leave SSL_CERT_FILE out. macOS ignores SSL_CERT_FILE.")
	s.line(d.set, "SSL_CERT_FILE", q(e.CAFile))
	s.comment("", "Once: get the gate's CA certificate. Copy <data-dir>/ca.pem from the gate, or fetch it:")
	if e.Gate != "" {
		s.comment("  modgate ca cert --gate " + q(e.Gate) + " > " + q(e.CAFile))
	}
	s.comment(
		"  curl -fsS -o "+q(e.CAFile)+" "+q(e.CAURL),
		"Or trust it system-wide instead of SSL_CERT_FILE:",
		"  Debian, Ubuntu, Alpine: sudo cp "+q(
			e.CAFile,
		)+" /usr/local/share/ca-certificates/modgate.crt && sudo update-ca-certificates",
		"  Fedora, RHEL: sudo cp "+q(e.CAFile)+" /etc/pki/ca-trust/source/anchors/modgate.crt && sudo update-ca-trust",
		"  macOS: sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain "+q(e.CAFile),
	)
	s.comment("", "Once, after switching GOSUMDB keys: a note cached under another key named "+e.DBName,
		"fails with \"note has no verifiable signatures\". Delete the cached notes:",
		"  "+fmt.Sprintf(d.rmLine, e.DBName))
	s.comment("", "Check what the go command sees: go env GOSUMDB; check the whole setup: modgate doctor")
	if e.Persist {
		s.comment("<<< modgate client-env <<<")
	}
}

// joinWords joins words as a sentence does: "a", "a and b", "a, b and c".
func joinWords(words []string, conj string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " " + conj + " " + words[len(words)-1]
}

// writeNoProxyNote explains NO_PROXY and names the entries left out.
func writeNoProxyNote(s *script, e clientEnv) {
	s.comment("Hosts reached around the gate. Never list "+joinWords(e.Intercept, "or")+" here (nor a",
		"parent domain of them): the go command would then bypass the gate.")
	if len(e.Dropped) > 0 {
		s.comment("Left out, because they match a host the gate intercepts: " + strings.Join(e.Dropped, ","))
	}
}

// renderPowerShell writes the settings for PowerShell: $env: for this
// session, and with --persist [Environment]::SetEnvironmentVariable.
func renderPowerShell(s *script, e clientEnv) {
	s.rem = "#"
	q := quotePS
	scope := "User"
	if e.Machine {
		scope = "Machine"
	}
	vars := [][2]string{{"HTTPS_PROXY", e.Proxy}, {"NO_PROXY", e.NoProxy}, {"GOSUMDB", e.GOSUMDB}}
	if e.Persist {
		s.comment("modgate client environment for PowerShell, kept for new processes. Run it once.",
			"[Environment]::SetEnvironmentVariable stores each variable for "+psScopeText(e.Machine)+";",
			"programs started afterwards see it (open a new terminal). The $env: lines set this session.")
		writeNoProxyNote(s, e)
		for _, kv := range vars {
			s.line("[Environment]::SetEnvironmentVariable(%s, %s, %s)", q(kv[0]), q(kv[1]), q(scope))
			s.line("$env:%s = %s", kv[0], q(kv[1]))
		}
		writePSProfileNotes(s, e)
	} else {
		s.comment("modgate client environment for PowerShell. Load it into this session:",
			"  modgate client-env --shell powershell ... | Out-String | Invoke-Expression",
			"--persist prints lines that keep the settings for new sessions.")
		writeNoProxyNote(s, e)
		for _, kv := range vars {
			s.line("$env:%s = %s", kv[0], q(kv[1]))
		}
	}
	s.comment("", "Once: trust the gate's CA. On Windows the go command uses the certificate store",
		"(SSL_CERT_FILE is ignored). Copy <data-dir>/ca.pem from the gate, or fetch it:",
		"  Invoke-WebRequest -UseBasicParsing -Uri "+q(e.CAURL)+" -OutFile "+q(e.CAFile),
		"  Import-Certificate -FilePath "+q(e.CAFile)+` -CertStoreLocation Cert:\CurrentUser\Root`,
		`For every user of the machine, from an elevated shell: -CertStoreLocation Cert:\LocalMachine\Root`,
		"PowerShell on Linux: $env:SSL_CERT_FILE = "+q(e.CAFile)+"; on macOS:",
		"  sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain "+q(e.CAFile))
	s.comment(
		"",
		"Once, after switching GOSUMDB keys: a note cached under another key named "+e.DBName,
		"fails with \"note has no verifiable signatures\". Delete the cached notes:",
		"  Remove-Item -Force -ErrorAction SilentlyContinue -LiteralPath (Join-Path ((go env GOPATH) -split [IO.Path]::PathSeparator)[0] 'pkg/sumdb/"+e.DBName+"/latest')",
		"  Remove-Item -Recurse -Force -ErrorAction SilentlyContinue -LiteralPath (Join-Path (go env GOMODCACHE) 'cache/download/sumdb/"+e.DBName+"/lookup')",
	)
	if !e.Persist {
		s.comment("", "Check what the go command sees: go env GOSUMDB; check the whole setup: modgate doctor")
	}
}

func psScopeText(machine bool) string {
	if machine {
		return `every user of the machine (HKLM\...\Session Manager\Environment; needs an elevated shell)`
	}
	return `the current user (HKCU\Environment)`
}

// writePSProfileNotes explains what can override the persisted variables.
func writePSProfileNotes(s *script, e clientEnv) {
	s.comment(
		"",
		"What can override these values:",
		"- PowerShell profile scripts run at every start, after the environment is read, and a",
		"  line such as $env:GOSUMDB = '...' in one of them wins. They are loaded in this order,",
		"  so the last one wins: $PROFILE.AllUsersAllHosts, $PROFILE.AllUsersCurrentHost,",
		"  $PROFILE.CurrentUserAllHosts, $PROFILE.CurrentUserCurrentHost. To find such lines:",
		"    Select-String -Pattern 'HTTPS_PROXY|NO_PROXY|GOSUMDB' -ErrorAction SilentlyContinue -Path $PROFILE.AllUsersAllHosts, $PROFILE.AllUsersCurrentHost, $PROFILE.CurrentUserAllHosts, $PROFILE.CurrentUserCurrentHost",
	)
	if e.Machine {
		s.comment("- A 'User' variable of the same name outranks a 'Machine' one. Remove it with:",
			"    [Environment]::SetEnvironmentVariable('GOSUMDB', $null, 'User')")
	}
	s.comment("- Settings written by `go env -w` rank below every environment variable.",
		"Check the value the go command actually sees, in a new terminal:",
		"  go env GOSUMDB",
		"  go env GOPROXY GONOSUMDB GOFLAGS",
		"and the whole setup: modgate doctor")
}

// renderCmd writes a batch file for cmd.exe: set for this window, and
// with --persist setx for new ones.
func renderCmd(s *script, e clientEnv) error {
	s.rem = "@rem"
	vars := [][2]string{{"HTTPS_PROXY", e.Proxy}, {"NO_PROXY", e.NoProxy}, {"GOSUMDB", e.GOSUMDB}}
	if e.Persist {
		s.comment("modgate client environment for cmd.exe, kept for new windows. Save it as a .cmd file",
			"and run it once. setx stores each variable for "+psScopeText(e.Machine)+";",
			"windows opened afterwards see it, this one does not, so set repeats each value.",
			"(A batch file doubles %: the values below mean one %.)")
	} else {
		s.comment("modgate client environment for cmd.exe. Save it as a .cmd file and run it in the window:",
			"  modgate client-env --shell cmd ... > modgate-env.cmd && modgate-env.cmd",
			"(A batch file doubles %: the values below mean one %.) --persist prints setx lines.")
	}
	writeNoProxyNote(s, e)
	for _, kv := range vars {
		v, err := cmdValue(kv[1])
		if err != nil {
			return err
		}
		if e.Persist {
			a, _ := setxArg(kv[1])
			m := ""
			if e.Machine {
				m = " /M"
			}
			s.line("@setx %s %s%s >nul", kv[0], a, m)
		}
		s.line(`@set "%s=%s"`, kv[0], v)
	}
	s.comment("", "Once: trust the gate's CA (the go command uses the Windows certificate store).",
		"Copy <data-dir>/ca.pem from the gate, or fetch it:",
		`  curl.exe -fsS -o "`+e.CAFile+`" "`+e.CAURL+`"`,
		`  certutil -user -addstore Root "`+e.CAFile+`"`,
		`For every user of the machine, from an elevated prompt: certutil -addstore Root "`+e.CAFile+`"`)
	s.comment("", "Once, after switching GOSUMDB keys: a note cached under another key named "+e.DBName,
		`fails with "note has no verifiable signatures". Delete the cached notes (at the prompt, write %G for %%G):`,
		`  for /f "delims=;" %%G in ('go env GOPATH') do del /f /q "%%G\pkg\sumdb\`+e.DBName+`\latest"`,
		`  for /f "delims=" %%G in ('go env GOMODCACHE') do rmdir /s /q "%%G\cache\download\sumdb\`+e.DBName+`\lookup"`)
	s.comment("", "Check what the go command sees: go env GOSUMDB; check the whole setup: modgate doctor")
	return nil
}

// renderDockerfile writes the lines of a Dockerfile build stage that runs
// the go command through the gate.
func renderDockerfile(s *script, e clientEnv) {
	s.rem = "#"
	s.comment("modgate: Go module downloads of this build go through the gate.",
		"Paste these lines into the build stage that runs the go command, after its FROM.",
		"Put the gate's CA certificate into the build context as modgate-ca.pem: copy",
		"<data-dir>/ca.pem from the gate, or fetch it:",
		"  curl -fsS -o modgate-ca.pem "+quoteSh(e.CAURL),
		"Build with the proxy as build arguments:",
		"  docker build --build-arg HTTPS_PROXY="+quoteSh(e.Proxy)+" --build-arg NO_PROXY="+quoteSh(e.NoProxy)+" .",
		"HTTPS_PROXY and NO_PROXY are build arguments Docker predefines: RUN steps see them, and",
		"the built image does not keep them (a container of it does not use the gate).")
	writeNoProxyNote(s, e)
	s.line("ARG HTTPS_PROXY")
	s.line("ARG NO_PROXY")
	s.comment("The CA goes into the image's trust store, which the go command reads on Linux.")
	s.line("COPY modgate-ca.pem /usr/local/share/ca-certificates/modgate.crt")
	s.comment("Debian and Ubuntu images (golang:1.26) have update-ca-certificates. On Alpine",
		"(golang:1.26-alpine) install it first: RUN apk add --no-cache ca-certificates && update-ca-certificates")
	s.line("RUN update-ca-certificates")
	s.comment("The enterprise verifier: go accepts only checksum-database notes the gate co-signed.")
	s.line("ENV GOSUMDB=%s", quoteDockerfile(e.GOSUMDB))
	s.comment(
		"A fresh build caches no notes. A module cache kept across builds (RUN --mount=type=cache)",
		"keeps notes cached under another key named "+e.DBName+"; after switching keys, once:",
		"  RUN --mount=type=cache,target=/go/pkg/mod rm -rf \"$(go env GOPATH)/pkg/sumdb/"+e.DBName+"/latest\" \"$(go env GOMODCACHE)/cache/download/sumdb/"+e.DBName+"/lookup\"",
	)
}
