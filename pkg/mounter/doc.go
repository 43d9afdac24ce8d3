// Package mounter is the node plugin's one window onto the host's mount table and file system
// tools: format-and-mount, bind mounts, unmount and cleanup, mount point and device identity
// checks, online resize, and file system and block device statistics.
//
// It wraps k8s.io/mount-utils (SafeFormatAndMount, ResizeFs, mountinfo parsing) and is built
// once, with New, by the plugin's main. Every program it runs (blkid, fsck, mkfs.*, mount,
// umount, resize2fs, xfs_growfs, blockdev) goes through an exec seam (k8s.io/utils/exec) that
// binds it to the caller's context and runs it with LC_ALL=C, including the ones mount-utils
// starts itself: when the context ends first, the call returns at once with the context's
// error, and the process is killed (a process stuck in the kernel, e.g. on I/O to a device
// whose paths are all down, finishes in the background, and the caller's keylock locks stay
// held until it does: see keylock.Outlive). At most Options.MaxConcurrentFormats
// mkfs processes run at a time; the others wait, bounded by their context.
//
// A *Mounter holds no per-call state; its methods may be called concurrently. Callers
// serialize work on the same path (the CSI node service locks per volume).
package mounter
