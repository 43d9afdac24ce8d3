package manifests_test

import (
	"slices"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
)

// What each controller sidecar needs (from the sidecars' upstream RBAC at the pinned
// versions): group, resource, verb.
var sidecarNeeds = map[string][][3]string{
	"csi-provisioner": {
		{"", "persistentvolumes", "create"}, {"", "persistentvolumes", "delete"}, {"", "persistentvolumeclaims", "update"},
		{"storage.k8s.io", "storageclasses", "watch"}, {"", "events", "create"}, {"storage.k8s.io", "csinodes", "watch"},
		{"", "nodes", "watch"}, {"storage.k8s.io", "volumeattachments", "watch"},
		{"snapshot.storage.k8s.io", "volumesnapshots", "get"}, {"snapshot.storage.k8s.io", "volumesnapshotcontents", "get"},
		{"coordination.k8s.io", "leases", "update"}, {"storage.k8s.io", "csistoragecapacities", "create"},
		{"storage.k8s.io", "csistoragecapacities", "delete"}, {"", "pods", "get"}, {"apps", "replicasets", "get"},
	},
	"csi-attacher": {
		{"", "persistentvolumes", "patch"}, {"storage.k8s.io", "csinodes", "get"}, {"storage.k8s.io", "volumeattachments", "patch"},
		{"storage.k8s.io", "volumeattachments/status", "patch"}, {"coordination.k8s.io", "leases", "update"},
		// The DH-HMAC-CHAP Secret named by controller-publish-secret-name.
		{"", "secrets", "get"},
	},
	"csi-snapshotter": {
		{"", "events", "create"}, {"snapshot.storage.k8s.io", "volumesnapshotclasses", "watch"},
		{"snapshot.storage.k8s.io", "volumesnapshotcontents", "patch"}, {"snapshot.storage.k8s.io", "volumesnapshotcontents/status", "patch"},
		{"coordination.k8s.io", "leases", "update"},
		// Volume group snapshots (--feature-gates=CSIVolumeGroupSnapshot=true): without list
		// on both, the sidecar takes the CRDs for missing and turns the feature off.
		{"groupsnapshot.storage.k8s.io", "volumegroupsnapshotclasses", "list"}, {"groupsnapshot.storage.k8s.io", "volumegroupsnapshotclasses", "watch"},
		{"groupsnapshot.storage.k8s.io", "volumegroupsnapshotcontents", "list"}, {"groupsnapshot.storage.k8s.io", "volumegroupsnapshotcontents", "patch"},
		{"groupsnapshot.storage.k8s.io", "volumegroupsnapshotcontents/status", "update"},
	},
	// external-snapshot-metadata v1.0.0 (deploy/snapshot-metadata-cluster-role.yaml), plus
	// the VolumeSnapshotClasses it reads for the snapshotter secret.
	"csi-snapshot-metadata": {
		{"authentication.k8s.io", "tokenreviews", "create"}, {"authorization.k8s.io", "subjectaccessreviews", "create"},
		{"snapshot.storage.k8s.io", "volumesnapshots", "get"}, {"snapshot.storage.k8s.io", "volumesnapshotcontents", "get"},
		{"snapshot.storage.k8s.io", "volumesnapshotclasses", "get"}, {"snapshot.storage.k8s.io", "volumesnapshotclasses", "list"},
		{"cbt.storage.k8s.io", "snapshotmetadataservices", "get"},
	},
	"csi-resizer": {
		{"", "persistentvolumes", "patch"}, {"", "persistentvolumeclaims", "watch"}, {"", "persistentvolumeclaims/status", "patch"},
		{"", "pods", "watch"}, {"", "events", "create"}, {"storage.k8s.io", "volumeattributesclasses", "watch"},
		{"coordination.k8s.io", "leases", "update"},
	},
}

// Resources a rule may name: a typo in a rule is a resource nobody has.
var knownResources = map[string][]string{
	"":                        {"persistentvolumes", "persistentvolumeclaims", "persistentvolumeclaims/status", "events", "nodes", "pods", "secrets", "serviceaccounts/token"},
	"storage.k8s.io":          {"storageclasses", "csinodes", "volumeattachments", "volumeattachments/status", "csistoragecapacities", "volumeattributesclasses"},
	"snapshot.storage.k8s.io": {"volumesnapshots", "volumesnapshotcontents", "volumesnapshotcontents/status", "volumesnapshotclasses"},
	"groupsnapshot.storage.k8s.io": {"volumegroupsnapshotclasses", "volumegroupsnapshotcontents",
		"volumegroupsnapshotcontents/status"},
	"coordination.k8s.io":   {"leases"},
	"cbt.storage.k8s.io":    {"snapshotmetadataservices"},
	"authentication.k8s.io": {"tokenreviews"},
	"authorization.k8s.io":  {"subjectaccessreviews"},
	"apps":                  {"replicasets"},
}

var knownVerbs = []string{"get", "list", "watch", "create", "update", "patch", "delete"}

func TestRBAC(t *testing.T) {
	for _, r := range renderings {
		s := render(t, r)
		// rules granted to each service account (namespace/name)
		granted := map[string][]rbacv1.PolicyRule{}
		for _, o := range s.objs {
			var ref rbacv1.RoleRef
			var subjects []rbacv1.Subject
			var ns string
			switch b := o.Obj.(type) {
			case *rbacv1.ClusterRoleBinding:
				ref, subjects = b.RoleRef, b.Subjects
			case *rbacv1.RoleBinding:
				ref, subjects, ns = b.RoleRef, b.Subjects, b.Namespace
			case *rbacv1.ClusterRole:
				checkRules(t, r.name+": "+o.Key().String(), b.Rules)
				continue
			case *rbacv1.Role:
				checkRules(t, r.name+": "+o.Key().String(), b.Rules)
				continue
			default:
				continue
			}
			role, ok := s.get(ref.Kind, ns, ref.Name)
			if !ok || ref.APIGroup != rbacv1.GroupName {
				t.Errorf("%s: %s: roleRef %s %s is not rendered", r.name, o.Key(), ref.Kind, ref.Name)
				continue
			}
			var rules []rbacv1.PolicyRule
			switch x := role.Obj.(type) {
			case *rbacv1.ClusterRole:
				rules = x.Rules
			case *rbacv1.Role:
				rules = x.Rules
			}
			for _, sub := range subjects {
				if _, ok := s.get("ServiceAccount", sub.Namespace, sub.Name); sub.Kind != "ServiceAccount" || !ok {
					t.Errorf("%s: %s: subject %s %s/%s is not a rendered ServiceAccount", r.name, o.Key(), sub.Kind, sub.Namespace, sub.Name)
					continue
				}
				granted[sub.Namespace+"/"+sub.Name] = append(granted[sub.Namespace+"/"+sub.Name], rules...)
			}
		}
		for _, w := range s.workloads() {
			rules := granted[w.key.Namespace+"/"+w.pod.Spec.ServiceAccountName]
			for _, c := range w.pod.Spec.Containers {
				for _, need := range sidecarNeeds[c.Name] {
					if !allows(rules, need) {
						t.Errorf("%s: %s: %s may not %s %s (group %q)", r.name, w.key, c.Name, need[2], need[1], need[0])
					}
				}
			}
		}
	}
}

func checkRules(t *testing.T, where string, rules []rbacv1.PolicyRule) {
	for _, rule := range rules {
		for _, g := range rule.APIGroups {
			for _, res := range rule.Resources {
				if !slices.Contains(knownResources[g], res) {
					t.Errorf("%s: unknown resource %q in group %q", where, res, g)
				}
			}
		}
		for _, v := range rule.Verbs {
			if !slices.Contains(knownVerbs, v) {
				t.Errorf("%s: unknown verb %q", where, v)
			}
		}
	}
}

func allows(rules []rbacv1.PolicyRule, need [3]string) bool {
	for _, r := range rules {
		if slices.Contains(r.APIGroups, need[0]) && slices.Contains(r.Resources, need[1]) && slices.Contains(r.Verbs, need[2]) {
			return true
		}
	}
	return false
}
