package thin

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/dm"
)

func TestMessagesAreTheKernelsWords(t *testing.T) {
	tests := []struct{ got, want string }{
		{CreateThinMessage(0), "create_thin 0"},
		{CreateThinMessage(MaxDevID), "create_thin 16777215"},
		{CreateSnapMessage(7, 3), "create_snap 7 3"},
		{DeleteMessage(12), "delete 12"},
		{SetTransactionIDMessage(0, 1), "set_transaction_id 0 1"},
		{SetTransactionIDMessage(1<<64-2, 1<<64-1), "set_transaction_id 18446744073709551614 18446744073709551615"},
		{ReserveMetadataSnapMessage, "reserve_metadata_snap"},
		{ReleaseMetadataSnapMessage, "release_metadata_snap"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func TestPoolMethodsRefuseIDsBeyond24BitsBeforeAnyIoctl(t *testing.T) {
	p := Pool{Name: "pool"} // no Control: an ioctl would panic
	for name, err := range map[string]error{
		"CreateThin":        p.CreateThin(MaxDevID + 1),
		"CreateSnap id":     p.CreateSnap(MaxDevID+1, 1),
		"CreateSnap origin": p.CreateSnap(1, MaxDevID+1),
		"Delete":            p.Delete(1 << 31),
	} {
		if !errors.Is(err, dm.ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", name, err)
		}
	}
}

func TestMessageFailuresMapToSentinels(t *testing.T) {
	msgErr := func(errno unix.Errno) error {
		return &dm.Error{Op: "DM_TARGET_MSG", Name: "pool", Detail: "x", Errno: errno}
	}
	createClasses := []errClass{{unix.EEXIST, ErrIDExists}, {unix.ENODATA, ErrIDNotFound}, {unix.EOPNOTSUPP, ErrPoolReadOnly}}
	tests := []struct {
		name  string
		errno unix.Errno
		want  error
	}{
		{"id in use", unix.EEXIST, ErrIDExists},
		{"no such id", unix.ENODATA, ErrIDNotFound},
		{"read-only pool", unix.EOPNOTSUPP, ErrPoolReadOnly},
		{"pool device gone", unix.ENXIO, dm.ErrNotFound},
		{"out of metadata space is left as the errno", unix.ENOSPC, unix.ENOSPC},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := classify(msgErr(tt.errno), createClasses...)
			if !errors.Is(err, tt.want) || !errors.Is(err, tt.errno) {
				t.Errorf("%v: want %v and the errno", err, tt.want)
			}
			var de *dm.Error
			if !errors.As(err, &de) {
				t.Errorf("%v: the *dm.Error is lost", err)
			}
		})
	}
	if classify(nil, createClasses...) != nil {
		t.Error("nil error classified")
	}
}
