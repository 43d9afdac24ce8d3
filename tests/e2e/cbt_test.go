//go:build vm

package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	cbt "github.com/kubernetes-csi/external-snapshot-metadata/pkg/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Incremental backup as a backup tool does it with changed-block tracking (KEP-3314): it finds
// the driver's SnapshotMetadataService object, requests a token for the object's audience for
// its own ServiceAccount, and asks the external-snapshot-metadata sidecar, over TLS verified
// with the object's CA, for the allocated blocks of snapshot 1 (the full backup) and for the
// blocks changed between snapshot 1 and snapshot 2 (the incremental). It copies those byte
// ranges out of the snapshots, rebuilds snapshot 2 from the two backups alone, and compares.

const (
	cbtVolumeMiB = 128
	// The application's first writes (MiB offset, MiB length): two extents, holes between.
	cbtChunk = 1 << 20
)

var (
	cbtFirstWrites = [][2]int{{0, 64}, {96, 16}}
	// Then ~10% of the volume's blocks change: 13 scattered MiB, in data and in holes.
	cbtChanges = []int{1, 7, 13, 22, 31, 40, 55, 63, 70, 85, 97, 104, 120}
)

func TestIncrementalBackupThroughTheSidecar(t *testing.T) {
	ctx := testContext(t, 25*time.Minute)
	ns := newNamespace(t, ctx, "cbt")
	backupSA := backupServiceAccount(t, ctx, ns)

	createPVC(t, ctx, ns, claim{name: "vol", storageClass: "nvmeof-tcp", size: fmt.Sprintf("%dMi", cbtVolumeMiB), block: true})
	var write strings.Builder
	write.WriteString("set -e\n")
	for _, w := range cbtFirstWrites {
		fmt.Fprintf(&write, "dd if=/dev/urandom of=/dev/vol bs=1M seek=%d count=%d conv=notrunc,fsync 2>/dev/null\n", w[0], w[1])
	}
	runPod(t, ctx, ns, blockPod("writer-1", []string{"vol"}, []string{"vol"}, write.String()))
	takeSnapshot(t, ctx, ns, "snap-1", "vol")

	write.Reset()
	write.WriteString("set -e\n")
	for _, mib := range cbtChanges {
		fmt.Fprintf(&write, "dd if=/dev/urandom of=/dev/vol bs=1M seek=%d count=1 conv=notrunc,fsync 2>/dev/null\n", mib)
	}
	runPod(t, ctx, ns, blockPod("writer-2", []string{"vol"}, []string{"vol"}, write.String()))
	takeSnapshot(t, ctx, ns, "snap-2", "vol")
	changedBytes := int64(len(cbtChanges)) * cbtChunk

	// The backup tool's side: the SnapshotMetadataService object, a token, a TLS connection.
	client, audience, address := dialSnapshotMetadata(t, ctx)
	tr, err := k8s.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, backupSA, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{audience}, ExpirationSeconds: ptr(int64(600))},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	token := tr.Status.Token

	// A wrong audience is refused: the sidecar checks it, not only the signature.
	other, err := k8s.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, backupSA, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{"not-" + audience}, ExpirationSeconds: ptr(int64(600))},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := allocated(ctx, client, other.Status.Token, ns, "snap-1"); err == nil {
		t.Error("the sidecar answered a token for another audience")
	} else {
		t.Logf("a token for another audience is refused: %v", err)
	}

	start := time.Now()
	full, capacity, msgs, err := allocated(ctx, client, token, ns, "snap-1")
	if err != nil {
		t.Fatalf("GetMetadataAllocated(snap-1) through %s: %v", address, err)
	}
	allocTime := time.Since(start)
	handle1 := snapshotHandle(t, ctx, ns, "snap-1")
	start = time.Now()
	incr, capacity2, msgs2, err := delta(ctx, client, token, ns, handle1, "snap-2")
	if err != nil {
		t.Fatalf("GetMetadataDelta(%s → snap-2) through %s: %v", handle1, address, err)
	}
	deltaTime := time.Since(start)
	if capacity != cbtVolumeMiB*cbtChunk || capacity2 != capacity {
		t.Fatalf("volume capacity %d (allocated) and %d (delta), want %d", capacity, capacity2, cbtVolumeMiB*cbtChunk)
	}
	full, incr = coalesce(full), coalesce(incr)
	fullBytes, incrBytes := total(full), total(incr)
	t.Logf("full backup (allocated blocks of snap-1): %d bytes in %d ranges (%d messages, %s); delta snap-1 → snap-2: %d bytes in %d ranges (%d messages, %s)",
		fullBytes, len(full), msgs, allocTime.Round(time.Millisecond), incrBytes, len(incr), msgs2, deltaTime.Round(time.Millisecond))

	// What the metadata must say, whatever the pool's block size: every written byte is in
	// the full backup, every changed byte in the delta, and the delta is far from the volume.
	var written [][2]int64
	for _, w := range cbtFirstWrites {
		written = append(written, [2]int64{int64(w[0]) * cbtChunk, int64(w[1]) * cbtChunk})
	}
	var changed [][2]int64
	for _, mib := range cbtChanges {
		changed = append(changed, [2]int64{int64(mib) * cbtChunk, cbtChunk})
	}
	if r, ok := covers(full, written); !ok {
		t.Errorf("the allocated blocks of snap-1 miss the written range %v", r)
	}
	if r, ok := covers(incr, changed); !ok {
		t.Errorf("the delta snap-1 → snap-2 misses the changed range %v", r)
	}
	if incrBytes >= capacity/2 {
		t.Errorf("the delta is %d bytes of a %d-byte volume where %d bytes changed: not incremental", incrBytes, capacity, changedBytes)
	}

	// Read the ranges out of the snapshots (each restored to a raw block claim), rebuild both
	// snapshots from the backups alone, and compare with the snapshots over the whole device.
	apiGroup := "snapshot.storage.k8s.io"
	for _, s := range []string{"snap-1", "snap-2"} {
		createPVC(t, ctx, ns, claim{name: "restore-" + s, storageClass: "nvmeof-tcp", size: fmt.Sprintf("%dMi", cbtVolumeMiB), block: true,
			source: &corev1.TypedLocalObjectReference{APIGroup: &apiGroup, Kind: "VolumeSnapshot", Name: s}})
	}
	pod := blockPod("backup", []string{"restore-snap-1", "restore-snap-2"}, []string{"snap1", "snap2"},
		backupScript(full, incr, capacity))
	pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: "store", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "store", MountPath: "/store"}}
	out := runPod(t, ctx, ns, pod)
	sums := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if k, v, ok := strings.Cut(line, " "); ok {
			sums[k] = v
		}
	}
	for _, k := range []string{"snap1", "rebuilt1", "snap2", "rebuilt2", "full-size", "incr-size"} {
		if sums[k] == "" {
			t.Fatalf("the backup pod printed no %s; log:\n%s", k, out)
		}
	}
	if sums["full-size"] != strconv.FormatInt(fullBytes, 10) || sums["incr-size"] != strconv.FormatInt(incrBytes, 10) {
		t.Errorf("backup files of %s and %s bytes, the metadata says %d and %d", sums["full-size"], sums["incr-size"], fullBytes, incrBytes)
	}
	if sums["rebuilt1"] != sums["snap1"] {
		t.Errorf("snap-1 rebuilt from the full backup has md5 %s, snap-1 has %s", sums["rebuilt1"], sums["snap1"])
	}
	if sums["rebuilt2"] != sums["snap2"] {
		t.Errorf("snap-2 rebuilt from the full backup and the incremental has md5 %s, snap-2 has %s", sums["rebuilt2"], sums["snap2"])
	}
	if sums["snap1"] == sums["snap2"] {
		t.Errorf("snap-1 and snap-2 have the same content (md5 %s): the changes were not captured", sums["snap1"])
	}
	if !t.Failed() {
		t.Logf("snap-2 rebuilt byte-identical (md5 %s over %d bytes) from the full backup and the incremental", sums["snap2"], capacity)
	}
	t.Logf("full backup %d bytes (%.1f%% of the volume); incremental moved %d bytes of %d volume size (%.1f%%; %d bytes changed); delta computed through the sidecar in %s",
		fullBytes, pct(fullBytes, capacity), incrBytes, capacity, pct(incrBytes, capacity), changedBytes, deltaTime.Round(time.Millisecond))
}

func pct(a, b int64) float64 { return 100 * float64(a) / float64(b) }

func ptr[T any](v T) *T { return &v }

// backupServiceAccount is the backup tool's identity: a ServiceAccount bound, in the test's
// namespace, to the ClusterRole the snapshot-metadata component grants backup tools.
func backupServiceAccount(t *testing.T, ctx context.Context, ns string) string {
	t.Helper()
	const name = "backup"
	if _, err := k8s.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: ns}},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "nvmeof-csi-snapshot-metadata-client"},
	}
	if _, err := k8s.Client.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return name
}

// takeSnapshot creates a VolumeSnapshot of claim and waits until it is ready.
func takeSnapshot(t *testing.T, ctx context.Context, ns, name, claim string) {
	t.Helper()
	snap := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "snapshot.storage.k8s.io/v1",
		"kind":       "VolumeSnapshot",
		"metadata":   map[string]any{"name": name},
		"spec": map[string]any{
			"volumeSnapshotClassName": "nvmeof-snapshots",
			"source":                  map[string]any{"persistentVolumeClaimName": claim},
		},
	}}
	if _, err := k8s.Dynamic.Resource(volumeSnapshots).Namespace(ns).Create(ctx, snap, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := poll(ctx, 5*time.Minute, func() (bool, string, error) {
		s, err := k8s.Dynamic.Resource(volumeSnapshots).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		ready, _, _ := unstructured.NestedBool(s.Object, "status", "readyToUse")
		msg, _, _ := unstructured.NestedString(s.Object, "status", "error", "message")
		return ready, "snapshot " + name + " not ready " + msg, nil
	}); err != nil {
		t.Fatalf("%v\nevents:\n%s", err, events(ctx, ns, name))
	}
}

// snapshotHandle is the CSI snapshot ID of a VolumeSnapshot (its content's snapshotHandle): the
// base of GetMetadataDelta, as a backup tool records it with its previous backup.
func snapshotHandle(t *testing.T, ctx context.Context, ns, name string) string {
	t.Helper()
	s, err := k8s.Dynamic.Resource(volumeSnapshots).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	content, _, _ := unstructured.NestedString(s.Object, "status", "boundVolumeSnapshotContentName")
	c, err := k8s.Dynamic.Resource(volumeSnapshotContents).Get(ctx, content, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h, _, _ := unstructured.NestedString(c.Object, "status", "snapshotHandle")
	if h == "" {
		t.Fatalf("VolumeSnapshotContent %s of %s has no snapshotHandle", content, name)
	}
	return h
}

// dialSnapshotMetadata connects to the driver's SnapshotMetadata service as its
// SnapshotMetadataService object describes it: the address <service>.<namespace>:<port>, whose
// certificate must be the object's CA's for that name. The test VM has neither cluster DNS
// nor kube-proxy, so the Service is resolved here as kube-proxy would: to a ready endpoint of
// its EndpointSlices, on the target port. TLS still verifies the name the object gives.
func dialSnapshotMetadata(t *testing.T, ctx context.Context) (client cbt.SnapshotMetadataClient, audience, address string) {
	t.Helper()
	sms, err := k8s.Dynamic.Resource(snapshotMetadataServices).Get(ctx, driverName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	address, _, _ = unstructured.NestedString(sms.Object, "spec", "address")
	audience, _, _ = unstructured.NestedString(sms.Object, "spec", "audience")
	caB64, _, _ := unstructured.NestedString(sms.Object, "spec", "caCert")
	ca, err := base64.StdEncoding.DecodeString(caB64)
	if err != nil || len(ca) == 0 {
		t.Fatalf("SnapshotMetadataService %s: caCert %q: %v", driverName, caB64, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		t.Fatalf("SnapshotMetadataService %s: caCert holds no PEM certificate", driverName)
	}
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		t.Fatalf("SnapshotMetadataService %s: address %q: %v", driverName, address, err)
	}
	svcName, svcNS, ok := strings.Cut(host, ".")
	if !ok {
		t.Fatalf("SnapshotMetadataService %s: address %q is not <service>.<namespace>:<port>", driverName, address)
	}
	var endpoint string
	if err := poll(ctx, 3*time.Minute, func() (bool, string, error) {
		endpoint, err = serviceEndpoint(ctx, svcNS, svcName, port)
		return err == nil, fmt.Sprint(err), nil
	}); err != nil {
		t.Fatal(err)
	}
	creds := credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12})
	conn, err := grpc.NewClient("passthrough:///"+endpoint, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	t.Logf("SnapshotMetadataService %s: %s (endpoint %s), audience %s", driverName, address, endpoint, audience)
	return cbt.NewSnapshotMetadataClient(conn), audience, address
}

// serviceEndpoint resolves a Service port to host:port of a ready endpoint.
func serviceEndpoint(ctx context.Context, ns, name, port string) (string, error) {
	svc, err := k8s.Client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	var target intstr.IntOrString
	var portName string
	found := false
	for _, p := range svc.Spec.Ports {
		if strconv.Itoa(int(p.Port)) == port {
			target, portName, found = p.TargetPort, p.Name, true
		}
	}
	if !found {
		return "", fmt.Errorf("service %s/%s has no port %s", ns, name, port)
	}
	eps, err := k8s.Client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=" + name})
	if err != nil {
		return "", err
	}
	for _, s := range eps.Items {
		var num int32
		for _, p := range s.Ports {
			if p.Name != nil && *p.Name == portName && p.Port != nil {
				num = *p.Port
			}
		}
		if num == 0 {
			continue
		}
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && *e.Conditions.Ready && len(e.Addresses) > 0 {
				return net.JoinHostPort(e.Addresses[0], strconv.Itoa(int(num))), nil
			}
		}
	}
	return "", fmt.Errorf("service %s/%s port %s (target %s): no ready endpoint yet", ns, name, port, target.String())
}

// pageSize is max_results of the test's calls: small, so that the ranges come in several
// messages of the stream.
const pageSize = 8

func allocated(ctx context.Context, c cbt.SnapshotMetadataClient, token, ns, snapshot string) (ranges [][2]int64, capacity int64, msgs int, err error) {
	stream, err := c.GetMetadataAllocated(ctx, &cbt.GetMetadataAllocatedRequest{
		SecurityToken: token, Namespace: ns, SnapshotName: snapshot, MaxResults: pageSize})
	if err != nil {
		return nil, 0, 0, err
	}
	return receiveRanges(stream.Recv)
}

func delta(ctx context.Context, c cbt.SnapshotMetadataClient, token, ns, baseID, target string) (ranges [][2]int64, capacity int64, msgs int, err error) {
	stream, err := c.GetMetadataDelta(ctx, &cbt.GetMetadataDeltaRequest{
		SecurityToken: token, Namespace: ns, BaseSnapshotId: baseID, TargetSnapshotName: target, MaxResults: pageSize})
	if err != nil {
		return nil, 0, 0, err
	}
	return receiveRanges(stream.Recv)
}

// metadataMessage is what both of the sidecar's streams send.
type metadataMessage interface {
	GetVolumeCapacityBytes() int64
	GetBlockMetadata() []*cbt.BlockMetadata
}

// receiveRanges reads a stream to its end: its ranges (offset, length) in order, the volume's
// capacity and how many messages carried them.
func receiveRanges[M metadataMessage](recv func() (M, error)) (ranges [][2]int64, capacity int64, msgs int, err error) {
	for {
		m, err := recv()
		if errors.Is(err, io.EOF) {
			return ranges, capacity, msgs, nil
		}
		if err != nil {
			return nil, 0, msgs, err
		}
		msgs++
		capacity = m.GetVolumeCapacityBytes()
		for _, b := range m.GetBlockMetadata() {
			ranges = append(ranges, [2]int64{b.GetByteOffset(), b.GetSizeBytes()})
		}
	}
}

// coalesce sorts ranges (offset, length) and merges adjacent and overlapping ones, as a backup
// tool does before it copies.
func coalesce(rs [][2]int64) [][2]int64 {
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(a, b [2]int64) int { return int(a[0] - b[0]) })
	var out [][2]int64
	for _, r := range rs {
		if n := len(out); n > 0 && r[0] <= out[n-1][0]+out[n-1][1] {
			out[n-1][1] = max(out[n-1][1], r[0]+r[1]-out[n-1][0])
			continue
		}
		out = append(out, r)
	}
	return out
}

func total(rs [][2]int64) int64 {
	var n int64
	for _, r := range rs {
		n += r[1]
	}
	return n
}

// covers reports whether the coalesced ranges hold every byte of want, and the first range
// they miss.
func covers(have, want [][2]int64) ([2]int64, bool) {
	for _, w := range want {
		ok := false
		for _, h := range have {
			if h[0] <= w[0] && w[0]+w[1] <= h[0]+h[1] {
				ok = true
				break
			}
		}
		if !ok {
			return w, false
		}
	}
	return [2]int64{}, true
}

// backupScript is what the backup tool does with the metadata, in the pod that has the two
// restored snapshots as /dev/snap1 and /dev/snap2 and a backup store at /store:
//   - full backup: the allocated ranges of snap-1, concatenated into /store/full;
//   - incremental: the changed ranges of snap-2, concatenated into /store/incr;
//   - rebuild snap-1 from the full backup into a sparse file of the volume's size, and snap-2
//     from a copy of that plus the incremental;
//
// and it prints the md5 of each snapshot device and each rebuild, and the two backups' sizes.
func backupScript(full, incr [][2]int64, capacity int64) string {
	// dd's block size: the largest power of two (up to 1 MiB) that divides every offset and
	// length, so that skip/seek/count are whole blocks.
	bs := int64(cbtChunk)
	for _, r := range append(slices.Clone(full), incr...) {
		for r[0]%bs != 0 || r[1]%bs != 0 {
			bs /= 2
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "set -e\ncd /store\n")
	copyOut := func(dev, file string, rs [][2]int64) {
		var at int64
		fmt.Fprintf(&b, ": > %s\n", file)
		for _, r := range rs {
			fmt.Fprintf(&b, "dd if=%s of=%s bs=%d skip=%d seek=%d count=%d conv=notrunc 2>/dev/null\n", dev, file, bs, r[0]/bs, at/bs, r[1]/bs)
			at += r[1]
		}
	}
	copyIn := func(file, target string, rs [][2]int64) {
		var at int64
		for _, r := range rs {
			fmt.Fprintf(&b, "dd if=%s of=%s bs=%d skip=%d seek=%d count=%d conv=notrunc 2>/dev/null\n", file, target, bs, at/bs, r[0]/bs, r[1]/bs)
			at += r[1]
		}
	}
	copyOut("/dev/snap1", "full", full)
	copyOut("/dev/snap2", "incr", incr)
	fmt.Fprintf(&b, "echo full-size $(wc -c < full)\necho incr-size $(wc -c < incr)\n")
	fmt.Fprintf(&b, "truncate -s %d rebuilt1\n", capacity)
	copyIn("full", "rebuilt1", full)
	fmt.Fprintf(&b, "cp rebuilt1 rebuilt2\n")
	copyIn("incr", "rebuilt2", incr)
	mib := capacity / cbtChunk
	fmt.Fprintf(&b, "echo snap1 $(dd if=/dev/snap1 bs=1M count=%d 2>/dev/null | md5sum | cut -d' ' -f1)\n", mib)
	fmt.Fprintf(&b, "echo rebuilt1 $(md5sum < rebuilt1 | cut -d' ' -f1)\n")
	fmt.Fprintf(&b, "echo snap2 $(dd if=/dev/snap2 bs=1M count=%d 2>/dev/null | md5sum | cut -d' ' -f1)\n", mib)
	fmt.Fprintf(&b, "echo rebuilt2 $(md5sum < rebuilt2 | cut -d' ' -f1)\n")
	return b.String()
}
