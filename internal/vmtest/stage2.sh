# Stage 2 of the nvmeof-csi test VM, run by bash as PID 1 in the overlay of the host root.
# Loads the kernel modules the tests need, builds the guest-only network, mounts the scratch
# disk, runs the test binary with its output on ttyS1 and leaves its exit code on the share.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
share=/run/vmshare
exec </dev/null >/dev/ttyS0 2>&1

finish() {
  echo "$1" >"$share/exitcode"
  dmesg >"$share/dmesg" 2>/dev/null
  sync
  busybox poweroff -f
}
fail() {
  echo "vm-stage2: $*"
  finish 125
}

mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs shm /dev/shm
ln -sfn /proc/self/fd /dev/fd

# Modules come from the unpacked guest kernel in the cache; the host's kmod loads them, and the
# kernel's own requests (request_module) find the same tree.
kver=$(<"$share/kver")
mkdir -p /lib/modules
ln -sfn "$(<"$share/moddir")" "/lib/modules/$kver"
modprobe -a configfs loop dm-thin-pool dm-crypt ext4 xfs virtio_blk veth dummy crc32_generic \
  nvmet nvmet-tcp nvmet-rdma nvme-tcp nvme-rdma rdma_rxe nf_tables || fail "modprobe failed"
mount -t configfs configfs /sys/kernel/config || fail "cannot mount configfs"
[ -e /dev/nvme-fabrics ] || fail "no /dev/nvme-fabrics"

ip link set lo up
if [ -e "$share/machine-addr" ]; then
  # A machine of a cluster: eth0 is its port on the cluster's private network (frames go only
  # to the other machines' qemu processes), with a Soft-RoCE device on it.
  hostname "$(<"$share/machine-name")"
  modprobe virtio_net || fail "modprobe virtio_net failed"
  for _ in $(seq 100); do [ -e /sys/class/net/eth0 ] && break; sleep 0.05; done
  ip link set eth0 mtu 9000 || fail "cannot set eth0's MTU"
  ip addr add "$(<"$share/machine-addr")" dev eth0 || fail "cannot address eth0"
  ip link set eth0 up || fail "cannot bring up eth0"
  rdma link add rxe0 type rxe netdev eth0 || fail "cannot create Soft-RoCE device rxe0"
else
  # Guest-only network: a veth pair carrying the two portal addresses, a Soft-RoCE device on
  # each end. Nothing here reaches outside the VM (qemu runs with -nic none).
  ip link add nvt0 type veth peer name nvt1 || fail "cannot create veth"
  ip addr add "$(<"$share/portal-a")/24" dev nvt0
  ip addr add "$(<"$share/portal-b")/24" dev nvt1
  ip link set nvt0 up && ip link set nvt1 up || fail "cannot bring up veth"
  rdma link add rxe0 type rxe netdev nvt0 || fail "cannot create Soft-RoCE device rxe0"
  rdma link add rxe1 type rxe netdev nvt1 || fail "cannot create Soft-RoCE device rxe1"
fi

# LVM without udev (none runs here): libdm creates the /dev/mapper nodes itself.
cat >/etc/lvm/lvm.conf <<'LVM'
devices {
	obtain_device_list_from_udev = 0
	use_devicesfile = 0
}
activation {
	udev_sync = 0
	udev_rules = 0
	monitoring = 0
}
LVM

scratch=$(<"$share/scratch-dir")
mkdir -p "$scratch"
scratchdev=/dev/vda
for f in /sys/block/vd*/serial; do
  [ "$(cat "$f" 2>/dev/null)" = scratch ] && scratchdev=/dev/$(basename "$(dirname "$f")")
done
mount "$scratchdev" "$scratch" || fail "cannot mount the scratch disk"

while IFS= read -r -d '' kv; do export "$kv"; done <"$share/env"
mapfile -d '' args <"$share/args"
cd "$(<"$share/workdir")" || fail "no working directory"
stty -F /dev/ttyS1 raw -echo
dmesg -n 4
"$share/test.bin" "${args[@]}" >/dev/ttyS1 2>&1
finish $?
