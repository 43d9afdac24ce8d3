package manifests_test

import (
	"bytes"
	"encoding/json"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/nvmeof-csi/nvmeof-csi/tests/manifests"
)

const driverName = "nvmeof.csi.io"

func TestDecodingIsStrict(t *testing.T) {
	for name, doc := range map[string]string{
		"unknown field":     "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndatta: {}\n",
		"misspelled nested": "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: a}\nspec:\n  template:\n    spec:\n      containers:\n      - name: c\n        securityContext: {priviledged: true}\n",
		"wrong case":        "apiVersion: v1\nkind: ConfigMap\nmetadata: {Name: a}\n",
		"duplicate field":   "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {}\ndata: {}\n",
		"unknown kind":      "apiVersion: v1\nkind: ConfigMapp\nmetadata: {name: a}\n",
		"wrong type":        "apiVersion: storage.k8s.io/v1\nkind: CSIDriver\nmetadata: {name: a}\nspec: {attachRequired: \"yes\"}\n",
	} {
		if _, err := manifests.Decode(manifests.Doc{Source: name, YAML: []byte(doc)}); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
	if _, err := manifests.Decode(manifests.Doc{YAML: []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {k: v}\n")}); err != nil {
		t.Errorf("a valid ConfigMap: %v", err)
	}
}

func TestEveryRenderingDecodesStrictly(t *testing.T) {
	for _, r := range renderings {
		t.Run(r.name, func(t *testing.T) {
			s := render(t, r)
			seen := map[manifests.Key]bool{}
			for _, o := range s.objs {
				if seen[o.Key()] {
					t.Errorf("%s rendered twice", o.Key())
				}
				seen[o.Key()] = true
			}
			t.Logf("%d objects", len(s.objs))
		})
	}
}

// Helm adds these to every object's labels; the kustomize objects do not have them.
var helmLabels = []string{"helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance", "app.kubernetes.io/version"}

func TestKustomizeAndHelmAgree(t *testing.T) {
	for _, pair := range []struct{ kustomize, helm rendering }{
		{renderings[0], renderings[2]},
		{renderings[1], renderings[3]},
	} {
		t.Run(pair.kustomize.name+" = "+pair.helm.name, func(t *testing.T) {
			k, h := render(t, pair.kustomize), render(t, pair.helm)
			var keys []manifests.Key
			for key := range k.byKey {
				if key.Kind == "Namespace" {
					continue // kustomize creates the namespace; helm install --create-namespace does
				}
				keys = append(keys, key)
				if _, ok := h.byKey[key]; !ok {
					t.Errorf("%s: rendered by kustomize only", key)
				}
			}
			for key := range h.byKey {
				if _, ok := k.byKey[key]; !ok {
					t.Errorf("%s: rendered by helm only", key)
				}
			}
			sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
			for _, key := range keys {
				ho, ok := h.byKey[key]
				if !ok {
					continue
				}
				ku, hu := normalize(t, k.byKey[key].Obj), normalize(t, ho.Obj)
				if d := cmp.Diff(ku, hu); d != "" {
					t.Errorf("%s differs (-kustomize +helm):\n%s", key, d)
				}
			}
		})
	}
}

// normalize turns an object into a map without what legitimately differs between the two
// renderings: Helm's bookkeeping labels, its checksum/ annotations on pod templates, and the
// formatting of YAML documents in ConfigMaps.
func normalize(t *testing.T, obj runtime.Object) map[string]any {
	t.Helper()
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	if md, ok := u["metadata"].(map[string]any); ok {
		if labels, ok := md["labels"].(map[string]any); ok {
			for _, l := range helmLabels {
				delete(labels, l)
			}
			if len(labels) == 0 {
				delete(md, "labels")
			}
		}
	}
	if spec, ok := u["spec"].(map[string]any); ok {
		if tmpl, ok := spec["template"].(map[string]any); ok {
			if md, ok := tmpl["metadata"].(map[string]any); ok {
				if ann, ok := md["annotations"].(map[string]any); ok {
					for k := range ann {
						if strings.HasPrefix(k, "checksum/") {
							delete(ann, k)
						}
					}
					if len(ann) == 0 {
						delete(md, "annotations")
					}
				}
			}
		}
	}
	if u["kind"] == nil {
		u["kind"] = obj.GetObjectKind().GroupVersionKind().Kind
	}
	if data, ok := u["data"].(map[string]any); ok && obj.GetObjectKind().GroupVersionKind().Kind == "ConfigMap" {
		for k, v := range data {
			data[k] = canonicalYAML(t, v.(string))
		}
	}
	return u
}

// canonicalYAML parses a YAML document into plain values, so that two spellings of the same
// document compare equal.
func canonicalYAML(t *testing.T, doc string) any {
	t.Helper()
	j, err := yaml.YAMLToJSON([]byte(doc))
	if err != nil {
		t.Fatalf("ConfigMap value is not YAML: %v\n%s", err, doc)
	}
	var v any
	if err := json.Unmarshal(j, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestGeneratedImagesAreUpToDate(t *testing.T) {
	p, want, err := manifests.GenerateKustomization(root)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is stale: its images block must be generated from the Helm chart; run\n\tcd tests/manifests && go run ./cmd/gen-images\n%s",
			p, cmp.Diff(string(got), string(want)))
	}
}

func TestImagesArePinned(t *testing.T) {
	for _, r := range renderings {
		s := render(t, r)
		for _, w := range s.workloads() {
			for _, c := range append(w.pod.Spec.InitContainers, w.pod.Spec.Containers...) {
				switch tg := tag(c.Image); {
				case strings.Contains(c.Image, "@sha256:"):
				case tg == "" || tg == "latest":
					t.Errorf("%s: %s container %s: image %q is not pinned to a version", r.name, w.key, c.Name, c.Image)
				}
			}
		}
	}
	// The base and the Helm defaults run the pinned versions themselves.
	images, err := manifests.ChartImages(path(manifests.Chart))
	if err != nil {
		t.Fatal(err)
	}
	pinned := map[string]string{}
	for _, im := range images {
		pinned[im.Repository] = im.Tag
	}
	for _, r := range []rendering{renderings[0], renderings[2]} {
		for _, w := range render(t, r).workloads() {
			for _, c := range w.pod.Spec.Containers {
				if want, ok := pinned[repository(c.Image)]; !ok || tag(c.Image) != want {
					t.Errorf("%s: %s container %s runs %s; the chart pins %s:%s", r.name, w.key, c.Name, c.Image, repository(c.Image), want)
				}
			}
		}
	}
}

func TestCSIDriver(t *testing.T) {
	for _, r := range renderings {
		s := render(t, r)
		var drivers []*storagev1.CSIDriver
		for _, o := range s.objs {
			if d, ok := o.Obj.(*storagev1.CSIDriver); ok {
				drivers = append(drivers, d)
			}
		}
		if len(drivers) != 1 || drivers[0].Name != driverName {
			t.Errorf("%s: want exactly one CSIDriver %s, got %d", r.name, driverName, len(drivers))
			continue
		}
		spec := drivers[0].Spec
		is := func(b *bool, want bool) bool { return b != nil && *b == want }
		if !is(spec.AttachRequired, true) || !is(spec.PodInfoOnMount, false) || !is(spec.StorageCapacity, true) || !is(spec.RequiresRepublish, false) {
			t.Errorf("%s: CSIDriver: want attachRequired (fencing), storageCapacity, no podInfoOnMount, no requiresRepublish: %+v", r.name, spec)
		}
		if spec.FSGroupPolicy == nil || *spec.FSGroupPolicy != storagev1.FileFSGroupPolicy {
			t.Errorf("%s: CSIDriver: fsGroupPolicy %v, want File", r.name, spec.FSGroupPolicy)
		}
		if len(spec.VolumeLifecycleModes) != 1 || spec.VolumeLifecycleModes[0] != storagev1.VolumeLifecyclePersistent {
			t.Errorf("%s: CSIDriver: volumeLifecycleModes %v, want [Persistent]", r.name, spec.VolumeLifecycleModes)
		}
	}
}
