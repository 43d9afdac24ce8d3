#!/usr/bin/env bash
# Installs what building and testing nvmeof-csi need on a fresh Debian bookworm machine, and
# fetches the guest kernel the VM test tier boots. Idempotent: a second run with everything in
# place only checks and returns.
#
#   NVMEOF_VM_CACHE   where the guest kernel is unpacked (default /var/cache/nvmeof-csi)
#   NVMEOF_KERNEL     a specific linux-image package (default: the newest
#                     linux-image-<GUEST_KERNEL_SERIES>.*+deb12-amd64, series from versions.env)
set -euo pipefail

# shellcheck source=../versions.env
source "$(dirname "${BASH_SOURCE[0]}")/../versions.env"
CACHE=${NVMEOF_VM_CACHE:-/var/cache/nvmeof-csi}
# apt-cache search's pattern of the series' kernel packages.
KERNEL_PATTERN="^linux-image-${GUEST_KERNEL_SERIES//./\\.}\\.[0-9]+\\+deb12-amd64\$"

# Debian packages: tool -> package. Checked by command so the quick path runs no apt at all.
declare -A PKGS=(
  [qemu-system-x86_64]=qemu-system-x86
  [/bin/busybox]=busybox-static
  [lvm]=lvm2
  [thin_check]=thin-provisioning-tools
  [mkfs.ext4]=e2fsprogs
  [mkfs.xfs]=xfsprogs
  [fio]=fio
  [ip]=iproute2
  [rdma]=iproute2
  [modprobe]=kmod
  [depmod]=kmod
  [cpio]=cpio
  [xz]=xz-utils
  [cryptsetup]=cryptsetup-bin
  [nft]=nftables
  [protoc]=protobuf-compiler
  [blockdev]=util-linux
  [stty]=coreutils
  # The Kubernetes tier (make test-k8s): containerd and runc for the kubelet in the guest,
  # the bridge CNI plugin for pod networking on a guest-only bridge, buildah and debootstrap
  # for images without a Docker engine or registry.
  [containerd]=containerd
  [runc]=runc
  [/usr/lib/cni/bridge]=containernetworking-plugins
  [buildah]=buildah
  [debootstrap]=debootstrap
)

missing=()
for tool in "${!PKGS[@]}"; do
  if [[ $tool == /* ]]; then [[ -x $tool ]] && continue; else command -v "$tool" >/dev/null 2>&1 && continue; fi
  missing+=("${PKGS[$tool]}")
done
if ((${#missing[@]})); then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The guest kernel: downloaded, never installed on the host.
pkg=${NVMEOF_KERNEL:-}
if [[ -z $pkg ]]; then
  if [[ -f $CACHE/kernel/package ]] && [[ -z ${NVMEOF_KERNEL_REFRESH:-} ]]; then
    pkg=$(<"$CACHE/kernel/package")
  else
    pkg=$(apt-cache search --names-only "$KERNEL_PATTERN" | awk '{print $1}' | sort -V | tail -n 1)
    if [[ -z $pkg ]]; then
      apt-get update -qq
      pkg=$(apt-cache search --names-only "$KERNEL_PATTERN" | awk '{print $1}' | sort -V | tail -n 1)
    fi
  fi
fi
[[ -n $pkg ]] || { echo "install-deps: no linux-image-$GUEST_KERNEL_SERIES.*+deb12-amd64 package found (is bookworm-security in apt sources?)" >&2; exit 1; }
kver=${pkg#linux-image-}

kdir=$CACHE/kernel
if [[ -f $kdir/ready ]] && [[ $(<"$kdir/ready") == "$kver" ]]; then
  echo "install-deps: ok (guest kernel $kver in $kdir)"
  exit 0
fi

echo "install-deps: fetching guest kernel $pkg"
tmp=$(mktemp -d)
chown _apt "$tmp" 2>/dev/null || true  # apt-get download drops to _apt when it can
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download -qq "$pkg" >/dev/null)
dpkg-deb -x "$tmp"/*.deb "$tmp/root"

rm -rf "$kdir.new"
mkdir -p "$kdir.new/lib/modules"
cp "$tmp/root/boot/vmlinuz-$kver" "$kdir.new/vmlinuz"
mv "$tmp/root/lib/modules/$kver" "$kdir.new/lib/modules/$kver"
# busybox insmod and the kernel's own loader in the guest want plain .ko files.
find "$kdir.new/lib/modules/$kver" -name '*.ko.xz' -print0 | xargs -0 -r -P "$(nproc)" -n 64 xz -d
depmod -b "$kdir.new" "$kver"
echo "$pkg" >"$kdir.new/package"
echo "$kver" >"$kdir.new/ready"
rm -rf "$kdir"
mv "$kdir.new" "$kdir"
echo "install-deps: guest kernel $kver ready in $kdir"
