package manifests_test

import (
	"net"
	"strconv"
	"strings"
	"testing"

	cbtv1beta1 "github.com/kubernetes-csi/external-snapshot-metadata/client/apis/snapshotmetadataservice/v1beta1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Where the external-snapshot-metadata sidecar runs (the e2e overlay's component, the chart with
// snapshotMetadata.enabled), the SnapshotMetadataService object leads backup tools to it: named
// after the driver, an address <service>.<namespace>:<port> of a rendered Service that selects
// the controller pod and forwards to the sidecar's --port, an audience; the sidecar serves
// with a certificate from a Secret volume and runs the pinned version; and where it does not
// run, no such object is rendered.
func TestSnapshotMetadataService(t *testing.T) {
	want, ok := lookup(t, pins(t), "SNAPSHOT_METADATA_VERSION", "the csi-snapshot-metadata containers")
	if !ok {
		return
	}
	for _, r := range renderings {
		s := render(t, r)
		var objs []*cbtv1beta1.SnapshotMetadataService
		for _, o := range s.objs {
			if x, ok := o.Obj.(*cbtv1beta1.SnapshotMetadataService); ok {
				objs = append(objs, x)
			}
		}
		ctl, ok := s.workload("Deployment", "nvmeof-csi-controller")
		if !ok {
			t.Fatalf("%s: no controller Deployment", r.name)
		}
		sidecar := container(ctl.pod, "csi-snapshot-metadata")
		if !r.snapshotMetadata {
			if len(objs) != 0 || sidecar != nil {
				t.Errorf("%s: SnapshotMetadataService objects %d, sidecar %v: want neither", r.name, len(objs), sidecar != nil)
			}
			continue
		}
		if len(objs) != 1 || objs[0].Name != driverName {
			t.Errorf("%s: want one SnapshotMetadataService named %s, got %d", r.name, driverName, len(objs))
			continue
		}
		if sidecar == nil {
			t.Errorf("%s: a SnapshotMetadataService but no csi-snapshot-metadata container", r.name)
			continue
		}
		if tag(sidecar.Image) != want {
			t.Errorf("%s: csi-snapshot-metadata runs %s, but versions.env has SNAPSHOT_METADATA_VERSION=%s", r.name, sidecar.Image, want)
		}
		spec := objs[0].Spec
		if len(spec.CACert) == 0 {
			t.Errorf("%s: SnapshotMetadataService without a caCert: the API server refuses it", r.name)
		}
		if spec.Audience == "" {
			t.Errorf("%s: SnapshotMetadataService without an audience", r.name)
		}
		host, port, err := net.SplitHostPort(spec.Address)
		svcName, svcNS, _ := strings.Cut(host, ".")
		o, found := s.get("Service", svcNS, svcName)
		if err != nil || !found {
			t.Errorf("%s: SnapshotMetadataService address %q is no rendered Service's <name>.<namespace>:<port>", r.name, spec.Address)
			continue
		}
		svc := o.Obj.(*corev1.Service)
		if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(ctl.pod.Labels)) || len(svc.Spec.Selector) == 0 {
			t.Errorf("%s: Service %s selects %v, not the controller pod", r.name, svcName, svc.Spec.Selector)
		}
		grpcPort, _ := flagValue(sidecar.Args, "port")
		var target *corev1.ServicePort
		for i := range svc.Spec.Ports {
			if strconv.Itoa(int(svc.Spec.Ports[i].Port)) == port {
				target = &svc.Spec.Ports[i]
			}
		}
		if target == nil {
			t.Errorf("%s: Service %s has no port %s", r.name, svcName, port)
			continue
		}
		forwarded := target.TargetPort.String()
		for _, p := range sidecar.Ports {
			if p.Name == forwarded {
				forwarded = strconv.Itoa(int(p.ContainerPort))
			}
		}
		if forwarded != grpcPort {
			t.Errorf("%s: Service %s port %s forwards to %s, the sidecar listens on --port=%s", r.name, svcName, port, target.TargetPort.String(), grpcPort)
		}
		cert, _ := flagValue(sidecar.Args, "tls-cert")
		key, _ := flagValue(sidecar.Args, "tls-key")
		onSecret := func(file string) bool {
			for _, m := range sidecar.VolumeMounts {
				if strings.HasPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/") {
					for _, v := range ctl.pod.Spec.Volumes {
						if v.Name == m.Name && v.Secret != nil {
							return true
						}
					}
				}
			}
			return false
		}
		if cert == "" || key == "" || !onSecret(cert) || !onSecret(key) {
			t.Errorf("%s: the sidecar's --tls-cert=%q and --tls-key=%q must be files of a Secret volume", r.name, cert, key)
		}
	}
}
