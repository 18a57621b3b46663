package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// deployDir holds the deployment files, checked here so that CI runs the checks.
var deployDir = filepath.Join("..", "..", "deploy")

// dig walks a decoded YAML tree along keys (map keys, or list indexes as ints).
func dig(t *testing.T, v any, keys ...any) any {
	t.Helper()
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("at %q: not a map: %v", k, v)
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				t.Fatalf("at [%d]: not a list that long: %v", k, v)
			}
			v = l[k]
		}
	}
	return v
}

func TestDeployCompose(t *testing.T) {
	path := filepath.Join(deployDir, "docker-compose.yml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	gate := dig(t, doc, "services", "modgate")
	for _, tc := range []struct {
		what string
		got  any
		want string
	}{
		{"modgate volume", dig(t, gate, "volumes"), "modgate-data:/var/lib/modgate"},
		{"modgate ports", dig(t, gate, "ports"), "3128:3128"},
		{"modgate admin port", dig(t, gate, "ports"), "3129:3129"},
		{"modgate healthcheck", dig(t, gate, "healthcheck", "test"), "/modgate healthcheck"},
		{"modgate build", dig(t, gate, "build", "context"), ".."},
		{"named volume", dig(t, doc, "volumes"), "modgate-data"},
		{"build HTTPS_PROXY", dig(t, doc, "services", "build", "environment", "HTTPS_PROXY"), "http://modgate:3128"},
		{"build waits for a healthy gate", dig(t, doc, "services", "build", "depends_on", "modgate", "condition"), "service_healthy"},
		{"build fetches the CA", dig(t, doc, "services", "build", "command"), "http://modgate:3129/ca.pem"},
		{"build pins GOSUMDB", dig(t, doc, "services", "build", "command"), `GOSUMDB="$$(curl -fsS http://modgate:3129/verifier.txt)"`},
		{"build downloads", dig(t, doc, "services", "build", "command"), "go mod download"},
		{"build network is internal", dig(t, doc, "networks", "builds", "internal"), "true"},
	} {
		if got := fmt.Sprint(tc.got); !strings.Contains(got, tc.want) {
			t.Errorf("%s: %s lacks %q", tc.what, got, tc.want)
		}
	}
	noProxy := fmt.Sprint(dig(t, doc, "services", "build", "environment", "NO_PROXY"))
	if kept, dropped := filterNoProxy(noProxy, []string{"proxy.golang.org", "sum.golang.org"}); len(dropped) > 0 || len(kept) == 0 {
		t.Errorf("build NO_PROXY=%q: keeps %v, sends %v around the gate", noProxy, kept, dropped)
	}
	composeConfig(t, path)
}

// composeConfig validates the file with docker compose or docker-compose
// when one is installed (no Docker engine is needed for that); with
// CI=true one must be.
func composeConfig(t *testing.T, path string) {
	for _, argv := range [][]string{{"docker", "compose"}, {"docker-compose"}} {
		if _, err := exec.LookPath(argv[0]); err != nil {
			continue
		}
		if argv[0] == "docker" && exec.Command("docker", "compose", "version").Run() != nil {
			continue
		}
		out, err := exec.Command(argv[0], append(argv[1:], "-p", "modgate", "-f", path, "config", "-q")...).CombinedOutput()
		if err != nil {
			t.Errorf("%s config: %v\n%s", strings.Join(argv, " "), err, out)
		}
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("CI=true: neither docker compose nor docker-compose is installed (.ci/run installs docker-compose)")
	}
	t.Log("neither docker compose nor docker-compose is installed: only the YAML checks ran")
}

// unitFile parses a systemd unit into section -> key -> values.
func unitFile(t *testing.T, r io.Reader) map[string]map[string][]string {
	t.Helper()
	u := map[string]map[string][]string{}
	section := ""
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("unit line %q: want key=value inside a section", line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

func TestDeploySystemdUnit(t *testing.T) {
	path := filepath.Join(deployDir, "modgate.service")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	svc := unitFile(t, bytes.NewReader(b))["Service"]
	for key, want := range map[string]string{
		"ExecStart": "/usr/local/bin/modgate serve --data-dir /var/lib/modgate", "DynamicUser": "yes", "StateDirectory": "modgate",
		"ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes", "NoNewPrivileges": "yes", "CapabilityBoundingSet": "",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "MemoryDenyWriteExecute": "yes", "SystemCallFilter": "@system-service",
		"UMask": "0077", "Environment": "MODGATE_LISTEN=0.0.0.0:3128",
	} {
		if !slices.Contains(svc[key], want) {
			t.Errorf("[Service] %s=%q, want a line %s=%s", key, svc[key], key, want)
		}
	}
	systemdVerify(t, b)
}

// systemdVerify runs systemd-analyze verify, when installed, on a copy of
// the unit whose ExecStart names the binary built for these tests.
func systemdVerify(t *testing.T, unit []byte) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Log("systemd-analyze is not installed: only the unit's keys were checked")
		return
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "modgate.service")
	if err := os.WriteFile(path, bytes.ReplaceAll(unit, []byte("/usr/local/bin/modgate"), []byte(binary)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", path).CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	// Other units of the host may draw warnings; only this unit's count.
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "modgate.service") {
			t.Errorf("systemd-analyze verify: %s", l)
		}
	}
	if err != nil && !strings.Contains(string(out), "modgate.service") {
		t.Logf("systemd-analyze verify exited %v for other units:\n%s", err, out)
	}
}

func TestDeployKubernetes(t *testing.T) {
	path := filepath.Join(deployDir, "kubernetes-single.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	docs := map[string]map[string]any{}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var d map[string]any
		if err := dec.Decode(&d); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		kind := fmt.Sprint(d["kind"])
		if d["apiVersion"] == nil || dig(t, d, "metadata", "name") == nil {
			t.Errorf("%s document lacks apiVersion or metadata.name", kind)
		}
		docs[kind] = d
	}
	for _, kind := range []string{"Secret", "PersistentVolumeClaim", "Deployment", "Service"} {
		if docs[kind] == nil {
			t.Fatalf("%s has no %s", path, kind)
		}
	}
	pod := dig(t, docs["Deployment"], "spec", "template", "spec")
	c := dig(t, pod, "containers", 0)
	init := dig(t, pod, "initContainers", 0)
	for _, tc := range []struct {
		what string
		got  any
		want string
	}{
		{"liveness path", dig(t, c, "livenessProbe", "httpGet", "path"), "/healthz"},
		{"liveness port", dig(t, c, "livenessProbe", "httpGet", "port"), "admin"},
		{"readiness path", dig(t, c, "readinessProbe", "httpGet", "path"), "/readyz"},
		{"readiness port", dig(t, c, "readinessProbe", "httpGet", "port"), "admin"},
		{"ports", dig(t, c, "ports"), "containerPort:3128"},
		{"admin port", dig(t, c, "ports"), "containerPort:3129 name:admin"},
		{"admin listen", dig(t, c, "env"), "MODGATE_ADMIN_LISTEN value:0.0.0.0:3129"},
		{"data dir", dig(t, c, "env"), "MODGATE_DATA_DIR value:/var/lib/modgate/data"},
		{"runAsNonRoot", dig(t, pod, "securityContext", "runAsNonRoot"), "true"},
		{"fsGroup", dig(t, pod, "securityContext", "fsGroup"), "65532"},
		{"readOnlyRootFilesystem", dig(t, c, "securityContext", "readOnlyRootFilesystem"), "true"},
		{"no privilege escalation", dig(t, c, "securityContext", "allowPrivilegeEscalation"), "false"},
		{"init copies secrets 0600", dig(t, init, "command"), `install -m 0600 "/keys/$f" "/var/lib/modgate/data/$f"`},
		{"init names every secret", dig(t, init, "command"), "ca-key.pem note.key admin.token"},
		{"init names the public files", dig(t, init, "command"), "ca.pem note.pub"},
		{"secret volume", dig(t, pod, "volumes"), "secretName:modgate-keys"},
		{"secret mode", dig(t, pod, "volumes"), "defaultMode:288"}, // 0440
		{"pvc volume", dig(t, pod, "volumes"), "claimName:modgate-data"},
		{"single writer", dig(t, docs["Deployment"], "spec", "strategy", "type"), "Recreate"},
		{"service proxy port", dig(t, docs["Service"], "spec", "ports"), "port:3128"},
		{"service admin port", dig(t, docs["Service"], "spec", "ports"), "port:3129"},
	} {
		if got := fmt.Sprint(tc.got); !strings.Contains(got, tc.want) {
			t.Errorf("%s: %s lacks %q", tc.what, got, tc.want)
		}
	}
	if !strings.Contains(fmt.Sprint(dig(t, c, "volumeMounts")), "mountPath:/var/lib/modgate") || strings.Contains(fmt.Sprint(dig(t, c, "volumeMounts")), "keys") {
		t.Errorf("modgate's mounts: want the PVC at /var/lib/modgate and no Secret: %v", dig(t, c, "volumeMounts"))
	}
}

func TestDockerfileHealthcheck(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(`HEALTHCHECK `)) || !bytes.Contains(b, []byte(`CMD ["/modgate", "healthcheck"]`)) {
		t.Errorf("the Dockerfile has no HEALTHCHECK running /modgate healthcheck")
	}
}
