package manifests_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/nvmeof-csi/nvmeof-csi/tests/manifests"
)

var root string

func TestMain(m *testing.M) {
	var err error
	if root, err = manifests.RepoRoot(); err != nil {
		panic(err)
	}
	os.Exit(m.Run())
}

func path(rel string) string { return filepath.Join(root, rel) }

// A rendering of the manifests.
type rendering struct {
	name   string
	render func() ([]manifests.Doc, error)
	// example: the site configuration of the example is filled in.
	example bool
	// builtin: the plugin registers with the kubelet and serves /healthz itself, in place of
	// the node-driver-registrar and livenessprobe sidecars.
	builtin bool
	// snapshotMetadata: the external-snapshot-metadata sidecar and its objects are in.
	snapshotMetadata bool
}

var renderings = []rendering{
	{"kustomize base", func() ([]manifests.Doc, error) { return manifests.Kustomize(path(manifests.KustomizeBase)) }, false, false, false},
	{"kustomize overlay example", func() ([]manifests.Doc, error) { return manifests.Kustomize(path(manifests.KustomizeExample)) }, true, false, false},
	{"helm defaults", func() ([]manifests.Doc, error) { return manifests.Helm(path(manifests.Chart), "") }, false, false, false},
	{"helm ci/example-values.yaml", func() ([]manifests.Doc, error) {
		return manifests.Helm(path(manifests.Chart), path(manifests.ChartExample))
	}, true, false, false},
	// The test cluster's overlay (make test-k8s): built-in registration and /healthz in place
	// of the two sidecars, its own site configuration, and the snapshot-metadata component.
	{"kustomize overlay e2e", func() ([]manifests.Doc, error) { return manifests.Kustomize(path(manifests.KustomizeE2E)) }, true, true, true},
	{"helm ci/snapshot-metadata-values.yaml", func() ([]manifests.Doc, error) {
		return manifests.Helm(path(manifests.Chart), path(manifests.ChartSnapshotMetadata))
	}, false, false, true},
}

var (
	renderMu    sync.Mutex
	renderCache = map[string]*rendered{}
)

type rendered struct {
	objs []manifests.Object
	err  error
}

// render renders and strictly decodes once per test binary; a failure fails the test.
func render(t *testing.T, r rendering) *set {
	t.Helper()
	renderMu.Lock()
	defer renderMu.Unlock()
	c, ok := renderCache[r.name]
	if !ok {
		c = &rendered{}
		docs, err := r.render()
		if err != nil {
			c.err = err
		} else {
			objs, errs := manifests.DecodeAll(docs)
			c.objs, c.err = objs, errors.Join(errs...)
		}
		renderCache[r.name] = c
	}
	if c.err != nil {
		t.Fatalf("%s: %v", r.name, c.err)
	}
	return newSet(c.objs)
}

// set indexes a rendering's objects.
type set struct {
	objs  []manifests.Object
	byKey map[manifests.Key]manifests.Object
}

func newSet(objs []manifests.Object) *set {
	s := &set{objs: objs, byKey: map[manifests.Key]manifests.Object{}}
	for _, o := range objs {
		s.byKey[o.Key()] = o
	}
	return s
}

func (s *set) get(kind, ns, name string) (manifests.Object, bool) {
	o, ok := s.byKey[manifests.Key{Kind: kind, Namespace: ns, Name: name}]
	return o, ok
}

func (s *set) configMap(ns, name string) *corev1.ConfigMap {
	if o, ok := s.get("ConfigMap", ns, name); ok {
		return o.Obj.(*corev1.ConfigMap)
	}
	return nil
}

// workload is a pod template and what owns it.
type workload struct {
	key manifests.Key
	pod *corev1.PodTemplateSpec
}

func (s *set) workloads() []workload {
	var ws []workload
	for _, o := range s.objs {
		switch w := o.Obj.(type) {
		case *appsv1.Deployment:
			ws = append(ws, workload{o.Key(), &w.Spec.Template})
		case *appsv1.DaemonSet:
			ws = append(ws, workload{o.Key(), &w.Spec.Template})
		case *appsv1.StatefulSet:
			ws = append(ws, workload{o.Key(), &w.Spec.Template})
		}
	}
	return ws
}

func (s *set) workload(kind, name string) (workload, bool) {
	for _, w := range s.workloads() {
		if w.key.Kind == kind && w.key.Name == name {
			return w, true
		}
	}
	return workload{}, false
}

// repository is an image reference without its tag or digest.
func repository(image string) string {
	if i := strings.Index(image, "@"); i >= 0 {
		image = image[:i]
	}
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		image = image[:i]
	}
	return image
}

// tag is an image reference's tag ("" if none).
func tag(image string) string {
	image = strings.SplitN(image, "@", 2)[0]
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		return image[i+1:]
	}
	return ""
}

// flagValue returns the value of --name=value in args.
func flagValue(args []string, name string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

func hasFlag(args []string, name string) bool {
	for _, a := range args {
		if a == "--"+name || strings.HasPrefix(a, "--"+name+"=") {
			return true
		}
	}
	return false
}

// mountOf returns the container's volume mount that holds path (the deepest one) and the
// path relative to it.
func mountOf(c *corev1.Container, p string) (corev1.VolumeMount, string, bool) {
	var best corev1.VolumeMount
	var rel string
	found := false
	for _, m := range c.VolumeMounts {
		mp := strings.TrimSuffix(m.MountPath, "/")
		r, ok := strings.CutPrefix(p, mp+"/")
		if !ok || (found && len(m.MountPath) <= len(best.MountPath)) {
			continue
		}
		best, rel, found = m, r, true
	}
	return best, rel, found
}

func volume(pod *corev1.PodTemplateSpec, name string) (corev1.Volume, bool) {
	for _, v := range pod.Spec.Volumes {
		if v.Name == name {
			return v, true
		}
	}
	return corev1.Volume{}, false
}

func container(pod *corev1.PodTemplateSpec, name string) *corev1.Container {
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == name {
			return &pod.Spec.Containers[i]
		}
	}
	return nil
}

func envFieldRef(c *corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			return e.ValueFrom.FieldRef.FieldPath
		}
	}
	return ""
}
