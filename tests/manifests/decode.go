package manifests

import (
	"fmt"

	cbtv1beta1 "github.com/kubernetes-csi/external-snapshot-metadata/client/apis/snapshotmetadataservice/v1beta1"
	groupsnapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumegroupsnapshot/v1"
	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
)

// Object is a decoded object of a rendered manifest.
type Object struct {
	Source string
	GVK    schema.GroupVersionKind
	Obj    runtime.Object
}

// Key identifies an object: kind, namespace and name.
type Key struct{ Kind, Namespace, Name string }

func (k Key) String() string {
	if k.Namespace == "" {
		return k.Kind + "/" + k.Name
	}
	return k.Kind + "/" + k.Namespace + "/" + k.Name
}

// Key returns the object's key.
func (o Object) Key() Key {
	m, err := meta.Accessor(o.Obj)
	if err != nil {
		panic(err) // every registered kind has ObjectMeta
	}
	return Key{o.GVK.Kind, m.GetNamespace(), m.GetName()}
}

// scheme holds exactly the kinds the manifests may contain: anything else fails to decode.
var scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(corev1.AddToScheme(scheme))
	utilruntime.Must(appsv1.AddToScheme(scheme))
	utilruntime.Must(rbacv1.AddToScheme(scheme))
	utilruntime.Must(storagev1.AddToScheme(scheme))
	utilruntime.Must(snapshotv1.AddToScheme(scheme))
	utilruntime.Must(groupsnapshotv1.AddToScheme(scheme))
	// The external-snapshot-metadata sidecar's SnapshotMetadataService (cbt.storage.k8s.io).
	utilruntime.Must(cbtv1beta1.AddToScheme(scheme))
}

// strict decodes YAML or JSON into the registered Go types, failing on unknown fields,
// duplicate fields and fields spelled in the wrong case (the same strictness as the API
// server's fieldValidation=Strict).
var strict = serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()

// Decode decodes one document strictly.
func Decode(d Doc) (Object, error) {
	obj, gvk, err := strict.Decode(d.YAML, nil, nil)
	if err != nil {
		return Object{}, fmt.Errorf("%s: %w\n%s", d.Source, err, d.YAML)
	}
	return Object{Source: d.Source, GVK: *gvk, Obj: obj}, nil
}

// DecodeAll decodes every document; all errors are reported.
func DecodeAll(docs []Doc) ([]Object, []error) {
	var objs []Object
	var errs []error
	for _, d := range docs {
		o, err := Decode(d)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		objs = append(objs, o)
	}
	return objs, errs
}
