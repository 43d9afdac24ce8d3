package manifests_test

import (
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
	for _, valuesFile := range []string{"", path(manifests.ChartExample)} {
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
