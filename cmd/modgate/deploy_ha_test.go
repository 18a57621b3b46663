package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// yamlDocs decodes the documents of a multi-document YAML file by kind.
func yamlDocs(t *testing.T, path string) map[string][]map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	docs := map[string][]map[string]any{}
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
		docs[kind] = append(docs[kind], d)
	}
	return docs
}

// TestDeployKubernetesHA checks the structure of deploy/kubernetes.yaml
// (kubectl is not needed): three replicas rolled one at a time, a
// PodDisruptionBudget, the database URL from a Secret, readiness from
// /readyz, the shared keys copied with mode 0600, a first level per pod.
func TestDeployKubernetesHA(t *testing.T) {
	path := filepath.Join(deployDir, "kubernetes.yaml")
	docs := yamlDocs(t, path)
	for _, kind := range []string{"Secret", "Deployment", "PodDisruptionBudget", "Service"} {
		if len(docs[kind]) == 0 {
			t.Fatalf("%s has no %s", path, kind)
		}
	}
	dep, pdb := docs["Deployment"][0], docs["PodDisruptionBudget"][0]
	pod := dig(t, dep, "spec", "template", "spec")
	c := dig(t, pod, "containers", 0)
	var secrets []string
	for _, s := range docs["Secret"] {
		secrets = append(secrets, fmt.Sprint(dig(t, s, "metadata", "name")))
	}
	for _, tc := range []struct {
		what string
		got  any
		want string
	}{
		{"replicas", dig(t, dep, "spec", "replicas"), "3"},
		{"rolling update", dig(t, dep, "spec", "strategy", "type"), "RollingUpdate"},
		{"one pod at a time", dig(t, dep, "spec", "strategy", "rollingUpdate", "maxUnavailable"), "1"},
		{"pdb api", pdb["apiVersion"], "policy/v1"},
		{"pdb keeps two", dig(t, pdb, "spec", "minAvailable"), "2"},
		{"pdb selects the gates", dig(t, pdb, "spec", "selector", "matchLabels"), "app.kubernetes.io/name:modgate"},
		{"pod labels", dig(t, dep, "spec", "template", "metadata", "labels"), "app.kubernetes.io/name:modgate"},
		{"database URL from a Secret", dig(t, c, "env"),
			"name:MODGATE_CLUSTER_DB valueFrom:map[secretKeyRef:map[key:url name:modgate-db]]"},
		{"db secret", secrets, "modgate-db"},
		{"keys secret", secrets, "modgate-keys"},
		{"readiness path", dig(t, c, "readinessProbe", "httpGet", "path"), "/readyz"},
		{"readiness port", dig(t, c, "readinessProbe", "httpGet", "port"), "admin"},
		{"liveness path", dig(t, c, "livenessProbe", "httpGet", "path"), "/healthz"},
		{"init copies secrets 0600", dig(t, pod, "initContainers", 0, "command"), `install -m 0600 "/keys/$f"`},
		{"first level per pod", dig(t, pod, "volumes"), "name:data"},
		{"runAsNonRoot", dig(t, pod, "securityContext", "runAsNonRoot"), "true"},
		{"service proxy port", dig(t, docs["Service"][0], "spec", "ports"), "port:3128"},
	} {
		if got := fmt.Sprint(tc.got); !strings.Contains(got, tc.want) {
			t.Errorf("%s: %s lacks %q", tc.what, got, tc.want)
		}
	}
	if vols := fmt.Sprint(dig(t, pod, "volumes")); strings.Contains(vols, "persistentVolumeClaim") {
		t.Errorf("replicas share a PersistentVolumeClaim (one Badger per process): %s", vols)
	}
	if env := fmt.Sprint(dig(t, c, "env")); strings.Contains(env, "postgres://") {
		t.Errorf("the database URL is written in the Deployment, not read from the Secret: %s", env)
	}
}

// TestDeployComposeHA checks deploy/docker-compose.ha.yml: PostgreSQL, two
// gates on one database with a password file and their own data volumes,
// HAProxy in TCP mode, and a build whose only network holds the balancer.
func TestDeployComposeHA(t *testing.T) {
	path := filepath.Join(deployDir, "docker-compose.ha.yml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	services := dig(t, doc, "services").(map[string]any)
	for _, tc := range []struct {
		what string
		got  any
		want string
	}{
		{"postgres", dig(t, services, "postgres", "image"), "postgres"},
		{"balancer", dig(t, services, "balancer", "image"), "haproxy"},
		{"balancer config", dig(t, services, "balancer", "volumes"), "haproxy.cfg"},
		{"gate1 database", dig(t, services, "gate1", "environment", "MODGATE_CLUSTER_DB"), "postgres://modgate@postgres"},
		{"gate2 database", dig(t, services, "gate2", "environment", "MODGATE_CLUSTER_DB"), "postgres://modgate@postgres"},
		{"password file", dig(t, services, "gate2", "environment", "MODGATE_CLUSTER_DB_PASSWORD_FILE"), "/run/secrets/"},
		{"gate1 own data", dig(t, services, "gate1", "volumes"), "gate1-data:/var/lib/modgate"},
		{"gate2 own data", dig(t, services, "gate2", "volumes"), "gate2-data:/var/lib/modgate"},
		{"build network", dig(t, services, "build", "networks"), "[builds]"},
		{"build proxy", dig(t, services, "build", "environment", "HTTPS_PROXY"), "http://modgate:3128"},
		{"balancer named modgate on the builds network",
			dig(t, services, "balancer", "networks", "builds", "aliases"), "modgate"},
		{"builds network internal", dig(t, doc, "networks", "builds", "internal"), "true"},
		{"backend network internal", dig(t, doc, "networks", "backend", "internal"), "true"},
	} {
		if got := fmt.Sprint(tc.got); !strings.Contains(got, tc.want) {
			t.Errorf("%s: %s lacks %q", tc.what, got, tc.want)
		}
	}
	for name, s := range services {
		if name == "build" || name == "balancer" {
			continue
		}
		if nets := fmt.Sprint(dig(t, s, "networks")); strings.Contains(nets, "builds") {
			t.Errorf("service %s is on the builds network: the build must reach only the balancer", name)
		}
	}
	if strings.Contains(string(b), "POSTGRES_PASSWORD:") || strings.Contains(string(b), ":PASSWORD@") {
		t.Error("a database password is written in the compose file")
	}
	cfg, err := os.ReadFile(filepath.Join(deployDir, "haproxy.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"mode tcp", "bind :3128", "server gate1 gate1:3128", "server gate2 gate2:3128",
		"option httpchk GET /readyz"} {
		if !strings.Contains(string(cfg), want) {
			t.Errorf("haproxy.cfg lacks %q", want)
		}
	}
	composeConfig(t, path)
}
