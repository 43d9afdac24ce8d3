#!/usr/bin/env bash
# Builds the binaries of the Kubernetes e2e test tier from the Go module proxy:
# the control plane + kubelet + kubectl + e2e.test + agnhost, etcd, and the
# CSI sidecars, plus the VolumeSnapshot and VolumeGroupSnapshot CRDs and the
# SnapshotMetadataService CRD of the external-snapshot-metadata sidecar.
#
# Each group builds from a wrapper module under tests/e2e/tools/<group>, whose
# committed go.sum makes the build need no checksum lookups (-mod=readonly:
# a missing entry fails the build instead of silently editing go.sum).
#
# Output in $NVMEOF_K8S_CACHE (default /var/cache/nvmeof-csi/k8s): bin/<binary>,
# crds/ and crds-snapshot-metadata/ (kubectl apply -k each), images.txt (e2e.test --list-images), stamps/.
# A group is rebuilt only when its stamp (hash of the wrapper go.mod + go.sum,
# its version line and build recipe, and the Go version) changes or one of
# its outputs is missing.
#
# Usage: hack/build-k8s.sh [group...]   groups: kubernetes etcd csi-provisioner
#        csi-attacher csi-resizer csi-snapshotter external-snapshot-metadata
#        (default: all)
#        hack/build-k8s.sh --help           the groups and their versions
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The versions: K8S_VERSION, ETCD_VERSION and the sidecars' *_VERSION.
# shellcheck source=../versions.env
source "$ROOT/versions.env"
TOOLS=$ROOT/tests/e2e/tools
OUT=${NVMEOF_K8S_CACHE:-/var/cache/nvmeof-csi/k8s}
BIN=$OUT/bin
STAMPS=$OUT/stamps

# Static binaries (the sidecars go into minimal images), go.sum must already
# be complete, no VCS stamping (the main packages are in dependencies anyway).
export CGO_ENABLED=0
export GOFLAGS="-mod=readonly -buildvcs=false"
# The compiler collects garbage less often (it has memory to spare here): a cold sidecar build
# took 135 s instead of 146. The outputs are the same, so the stamps leave it out.
export GOGC=${GOGC:-400}
GO_VERSION=$(go env GOVERSION)
BUILD_FLAGS=(-trimpath)
LDFLAGS_BASE="-s -w"

log() { echo "build-k8s: $*"; }
die() { echo "build-k8s: ERROR: $*" >&2; exit 1; }

# stamp_of <group> <version-var> <recipe>: hash of everything that decides the
# group's output. The version enters as the line VAR=version (as versions.env
# writes it), so a changed version rebuilds the group.
stamp_of() {
	local group=$1 var=$2 recipe=$3
	{
		cat "$TOOLS/$group/go.mod" "$TOOLS/$group/go.sum"
		printf '%s=%s\n' "$var" "${!var}"
		echo "$recipe"
		echo "$GO_VERSION"
	} | sha256sum | cut -d' ' -f1
}

# up_to_date <group> <stamp> <output paths...>
up_to_date() {
	local group=$1 stamp=$2 f
	shift 2
	[[ -f $STAMPS/$group && $(cat "$STAMPS/$group") == "$stamp" ]] || return 1
	for f in "$@"; do [[ -e $f ]] || return 1; done
}

# Builds go to a temp dir inside $OUT (same filesystem, so mv is atomic); the
# stamp is written last, so a killed build is never recorded as done.
TMP=""
cleanup() { [[ -z $TMP ]] || rm -rf "$TMP"; }
trap cleanup EXIT

# path_of <output>: where an output lives: "crds" and "crds-snapshot-metadata"
# are CRD directories (each with its kustomization.yaml, and each group replaces
# only its own), images.txt sits at the top, everything else is a binary in bin/.
path_of() {
	case $1 in
	crds | crds-snapshot-metadata) echo "$OUT/$1/kustomization.yaml" ;;
	images.txt) echo "$OUT/images.txt" ;;
	*) echo "$BIN/$1" ;;
	esac
}

# run_group <group> <outputs...>: skips the group when up to date, else calls
# build_<group> <version> in the wrapper module with $TMP as output dir, then
# moves the binaries into bin/ and records the stamp.
run_group() {
	local group=$1 var=${VAR[$1]} stamp start o
	shift
	local version=${!var} paths=()
	for o in "$@"; do paths+=("$(path_of "$o")"); done
	# The build functions are part of the stamp, so changing how a group
	# builds (flags, packages) rebuilds it.
	local recipe="$LDFLAGS_BASE ${BUILD_FLAGS[*]} $CGO_ENABLED $GOFLAGS"
	recipe+=$(declare -f "build_$group")
	[[ $group != csi-* && $group != external-snapshot-metadata ]] || recipe+=$(declare -f build_sidecars)
	stamp=$(stamp_of "$group" "$var" "$recipe")
	if up_to_date "$group" "$stamp" "${paths[@]}"; then
		log "$group $version up to date"
		return
	fi
	log "building $group $version"
	start=$SECONDS
	TMP=$(mktemp -d "$OUT/.build-$group.XXXXXX")
	(
		cd "$TOOLS/$group"
		"build_$group" "$version"
	)
	for o in "$@"; do
		[[ $o == crds* ]] && continue # installed by the group's build function
		[[ -s $TMP/$o ]] || die "$group: $o was not built"
		mv -f "$TMP/$o" "$(path_of "$o")"
	done
	echo "$stamp" >"$STAMPS/$group.tmp"
	mv -f "$STAMPS/$group.tmp" "$STAMPS/$group"
	rm -rf "$TMP"
	TMP=""
	log "built $group $version in $((SECONDS - start))s"
}

# --- kubernetes --------------------------------------------------------------
build_kubernetes() {
	local v=$1 major minor date ld
	[[ $v =~ ^v([0-9]+)\.([0-9]+)\. ]] || die "bad Kubernetes version $v"
	major=${BASH_REMATCH[1]} minor=${BASH_REMATCH[2]}
	# Build date = the tag's time from the proxy, so rebuilds are reproducible.
	date=$(go list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' k8s.io/kubernetes)
	# Without a real version kubectl and e2e.test cannot parse the server version.
	ld="$LDFLAGS_BASE"
	for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ld+=" -X $p.gitVersion=$v -X $p.gitMajor=$major -X $p.gitMinor=$minor"
		ld+=" -X $p.gitTreeState=clean -X $p.buildDate=$date"
	done
	# One go build for all main packages, so they compile in one parallel graph.
	go build "${BUILD_FLAGS[@]}" -ldflags "$ld" -o "$TMP/" \
		k8s.io/kubernetes/cmd/kube-apiserver \
		k8s.io/kubernetes/cmd/kube-controller-manager \
		k8s.io/kubernetes/cmd/kube-scheduler \
		k8s.io/kubernetes/cmd/kubelet \
		k8s.io/kubernetes/cmd/kubectl \
		k8s.io/kubernetes/test/images/agnhost \
		github.com/onsi/ginkgo/v2/ginkgo
	# The e2e suite (incl. the external-storage tests, -storage.testdriver=).
	go test -c "${BUILD_FLAGS[@]}" -ldflags "$ld" -o "$TMP/e2e.test" k8s.io/kubernetes/test/e2e
	# The images the suite may pull, for whoever prepares images offline; also
	# proves e2e.test starts. Sorted because the list comes from a Go map.
	"$TMP/e2e.test" --list-images | sort >"$TMP/images.txt"
}

# --- etcd --------------------------------------------------------------------
build_etcd() {
	# etcd 3.6 keeps its server main at the root of go.etcd.io/etcd/server/v3.
	# No commit hash is known offline; the tag stands in for it in --version.
	go build "${BUILD_FLAGS[@]}" -ldflags "$LDFLAGS_BASE -X go.etcd.io/etcd/api/v3/version.GitSHA=$1" \
		-o "$TMP/etcd" go.etcd.io/etcd/server/v3
}

# --- CSI sidecars ------------------------------------------------------------
build_sidecars() { # <version> <packages...>
	local v=$1
	shift
	go build "${BUILD_FLAGS[@]}" -ldflags "$LDFLAGS_BASE -X main.version=$v" -o "$TMP/" "$@"
}
build_csi-provisioner() { build_sidecars "$1" github.com/kubernetes-csi/external-provisioner/v6/cmd/csi-provisioner; }
build_csi-attacher() { build_sidecars "$1" github.com/kubernetes-csi/external-attacher/v4/cmd/csi-attacher; }
build_csi-resizer() { build_sidecars "$1" github.com/kubernetes-csi/external-resizer/v2/cmd/csi-resizer; }
build_csi-snapshotter() {
	local v=$1 client=github.com/kubernetes-csi/external-snapshotter/client/v8 dir
	build_sidecars "$v" \
		github.com/kubernetes-csi/external-snapshotter/v8/cmd/csi-snapshotter \
		github.com/kubernetes-csi/external-snapshotter/v8/cmd/snapshot-controller
	# VolumeSnapshot(+Group) CRDs ship in the client module with a
	# kustomization.yaml, so `kubectl apply -k $OUT/crds` works.
	go mod download "$client"
	dir=$(go list -m -f '{{.Dir}}' "$client")
	[[ -f $dir/config/crd/kustomization.yaml ]] || die "no CRDs in $dir/config/crd"
	cp -r "$dir/config/crd" "$TMP/crds"
	chmod -R u+w "$TMP/crds" # the module cache is read-only
	rm -rf "$OUT/crds"
	mv "$TMP/crds" "$OUT/crds"
}

# --- external-snapshot-metadata ------------------------------------------------
build_external-snapshot-metadata() {
	local v=$1 client=github.com/kubernetes-csi/external-snapshot-metadata/client dir
	build_sidecars "$v" github.com/kubernetes-csi/external-snapshot-metadata/cmd/csi-snapshot-metadata
	# The SnapshotMetadataService CRD (cbt.storage.k8s.io) ships in the client
	# module, without a kustomization.yaml: write one, so that
	# `kubectl apply -k $OUT/crds-snapshot-metadata` works like crds/.
	go mod download "$client"
	dir=$(go list -m -f '{{.Dir}}' "$client")
	[[ -f $dir/config/crd/cbt.storage.k8s.io_snapshotmetadataservices.yaml ]] || die "no CRD in $dir/config/crd"
	mkdir "$TMP/crds-snapshot-metadata"
	cp "$dir/config/crd/cbt.storage.k8s.io_snapshotmetadataservices.yaml" "$TMP/crds-snapshot-metadata/"
	chmod -R u+w "$TMP/crds-snapshot-metadata" # the module cache is read-only
	printf '%s\n' "apiVersion: kustomize.config.k8s.io/v1beta1" "kind: Kustomization" "resources:" \
		"  - cbt.storage.k8s.io_snapshotmetadataservices.yaml" >"$TMP/crds-snapshot-metadata/kustomization.yaml"
	rm -rf "$OUT/crds-snapshot-metadata"
	mv "$TMP/crds-snapshot-metadata" "$OUT/crds-snapshot-metadata"
}

# group -> its version variable and outputs.
declare -A VAR=(
	[kubernetes]=K8S_VERSION [etcd]=ETCD_VERSION
	[csi-provisioner]=PROVISIONER_VERSION [csi-attacher]=ATTACHER_VERSION
	[csi-resizer]=RESIZER_VERSION [csi-snapshotter]=SNAPSHOTTER_VERSION
	[external-snapshot-metadata]=SNAPSHOT_METADATA_VERSION
)
declare -A OUTPUTS=(
	[kubernetes]="kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl
		agnhost ginkgo e2e.test images.txt"
	[etcd]=etcd
	[csi-provisioner]=csi-provisioner [csi-attacher]=csi-attacher
	[csi-resizer]=csi-resizer [csi-snapshotter]="csi-snapshotter snapshot-controller crds"
	[external-snapshot-metadata]="csi-snapshot-metadata crds-snapshot-metadata"
)
ALL=(kubernetes etcd csi-provisioner csi-attacher csi-resizer csi-snapshotter external-snapshot-metadata)

usage() {
	echo "Usage: hack/build-k8s.sh [group...] (default: all), into $OUT"
	echo "Groups and their versions (versions.env):"
	for g in "${ALL[@]}"; do printf '  %-26s %s=%s\n' "$g" "${VAR[$g]}" "${!VAR[$g]}"; done
}

groups=("$@")
case ${1:-} in -h | --help)
	usage
	exit 0
	;;
esac
[[ ${#groups[@]} -gt 0 ]] || groups=("${ALL[@]}")
for g in "${groups[@]}"; do
	[[ -n ${VAR[$g]:-} ]] || die "unknown group $g (known: ${ALL[*]})"
done

mkdir -p "$BIN" "$STAMPS"
# One build at a time per cache dir; under the lock, leftovers of a killed
# build are safe to remove.
exec 9>"$OUT/.lock"
flock 9
rm -rf "$OUT"/.build-*

for g in "${groups[@]}"; do
	# shellcheck disable=SC2086 # OUTPUTS values are space-separated lists
	run_group "$g" ${OUTPUTS[$g]}
done
