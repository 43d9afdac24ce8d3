// Package metricstest reads single values out of a Prometheus registry in tests, by selector:
// `name`, `name{label="value",...}`, and for histograms `name_count` and `name_sum`.
package metricstest

import (
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

var selectorRE = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?$`)
var labelRE = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"`)

// Value returns the value of the one series selector names in g (0 when there is none);
// the test fails on a malformed selector or when several series match.
func Value(t testing.TB, g prometheus.Gatherer, selector string) float64 {
	t.Helper()
	m := selectorRE.FindStringSubmatch(selector)
	if m == nil {
		t.Fatalf("malformed selector %q", selector)
	}
	name, want := m[1], map[string]string{}
	for _, l := range labelRE.FindAllStringSubmatch(m[2], -1) {
		want[l[1]] = l[2]
	}
	families, err := g.Gather()
	if err != nil {
		t.Fatalf("gathering: %v", err)
	}
	var found []float64
	for _, f := range families {
		suffix, ok := strings.CutPrefix(name, f.GetName())
		if !ok || (suffix != "" && suffix != "_count" && suffix != "_sum") {
			continue
		}
		for _, s := range f.GetMetric() {
			if matches(s, want) {
				if v, ok := value(f.GetType(), s, suffix); ok {
					found = append(found, v)
				}
			}
		}
	}
	switch len(found) {
	case 0:
		return 0
	case 1:
		return found[0]
	}
	t.Fatalf("selector %q matches %d series", selector, len(found))
	return 0
}

func matches(s *dto.Metric, want map[string]string) bool {
	n := 0
	for _, l := range s.GetLabel() {
		if v, ok := want[l.GetName()]; ok {
			if v != l.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(want)
}

func value(typ dto.MetricType, s *dto.Metric, suffix string) (float64, bool) {
	switch {
	case typ == dto.MetricType_HISTOGRAM && suffix == "_count":
		return float64(s.GetHistogram().GetSampleCount()), true
	case typ == dto.MetricType_HISTOGRAM && suffix == "_sum":
		return s.GetHistogram().GetSampleSum(), true
	case suffix != "":
		return 0, false
	case typ == dto.MetricType_COUNTER:
		return s.GetCounter().GetValue(), true
	case typ == dto.MetricType_GAUGE:
		return s.GetGauge().GetValue(), true
	}
	return 0, false
}
