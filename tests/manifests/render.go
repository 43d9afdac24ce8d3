package manifests

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// Doc is one rendered YAML document and where it came from.
type Doc struct {
	Source string // the kustomization directory or the chart template
	YAML   []byte
}

// Kustomize builds a kustomization directory as `kustomize build` does.
func Kustomize(dir string) ([]Doc, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	var docs []Doc
	for _, r := range m.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			return nil, fmt.Errorf("kustomize build %s: %s: %w", dir, r.CurId(), err)
		}
		docs = append(docs, Doc{Source: dir, YAML: y})
	}
	return docs, nil
}

// ReleaseName and Namespace are what the Helm chart is rendered as.
const (
	ReleaseName = "nvmeof-csi"
	Namespace   = "nvmeof-csi"
)

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// Helm renders a chart as `helm template --namespace nvmeof-csi nvmeof-csi <chart> -f
// <valuesFile>` would (valuesFile may be empty), with the engine in strict mode: a template
// reading a value that does not exist is an error, not an empty string. The values are
// validated against the chart's values.schema.json, if it has one.
func Helm(chartDir, valuesFile string) ([]Doc, error) {
	chrt, err := loader.Load(chartDir)
	if err != nil {
		return nil, err
	}
	vals := chartutil.Values{}
	if valuesFile != "" {
		if vals, err = chartutil.ReadValuesFile(valuesFile); err != nil {
			return nil, err
		}
	}
	opts := chartutil.ReleaseOptions{Name: ReleaseName, Namespace: Namespace, Revision: 1, IsInstall: true}
	top, err := chartutil.ToRenderValues(chrt, vals, opts, chartutil.DefaultCapabilities)
	if err != nil {
		return nil, fmt.Errorf("helm values: %w", err)
	}
	out, err := engine.Engine{Strict: true}.Render(chrt, top)
	if err != nil {
		return nil, fmt.Errorf("helm template: %w", err)
	}
	names := make([]string, 0, len(out))
	for name := range out {
		names = append(names, name)
	}
	sort.Strings(names)
	var docs []Doc
	for _, name := range names {
		if !strings.HasSuffix(name, ".yaml") {
			continue // NOTES.txt, _helpers.tpl
		}
		for _, d := range docSeparator.Split(out[name], -1) {
			if isBlank(d) {
				continue
			}
			docs = append(docs, Doc{Source: name, YAML: []byte(d)})
		}
	}
	return docs, nil
}

// isBlank reports whether a YAML document holds only comments and white space.
func isBlank(doc string) bool {
	for _, line := range strings.Split(doc, "\n") {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
			return false
		}
	}
	return true
}
