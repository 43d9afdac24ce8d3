#!/usr/bin/env bash
# hack/build-images.sh: the container images of the Kubernetes e2e tier, as tarballs that the
# test VM's containerd imports (`ctr -n k8s.io images import <tar>`); pods use exactly these
# references and never pull. No Docker engine and no registry are needed.
#
#   nvmeof-csi.tar  ghcr.io/nvmeof-csi/nvmeof-csi:<Chart appVersion>, an OCI archive built from
#                   our Dockerfile by buildah (--pull=never) on local stand-ins for its two
#                   base images: debian:bookworm-slim (debootstrap --variant=minbase from this
#                   machine's Debian mirror) and golang:<go>-bookworm (that base, make and this
#                   host's Go toolchain; the host's module and build caches are mounted into
#                   the build stage).
#   The others are docker archives of one layer written by tests/e2e/tools/mkimage:
#   <sidecar>.tar   registry.k8s.io/sig-storage/<sidecar>:<version>, the binary that
#                   hack/build-k8s.sh builds into $NVMEOF_K8S_CACHE/bin.
#   pause.tar       registry.k8s.io/pause:<each of PAUSE_TAGS>: tests/e2e/tools/mkimage/cmd/pause.
#   busybox.tar     the host's static busybox with its applet links: the e2e suite's busybox,
#                   nvmeof-csi.test/busybox:1 and the e2e images busybox stands in for.
#   agnhost.tar     the e2e agnhost (from hack/build-k8s.sh) plus busybox.
#
# Output: $NVMEOF_K8S_CACHE/images/*.tar and images/list.txt, one line per tarball:
# "<tarfile name> <ref>[,<ref>...]". list.txt is written only when every image is there;
# a missing input binary fails the script after the other images are built.
#
# Idempotent and cached: an image is rebuilt only when its inputs change (stamps under
# $NVMEOF_K8S_CACHE/image-build/stamps); a run with nothing to do takes about a second.
# Our image's inputs: the build context (the tracked files as they are in the working tree
# and the untracked files git does not ignore), the version stamped in, and the recipes of
# the image and of its two bases. The debootstrap base is built once and cached.
#
# Environment: NVMEOF_K8S_CACHE (default /var/cache/nvmeof-csi/k8s); STORAGE_DRIVER for
# buildah (default overlay if this kernel mounts it, else vfs); DEBIAN_MIRROR and
# DEBIAN_SECURITY_MIRROR (default: this machine's apt sources); BUSYBOX (default /bin/busybox).
# Needs go, git and the Debian packages buildah, debootstrap and busybox-static; root.
# Every image version comes from versions.env.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=../versions.env
source "$ROOT/versions.env"
CACHE=${NVMEOF_K8S_CACHE:-/var/cache/nvmeof-csi/k8s}
OUT=$CACHE/images
BIN=$CACHE/bin
WORK=$CACHE/image-build
STAMPS=$WORK/stamps

# The CSI sidecars: binary name and the tag of its image (registry.k8s.io/sig-storage/NAME).
SIDECARS=(
	"csi-provisioner:$PROVISIONER_VERSION"
	"csi-attacher:$ATTACHER_VERSION"
	"csi-resizer:$RESIZER_VERSION"
	"csi-snapshotter:$SNAPSHOTTER_VERSION"
	"snapshot-controller:$SNAPSHOTTER_VERSION"
	"csi-snapshot-metadata:$SNAPSHOT_METADATA_VERSION"
)
PAUSE_REFS=()
IFS=, read -ra pause_tags <<<"$PAUSE_TAGS"
for pause_tag in "${pause_tags[@]}"; do PAUSE_REFS+=("registry.k8s.io/pause:$pause_tag"); done
# Kubernetes' e2e images at $K8S_VERSION (k8s.io/kubernetes test/utils/image/manifest.go), and
# the older busybox that its testing manifests (csi-mock, DRA examples) name.
E2E_BUSYBOX=registry.k8s.io/e2e-test-images/busybox:$E2E_BUSYBOX_VERSION
E2E_BUSYBOX_MANIFESTS=registry.k8s.io/e2e-test-images/busybox:$E2E_BUSYBOX_MANIFESTS_VERSION
E2E_AGNHOST=registry.k8s.io/e2e-test-images/agnhost:$E2E_AGNHOST_VERSION
# E2E images that the storage suites use only as a shell, so busybox stands in for them:
# - nginx: testsuites/volumes.go "should allow exec of files on the volume" runs
#   /bin/sh -c "echo ... > script; chmod; ./script" in it;
# - jessie-dnsutils: testsuites/multivolume.go concurrent-access pods
#   (e2epod.MakeSecPod: sh -c "trap exit TERM; while true; do sleep 1; done"), into which
#   the test execs dd, head, sha256sum.
E2E_BUSYBOX_STANDINS=(
	"registry.k8s.io/e2e-test-images/nginx:$E2E_NGINX_VERSION"
	"registry.k8s.io/e2e-test-images/jessie-dnsutils:$E2E_JESSIE_DNSUTILS_VERSION"
)
OUR_REF_NAME=ghcr.io/nvmeof-csi/nvmeof-csi
BUSYBOX=${BUSYBOX:-/bin/busybox}

log() { printf '%s build-images: %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
sha() { sha256sum | cut -d' ' -f1; }

for c in go git buildah debootstrap sha256sum flock; do
	command -v "$c" >/dev/null || die "$c not found (bash hack/install-deps.sh installs the build dependencies)"
done
[[ -x $BUSYBOX ]] || die "$BUSYBOX not found: apt-get install busybox-static"

mkdir -p "$OUT" "$STAMPS" "$WORK/tools"
exec 9>"$WORK/lock"
if ! flock -n 9; then
	log "another build-images.sh is running; waiting for it"
	flock 9
fi

declare -A REFS=() # tarball name -> comma-separated refs
MISSING=()
BUILT=0

# up_to_date NAME KEY: the tarball NAME.tar exists and was built from inputs KEY.
up_to_date() { [[ -f $OUT/$1.tar && -f $STAMPS/$1 && $(<"$STAMPS/$1") == "$2" ]]; }
stamp() { printf '%s\n' "$2" >"$STAMPS/$1"; }

# --- tools: mkimage and pause (go build caches; seconds when unchanged) -------------------
(
	cd "$ROOT/tests/e2e/tools/mkimage"
	CGO_ENABLED=0 go build -trimpath -o "$WORK/tools/mkimage" .
	CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$WORK/tools/pause" ./cmd/pause
)
MKIMAGE=$WORK/tools/mkimage

# mk_image NAME MKIMAGE-ARGS...: NAME.tar from mkimage, unless its inputs are unchanged. The
# key covers the arguments, the mkimage binary and every input file named by an argument
# (a SRC:DST mapping or a plain path such as -busybox's).
mk_image() {
	local name=$1 key refs="" a f i
	shift
	key=$({
		printf '%s\n' "$@"
		sha256sum "$MKIMAGE"
		for a in "$@"; do
			f=${a%%:*}
			if [[ $f == /* && -f $f ]]; then sha256sum "$f"; fi
		done
	} | sha)
	for ((i = 1; i <= $#; i++)); do
		if [[ ${!i} == -tag ]]; then
			((i++))
			refs+=${refs:+,}${!i}
		fi
	done
	REFS[$name]=$refs
	if up_to_date "$name" "$key"; then
		log "$name.tar: up to date"
		return
	fi
	log "$name.tar: building ($refs)"
	"$MKIMAGE" -o "$OUT/$name.tar" "$@"
	stamp "$name" "$key"
	BUILT=$((BUILT + 1))
}

# --- pause, busybox, agnhost, sidecars ------------------------------------------------------
pause_args=()
for r in "${PAUSE_REFS[@]}"; do pause_args+=(-tag "$r"); done
# Like the real pause image: /pause, user 65535, nothing else.
mk_image pause "${pause_args[@]}" -entrypoint /pause -user 65535:65535 -etc=false "$WORK/tools/pause:/pause"

bb_args=(-tag "$E2E_BUSYBOX" -tag "$E2E_BUSYBOX_MANIFESTS" -tag nvmeof-csi.test/busybox:1)
for r in "${E2E_BUSYBOX_STANDINS[@]}"; do bb_args+=(-tag "$r"); done
mk_image busybox "${bb_args[@]}" -busybox "$BUSYBOX" -cmd sh

if [[ -x $BIN/agnhost ]]; then
	# As the real agnhost image: /agnhost pause by default, its test user and group, /uploads;
	# busybox for the shell commands e2e runs in agnhost pods.
	mk_image agnhost -tag "$E2E_AGNHOST" -entrypoint /agnhost -cmd pause -busybox "$BUSYBOX" \
		-passwd 'user-defined-in-image:x:1000:1000::/home/user-defined-in-image:/bin/sh' \
		-group 'user-defined-in-image:x:1000:' \
		-group 'group-defined-in-image:x:50000:user-defined-in-image' \
		-dir /uploads "$BIN/agnhost:/agnhost"
else
	MISSING+=("$BIN/agnhost")
fi

for s in "${SIDECARS[@]}"; do
	n=${s%%:*} v=${s#*:}
	if [[ ! -x $BIN/$n ]]; then
		MISSING+=("$BIN/$n")
		continue
	fi
	got=$(timeout 5 "$BIN/$n" --version 2>&1 || true)
	[[ $got == *"$v"* ]] || log "WARNING: $BIN/$n --version does not say $v; tagging it $v all the same"
	mk_image "$n" -tag "registry.k8s.io/sig-storage/$n:$v" -entrypoint "/$n" "$BIN/$n:/$n"
done

# --- our image: buildah on local base images -------------------------------------------------
GOROOT_HOST=$(go env GOROOT)
GO_VERSION_FULL=$(go env GOVERSION)                                      # go1.26.8
GO_MINOR=$(sed -E 's/^go([0-9]+\.[0-9]+).*/\1/' <<<"$GO_VERSION_FULL") # 1.26
GOLANG_REF=docker.io/library/golang:$GO_MINOR-bookworm
BASE_REF=docker.io/library/debian:bookworm-slim
APP_VERSION=$(sed -n 's/^appVersion:[[:space:]]*"\{0,1\}\([^"]*\)"\{0,1\}[[:space:]]*$/\1/p' "$ROOT/deploy/helm/nvmeof-csi/Chart.yaml")
[[ -n $APP_VERSION ]] || die "no appVersion in deploy/helm/nvmeof-csi/Chart.yaml"
OUR_REF=$OUR_REF_NAME:$APP_VERSION

export BUILDAH_ISOLATION=chroot
if [[ -z ${STORAGE_DRIVER:-} ]]; then
	# overlay when this kernel mounts it (much less copying than vfs), else vfs.
	t=$(mktemp -d)
	mkdir -p "$t/l" "$t/u" "$t/w" "$t/m"
	if mount -t overlay overlay -o "lowerdir=$t/l,upperdir=$t/u,workdir=$t/w" "$t/m" 2>/dev/null; then
		umount "$t/m"
		STORAGE_DRIVER=overlay
	else
		STORAGE_DRIVER=vfs
	fi
	rm -rf "$t"
fi
export STORAGE_DRIVER
# Our own container storage, apart from the machine's /var/lib/containers.
BUILDAH=(buildah --root "$WORK/containers/$STORAGE_DRIVER" --runroot "$WORK/containers/run-$STORAGE_DRIVER" --storage-driver "$STORAGE_DRIVER")

# image_label REF LABEL: the label's value on a local image, empty if there is no such image.
image_label() {
	"${BUILDAH[@]}" inspect --type image --format "{{index .OCIv1.Config.Labels \"$2\"}}" "$1" 2>/dev/null || true
}

# This machine's Debian mirrors (deb822 or one-line sources), unless given.
host_mirror() { # $1: debian or debian-security
	{
		grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{for (i = 2; i <= NF; i++) print $i}'
		grep -hsE '^deb[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{print ($2 ~ /^\[/) ? $3 : $2}'
	} | grep -E "/$1/?\$" | head -n1 || true
}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-$(host_mirror debian)}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBIAN_SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-$(host_mirror debian-security)}
DEBIAN_SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
# How apt reaches the mirror here (proxy, snapshot-mirror date checks), so that the
# Dockerfile's apt-get works in the build the way it works on this host.
APT_HOST_CONF=$(apt-config dump 2>/dev/null | grep -E '^Acquire::(https?::Proxy|Check-Valid-Until|Check-Date) ' || true)

# base_customize ROOTFS: turn the debootstrap tree into what debian:bookworm-slim is: the
# same apt sources layout, no docs/man/locales (the slim image's dpkg excludes), no apt
# lists or caches, an empty /dev.
base_customize() {
	local r=$1
	rm -f "$r/etc/apt/sources.list"
	cat >"$r/etc/apt/sources.list.d/debian.sources" <<-EOF
		Types: deb
		URIs: $DEBIAN_MIRROR
		Suites: bookworm bookworm-updates
		Components: main
		Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

		Types: deb
		URIs: $DEBIAN_SECURITY_MIRROR
		Suites: bookworm-security
		Components: main
		Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
	EOF
	if [[ -n $APT_HOST_CONF ]]; then
		{
			echo "// From the build host's apt configuration (hack/build-images.sh): how apt reaches"
			echo "// its mirror there."
			echo "$APT_HOST_CONF"
		} >"$r/etc/apt/apt.conf.d/90build-host"
	fi
	cat >"$r/etc/dpkg/dpkg.cfg.d/docker" <<-'EOF'
		path-exclude /usr/share/doc/*
		path-include /usr/share/doc/*/copyright
		path-exclude /usr/share/man/*
		path-exclude /usr/share/groff/*
		path-exclude /usr/share/info/*
		path-exclude /usr/share/lintian/*
		path-exclude /usr/share/linda/*
		path-exclude /usr/share/locale/*
	EOF
	cat >"$r/etc/apt/apt.conf.d/docker-clean" <<-'EOF'
		DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
		APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
		Dir::Cache::pkgcache "";
		Dir::Cache::srcpkgcache "";
	EOF
	find "$r/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
	find "$r/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
	rm -rf "$r"/usr/share/man/* "$r"/usr/share/info/* "$r"/usr/share/locale/* "$r"/usr/share/lintian/*
	rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/*.bin "$r"/var/cache/apt/archives/*.deb \
		"$r"/var/cache/apt/archives/partial/* "$r"/var/log/* "$r"/dev/* "$r"/tmp/* "$r"/run/*
	: >"$r/etc/hostname"
	: >"$r/etc/resolv.conf"
}

BASE_KEY=$({
	echo "debootstrap --variant=minbase bookworm $DEBIAN_MIRROR $DEBIAN_SECURITY_MIRROR"
	dpkg-query -W -f '${Version}\n' debootstrap 2>/dev/null || true
	echo "$APT_HOST_CONF"
	declare -f base_customize
} | sha)

ensure_base() {
	local tarball=$WORK/base/bookworm-minbase.tar rootfs=$WORK/base/rootfs t0 ctr mnt
	mkdir -p "$WORK/base"
	if [[ ! -f $tarball || ! -f $STAMPS/base || $(<"$STAMPS/base") != "$BASE_KEY" ]]; then
		log "base: debootstrap --variant=minbase bookworm from $DEBIAN_MIRROR (once)"
		t0=$SECONDS
		rm -rf "$rootfs"
		debootstrap --variant=minbase bookworm "$rootfs" "$DEBIAN_MIRROR" >"$WORK/base/debootstrap.log" 2>&1 ||
			die "debootstrap failed; see $WORK/base/debootstrap.log"
		base_customize "$rootfs"
		tar --numeric-owner --xattrs -C "$rootfs" -cf "$tarball.tmp" .
		mv "$tarball.tmp" "$tarball"
		rm -rf "$rootfs"
		stamp base "$BASE_KEY"
		log "base: done in $((SECONDS - t0)) s ($(du -h "$tarball" | cut -f1))"
	fi
	if [[ $(image_label "$BASE_REF" nvmeof-csi.base-key) != "$BASE_KEY" ]]; then
		log "base: importing as $BASE_REF"
		ctr=$("${BUILDAH[@]}" from --pull=never scratch)
		mnt=$("${BUILDAH[@]}" mount "$ctr")
		tar --numeric-owner --xattrs -xpf "$tarball" -C "$mnt"
		"${BUILDAH[@]}" umount "$ctr" >/dev/null
		"${BUILDAH[@]}" config --os linux --arch amd64 --cmd bash \
			--env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
			--label nvmeof-csi.base-key="$BASE_KEY" \
			--label nvmeof-csi.note="local stand-in for debian:bookworm-slim: debootstrap --variant=minbase (hack/build-images.sh)" \
			"$ctr"
		"${BUILDAH[@]}" commit --quiet --rm "$ctr" "$BASE_REF" >/dev/null
	fi
}

# ensure_golang: the local golang:<go>-bookworm: the base, make, this host's Go toolchain.
# GOMODCACHE and GOCACHE are where the build mounts the host's caches.
ensure_golang() {
	local ctr
	if [[ $(image_label "$GOLANG_REF" nvmeof-csi.golang-key) == "$GOLANG_KEY" ]]; then
		return
	fi
	log "golang: $GOLANG_REF = $BASE_REF + make + $GO_VERSION_FULL from $GOROOT_HOST"
	ctr=$("${BUILDAH[@]}" from --pull=never "$BASE_REF")
	"${BUILDAH[@]}" run "$ctr" -- sh -c 'apt-get update -qq && apt-get install -qq -y --no-install-recommends make >/dev/null && rm -rf /var/lib/apt/lists/*'
	"${BUILDAH[@]}" copy --quiet "$ctr" "$GOROOT_HOST" /usr/local/go >/dev/null
	local envs=(
		--env PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
		--env GOPATH=/go --env GOMODCACHE=/go/pkg/mod --env GOCACHE=/root/.cache/go-build
		--env GOTOOLCHAIN=local --env "GOPROXY=$(go env GOPROXY)" --env GOFLAGS=-buildvcs=false
	)
	[[ -z $(go env GONOSUMDB) ]] || envs+=(--env "GONOSUMDB=$(go env GONOSUMDB)")
	[[ $(go env GOSUMDB) == sum.golang.org ]] || envs+=(--env "GOSUMDB=$(go env GOSUMDB)")
	"${BUILDAH[@]}" config "${envs[@]}" --workingdir /go \
		--label nvmeof-csi.golang-key="$GOLANG_KEY" \
		--label nvmeof-csi.note="local stand-in for golang:$GO_MINOR-bookworm: the build host's $GO_VERSION_FULL (hack/build-images.sh)" \
		"$ctr"
	"${BUILDAH[@]}" commit --quiet --rm "$ctr" "$GOLANG_REF" >/dev/null
}

GOLANG_KEY=$({
	echo "$BASE_KEY $GO_VERSION_FULL $GOROOT_HOST $(go env GOPROXY) $(go env GOSUMDB) $(go env GONOSUMDB)"
	declare -f ensure_golang
} | sha)

# snapshot_context: copy what `COPY . .` may see (the files git tracks, as they are in the
# working tree, and the untracked files git does not ignore) to $WORK/context. The build
# runs on this snapshot, not on the live tree: what is hashed is what is built, and both
# buildah passes see the same files even while someone edits the tree.
snapshot_context() {
	rm -rf "$WORK/context.new"
	mkdir -p "$WORK/context.new"
	(
		cd "$ROOT"
		git ls-files -z --cached --others --exclude-standard |
			while IFS= read -r -d '' f; do
				if [[ -e $f || -L $f ]]; then printf '%s\0' "$f"; fi # skip deleted files
			done |
			tar --null --no-recursion -T - -cf -
	) | tar -C "$WORK/context.new" -xf -
	rm -rf "$WORK/context"
	mv "$WORK/context.new" "$WORK/context"
}

# Our image's inputs: the snapshot (paths, modes, link targets, contents), the version
# stamped into the binaries, the base images' recipes and this build's recipe.
our_key() {
	(
		cd "$WORK/context"
		echo "$OUR_REF $BASE_KEY $GOLANG_KEY $1 $2"
		declare -f build_ours
		find . \( -type f -o -type l \) -printf '%p %m %l\n' | LC_ALL=C sort
		find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum --
	) | sha
}

build_ours() {
	local key version commit date t0
	version=$(git -C "$ROOT" describe --tags --always --dirty 2>/dev/null || echo v0.0.0-dev)
	commit=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)
	snapshot_context
	key=$(our_key "$version" "$commit")
	REFS[nvmeof-csi]=$OUR_REF
	if up_to_date nvmeof-csi "$key"; then
		log "nvmeof-csi.tar: up to date"
		return
	fi
	# Working containers left by an interrupted run (the storage is this script's, and locked).
	"${BUILDAH[@]}" rm --all >/dev/null 2>&1 || true
	ensure_base
	ensure_golang
	date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
	# The build mounts the host's module cache: fill it here, where the network is set up.
	(cd "$WORK/context" && go mod download)
	log "nvmeof-csi.tar: buildah bud ($OUR_REF, VERSION=$version, storage $STORAGE_DRIVER)"
	t0=$SECONDS
	# Two passes, so that the host's caches are mounted into the build stage only: --volume
	# applies to every RUN, and would leave its (empty) mount points in the final image.
	# Pass 1 builds the build stage with the caches mounted; pass 2 builds the whole file
	# without them, and reuses pass 1's layers (--layers: the cache key is the instruction,
	# its arguments and the context, not the volumes).
	local bud=("${BUILDAH[@]}" bud --pull=never --layers -f "$WORK/context/Dockerfile"
		--build-arg "GO_VERSION=$GO_MINOR"
		--build-arg "VERSION=$version" --build-arg "COMMIT=$commit" --build-arg "BUILD_DATE=$date")
	{
		"${bud[@]}" --target build \
			--volume "$(go env GOMODCACHE):/go/pkg/mod" \
			--volume "$(go env GOCACHE):/root/.cache/go-build" \
			"$WORK/context" &&
			"${bud[@]}" -t "$OUR_REF" "$WORK/context"
	} >"$WORK/bud.log" 2>&1 || {
		tail -n 40 "$WORK/bud.log" >&2
		die "buildah bud failed; full log: $WORK/bud.log"
	}
	# oci-archive: gzip layers (docker-archive's are uncompressed, 2.5 times the size), and
	# containerd 1.6's import names the image from its org.opencontainers.image.ref.name.
	rm -f "$OUT/nvmeof-csi.tar.tmp"
	"${BUILDAH[@]}" push --quiet "$OUR_REF" "oci-archive:$OUT/nvmeof-csi.tar.tmp:$OUR_REF"
	mv "$OUT/nvmeof-csi.tar.tmp" "$OUT/nvmeof-csi.tar"
	stamp nvmeof-csi "$key"
	BUILT=$((BUILT + 1))
	# Drop the build stage and the previous image (untagged now); the bases stay.
	"${BUILDAH[@]}" rmi --prune >/dev/null 2>&1 || true
	log "nvmeof-csi.tar: built in $((SECONDS - t0)) s ($(du -h "$OUT/nvmeof-csi.tar" | cut -f1))"
}
build_ours

# --- the e2e suite's own list, when hack/build-k8s.sh has written it --------------------------
if [[ -f $CACHE/images.txt ]]; then
	for r in "$E2E_BUSYBOX" "$E2E_BUSYBOX_MANIFESTS" "$E2E_AGNHOST" "${E2E_BUSYBOX_STANDINS[@]}"; do
		grep -qxF "$r" "$CACHE/images.txt" || log "WARNING: $r is not in $CACHE/images.txt (e2e.test --list-images): are the E2E_* entries of versions.env stale?"
	done
fi

# --- list.txt ---------------------------------------------------------------------------------
if ((${#MISSING[@]})); then
	rm -f "$OUT/list.txt"
	for m in "${MISSING[@]}"; do log "missing $m: it is built by hack/build-k8s.sh; run that first"; done
	die "${#MISSING[@]} input binaries missing; built the other images, wrote no list.txt"
fi
for n in "${!REFS[@]}"; do
	printf '%s %s\n' "$n.tar" "${REFS[$n]}"
done | sort >"$OUT/list.txt.tmp"
mv "$OUT/list.txt.tmp" "$OUT/list.txt"
log "done: $BUILT built, $((${#REFS[@]} - BUILT)) up to date; $OUT/list.txt"
