package proxy

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"

	"github.com/modgate/modgate/policy"
)

// TestDecisionMetricEnforced checks the enforced label of
// modgate_policy_decisions_total: false only for a denial that report
// mode let through.
func TestDecisionMetricEnforced(t *testing.T) {
	tests := []struct {
		name     string
		d        policy.Decision
		enforced string
	}{
		{"allow", policy.Decision{Allowed: true, Action: policy.Allow, Rule: "r"}, "true"},
		{"deny", policy.Decision{Action: policy.Deny, Rule: "r"}, "true"},
		{"would deny", policy.Decision{Allowed: true, WouldDeny: true, Action: policy.Deny, Rule: "r"}, "false"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			g := &Gate{cfg: Config{Metrics: NewMetrics(reg), Now: time.Now}, log: zap.NewNop()}
			g.record(context.Background(), tt.d, "example.com/m@v1.0.0")
			got := decisionLabels(t, reg)
			want := "action=" + string(tt.d.Action) + " enforced=" + tt.enforced + " rule=r"
			if len(got) != 1 || got[0] != want {
				t.Errorf("decisions = %q, want [%q]", got, want)
			}
		})
	}
}

// decisionLabels returns the labels of every modgate_policy_decisions_total
// series with count 1, as "action=... enforced=... rule=...".
func decisionLabels(t *testing.T, reg *prometheus.Registry) []string {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range families {
		if f.GetName() != "modgate_policy_decisions_total" {
			continue
		}
		for _, m := range f.Metric {
			out = append(out, labelsOf(m))
		}
	}
	return out
}

func labelsOf(m *dto.Metric) string {
	var parts []string
	for _, l := range m.Label {
		parts = append(parts, l.GetName()+"="+l.GetValue())
	}
	if m.GetCounter().GetValue() != 1 {
		parts = append(parts, "count!=1")
	}
	return strings.Join(parts, " ")
}
