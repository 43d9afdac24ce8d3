package mounter

import (
	"context"
	"fmt"

	"k8s.io/mount-utils"
)

// NeedResize implements Interface with mount-utils' ResizeFs (blockdev --getro, blkid).
func (m *Mounter) NeedResize(ctx context.Context, device, mountPath string) (bool, error) {
	need, err := mount.NewResizeFs(m.bound(ctx)).NeedResize(device, mountPath)
	if err != nil {
		return false, fmt.Errorf("mounter: does %s need a resize: %w", device, err)
	}
	return need, nil
}

// Resize implements Interface with mount-utils' ResizeFs (resize2fs or xfs_growfs, online).
func (m *Mounter) Resize(ctx context.Context, device, mountPath string) (bool, error) {
	ran, err := mount.NewResizeFs(m.bound(ctx)).Resize(device, mountPath)
	if err != nil {
		return false, fmt.Errorf("mounter: resizing %s: %w", device, err)
	}
	return ran, nil
}
