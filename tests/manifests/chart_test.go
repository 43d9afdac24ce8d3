package manifests_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	"sigs.k8s.io/yaml"

	"github.com/nvmeof-csi/nvmeof-csi/tests/manifests"
)

func TestHelmWithoutAgent(t *testing.T) {
	values := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(values, []byte("agent: {enabled: false}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	docs, err := manifests.Helm(path(manifests.Chart), values)
	if err != nil {
		t.Fatal(err)
	}
	objs, errs := manifests.DecodeAll(docs)
	for _, err := range errs {
		t.Error(err)
	}
	for _, o := range objs {
		if strings.Contains(o.Key().Name, "agent") {
			t.Errorf("agent.enabled=false still renders %s", o.Key())
		}
	}
}

func TestHelmRefusesUnknownValues(t *testing.T) {
	values := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(values, []byte("contoller: {replicas: 2}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := manifests.Helm(path(manifests.Chart), values); err == nil {
		t.Error("a misspelled top-level value rendered without error: values.schema.json should refuse it")
	}
}

// Every value of values.yaml is in the chart README's table: `a.b.c`, or a parent of at
// least two levels (`sidecars.provisioner` covers its repository and tag).
func TestChartReadmeDocumentsEveryValue(t *testing.T) {
	raw, err := os.ReadFile(path(filepath.Join(manifests.Chart, "values.yaml")))
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(raw, &values); err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(path(filepath.Join(manifests.Chart, "README.md")))
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| *`([^`]+)`").FindAllSubmatch(readme, -1) {
		documented[string(m[1])] = true
	}
	var leaves []string
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		if m, ok := v.(map[string]any); ok && len(m) > 0 && prefix != "agent.configs" && !strings.HasSuffix(prefix, "nodeSelector") {
			for k, sub := range m {
				walk(strings.TrimPrefix(prefix+"."+k, "."), sub)
			}
			return
		}
		leaves = append(leaves, prefix)
	}
	walk("", values)
	sort.Strings(leaves)
	for _, leaf := range leaves {
		ok := documented[leaf]
		parts := strings.Split(leaf, ".")
		for i := 2; i < len(parts) && !ok; i++ {
			ok = documented[strings.Join(parts[:i], ".")]
		}
		if !ok {
			t.Errorf("values.yaml: %s is not in the README's table", leaf)
		}
	}
	for key := range documented {
		if !isValue(leaves, key) {
			t.Errorf("README documents %s, which values.yaml does not have", key)
		}
	}
}

func isValue(leaves []string, key string) bool {
	for _, l := range leaves {
		if l == key || strings.HasPrefix(l, key+".") {
			return true
		}
	}
	return false
}

// helm lint: Chart.yaml, values and templates as Helm itself checks them.
func TestHelmLint(t *testing.T) {
	for _, valuesFile := range []string{"", path(manifests.ChartExample), path(manifests.ChartSnapshotMetadata)} {
		vals := map[string]any{}
		if valuesFile != "" {
			v, err := chartutil.ReadValuesFile(valuesFile)
			if err != nil {
				t.Fatal(err)
			}
			vals = v
		}
		l := lint.All(path(manifests.Chart), vals, manifests.Namespace, true)
		for _, m := range l.Messages {
			if m.Severity >= support.WarningSev {
				t.Errorf("helm lint (values %q): %v", valuesFile, m)
			} else {
				t.Logf("helm lint: %v", m)
			}
		}
	}
}

// With serviceMonitor.enabled the chart renders one metrics Service per component, each
// selecting that component's pods by their port named metrics, and one ServiceMonitor that
// selects those Services.
func TestHelmServiceMonitor(t *testing.T) {
	values := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(values, []byte("serviceMonitor: {enabled: true, labels: {release: prometheus}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	docs, err := manifests.Helm(path(manifests.Chart), values)
	if err != nil {
		t.Fatal(err)
	}
	type object struct {
		Kind     string `json:"kind"`
		Metadata struct {
			Name   string            `json:"name"`
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
		Spec struct {
			Selector map[string]any `json:"selector"`
			Ports    []struct {
				Name       string `json:"name"`
				Port       int    `json:"port"`
				TargetPort string `json:"targetPort"`
			} `json:"ports"`
			Endpoints []struct {
				Port string `json:"port"`
			} `json:"endpoints"`
		} `json:"spec"`
	}
	services := map[string]int{}
	monitors := 0
	for _, d := range docs {
		var o object
		if err := yaml.Unmarshal(d.YAML, &o); err != nil {
			t.Fatalf("%s: %v", d.Source, err)
		}
		switch o.Kind {
		case "Service":
			if len(o.Spec.Ports) != 1 || o.Spec.Ports[0].TargetPort != "metrics" || o.Metadata.Labels["nvmeof.csi.io/metrics"] != "true" {
				t.Errorf("Service %s: %+v; want one port targeting the pods' port named metrics, labelled for the ServiceMonitor", o.Metadata.Name, o)
			}
			services[fmt.Sprint(o.Spec.Selector["app.kubernetes.io/component"])] = o.Spec.Ports[0].Port
		case "ServiceMonitor":
			monitors++
			if o.Metadata.Labels["release"] != "prometheus" || len(o.Spec.Endpoints) != 1 || o.Spec.Endpoints[0].Port != "metrics" {
				t.Errorf("ServiceMonitor %s: %+v; want the extra label and the metrics endpoint", o.Metadata.Name, o)
			}
		}
	}
	want := map[string]int{"controller": 9812, "node": 9811, "agent": 9810}
	if monitors != 1 || fmt.Sprint(services) != fmt.Sprint(want) {
		t.Errorf("rendered %d ServiceMonitors and metrics Services %v; want 1 and %v", monitors, services, want)
	}
}
