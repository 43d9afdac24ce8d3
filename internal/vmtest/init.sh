#!/bin/busybox sh
# Stage 1 of the nvmeof-csi test VM, run from the initramfs: mount the host root (read-only,
# virtio-9p) under a tmpfs overlay so the guest can write anywhere without touching the host,
# mount the writable share, and switch to stage 2 (a script on that share).
bb=/bin/busybox
fail() {
  echo "vm-init: $*"
  $bb poweroff -f
}
$bb mkdir -p /proc /sys /dev /lower /rw /newroot
$bb mount -t proc proc /proc
$bb mount -t sysfs sysfs /sys
$bb mount -t devtmpfs devtmpfs /dev
for m in $($bb cat /modules.list); do
  $bb insmod "/mod/$m" || fail "insmod $m failed"
done
$bb mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=loose,ro hostroot /lower ||
  fail "cannot mount the host root over 9p"
$bb mount -t tmpfs -o mode=0755 rw /rw
$bb mkdir -p /rw/upper /rw/work
$bb mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot ||
  fail "cannot mount the overlay root"
$bb mount -t tmpfs -o mode=0755 run /newroot/run
$bb mkdir -p /newroot/run/vmshare
$bb mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 vmshare /newroot/run/vmshare ||
  fail "cannot mount the result share"
for d in proc sys dev; do
  $bb mount --move "/$d" "/newroot/$d" || fail "cannot move /$d"
done
exec $bb switch_root /newroot /bin/bash /run/vmshare/stage2.sh
