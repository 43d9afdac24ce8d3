package manifests_test

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
)

// The Grafana dashboard is valid JSON, and every metric its queries read is one the README's
// metrics table documents (so a renamed metric cannot leave a silently empty panel).
func TestGrafanaDashboard(t *testing.T) {
	raw, err := os.ReadFile(path("deploy/grafana/nvmeof-csi.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	readme, err := os.ReadFile(path("README.md"))
	if err != nil {
		t.Fatal(err)
	}
	metric := regexp.MustCompile(`\b(?:csi_plugin|nvmeof)_[a-z_]+`)
	queries := 0
	for _, p := range dash.Panels {
		for _, q := range p.Targets {
			queries++
			names := metric.FindAllString(q.Expr, -1)
			if len(names) == 0 {
				t.Errorf("panel %q: query %q reads no nvmeof-csi metric", p.Title, q.Expr)
			}
			for _, n := range names {
				for _, suffix := range []string{"_bucket", "_count", "_sum"} {
					n = strings.TrimSuffix(n, suffix)
				}
				if !strings.Contains(string(readme), "`"+n) {
					t.Errorf("panel %q reads %s, which README.md's metrics table does not document", p.Title, n)
				}
			}
		}
	}
	if queries == 0 {
		t.Error("the dashboard has no queries")
	}
}
