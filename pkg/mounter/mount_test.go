package mounter

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"k8s.io/mount-utils"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
)

func TestClassifyMountError(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want codes.Code
	}{
		{mount.NewMountError(mount.FormatFailed, "mkfs failed"), codes.FailedPrecondition},
		{mount.NewMountError(mount.FilesystemMismatch, "xfs, not ext4"), codes.FailedPrecondition},
		{mount.NewMountError(mount.HasFilesystemErrors, "fsck found uncorrected errors"), codes.FailedPrecondition},
		{mount.NewMountError(mount.UnknownMountError, "wrong fs type, bad option"), codes.FailedPrecondition},
		{context.DeadlineExceeded, codes.DeadlineExceeded},
	} {
		if got := rpcerr.Code(classifyMountError(tc.err)); got != tc.want {
			t.Errorf("%v: code %s, want %s", tc.err, got, tc.want)
		}
	}
}
