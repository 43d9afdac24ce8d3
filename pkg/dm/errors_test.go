package dm

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"
)

func TestErrorsWrapTheSentinelAndTheErrno(t *testing.T) {
	tests := []struct {
		op       string
		errno    unix.Errno
		sentinel error
	}{
		{opCreate, unix.EBUSY, ErrExists},
		{opRemove, unix.EBUSY, ErrBusy},
		{opTableLoad, unix.EBUSY, ErrBusy},
		{opStatus, unix.ENXIO, ErrNotFound},
		{opRemove, unix.ENXIO, ErrNotFound},
		{opTargetMsg, unix.EEXIST, ErrExists},
		{opTableLoad, unix.EINVAL, ErrInvalid},
		{opTargetMsg, unix.ENODATA, nil},
		{opTargetMsg, unix.EOPNOTSUPP, nil},
	}
	all := []error{ErrNotFound, ErrExists, ErrBusy, ErrInvalid}
	for _, tt := range tests {
		err := error(&Error{Op: tt.op, Name: "dev", Errno: tt.errno})
		if !errors.Is(err, tt.errno) {
			t.Errorf("%v: errno not reachable", err)
		}
		for _, s := range all {
			if got, want := errors.Is(err, s), s == tt.sentinel; got != want {
				t.Errorf("%s %v: errors.Is(%v) = %v, want %v", tt.op, tt.errno, s, got, want)
			}
		}
	}
}

func TestErrorMessageNamesTheIoctlDeviceAndMessage(t *testing.T) {
	tests := []struct {
		err  Error
		want string
	}{
		{Error{Op: opRemove, Name: "vol-1", Errno: unix.EBUSY}, "dm: DM_DEV_REMOVE vol-1: device or resource busy"},
		{Error{Op: opTargetMsg, Name: "pool", Detail: "create_thin 5", Errno: unix.EEXIST}, `dm: DM_TARGET_MSG pool "create_thin 5": file exists`},
		{Error{Op: opListDevices, Errno: unix.EACCES}, "dm: DM_LIST_DEVICES: permission denied"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
}
