package contract

import (
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/rpcerr"
)

func TestParseCapabilityIsTheOneRuleForControllerAndNode(t *testing.T) {
	type M = csi.VolumeCapability_AccessMode_Mode
	const (
		SNW  = csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER
		SNRO = csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY
		SNSW = csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER
		SNMW = csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER
		MNRO = csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY
		MNSW = csi.VolumeCapability_AccessMode_MULTI_NODE_SINGLE_WRITER
		MNMW = csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER
	)
	for _, tc := range []struct {
		name    string
		cap     *csi.VolumeCapability
		wantErr string // empty: accepted
	}{
		{"SNW ext4", mountCap(SNW, "ext4"), ""},
		{"SNW xfs", mountCap(SNW, "xfs"), ""},
		{"SNW default fs", mountCap(SNW, ""), ""},
		{"SNRO mount", mountCap(SNRO, "ext4"), ""},
		{"SNSW mount", mountCap(SNSW, "ext4"), ""},
		{"SNMW mount", mountCap(SNMW, "ext4"), ""},
		{"MNRO mount", mountCap(MNRO, "ext4"), ""},
		{"SNW block", blockCap(SNW), ""},
		{"MNMW block", blockCap(MNMW), ""},
		{"MNSW block", blockCap(MNSW), ""},
		{"MNRO block", blockCap(MNRO), ""},
		{"MNMW mount", mountCap(MNMW, "ext4"), "use volumeMode: Block"},
		{"MNSW mount", mountCap(MNSW, "xfs"), "cluster file system"},
		{"btrfs", mountCap(SNW, "btrfs"), "use one of ext4, xfs"},
		{"XFS in upper case", mountCap(SNW, "XFS"), ""},
		{"Ext4 in mixed case", mountCap(SNRO, "Ext4"), ""},
		{"mount flag with a space", &csi.VolumeCapability{AccessMode: &csi.VolumeCapability_AccessMode{Mode: SNW},
			AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{MountFlags: []string{"noatime nodev"}}}}, "malformed"},
		{"mount flags of a file system", flagsCap("noatime", "discard,nobarrier", "data=ordered"), ""},
		{"bind as a mount flag", flagsCap("noatime", "bind"), "not a file system mount option"},
		{"remount inside a list", flagsCap("ro,remount"), "not a file system mount option"},
		{"propagation as a mount flag", flagsCap("rshared"), "not a file system mount option"},
		{"empty option in a list", flagsCap("noatime,,nodev"), "not a file system mount option"},
		{"control character", flagsCap("noatime\x00"), "malformed"},
		{"no access mode", &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}}}, "access mode"},
		{"no access type", &csi.VolumeCapability{AccessMode: &csi.VolumeCapability_AccessMode{Mode: SNW}}, "access type"},
		{"unknown mode", blockCap(M(99)), "not supported"},
		{"nil", nil, "required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseCapability(tc.cap)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("rejected: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("err = %v, want one mentioning %q", err, tc.wantErr)
			case tc.wantErr != "":
				if got := rpcerr.Code(err); got != codes.InvalidArgument {
					t.Fatalf("code %v, want InvalidArgument", got)
				}
			}
		})
	}
}

func mountCap(mode csi.VolumeCapability_AccessMode_Mode, fs string) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode},
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: fs}},
	}
}

func blockCap(mode csi.VolumeCapability_AccessMode_Mode) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode},
		AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
	}
}

func TestParseCapabilityNormalizesTheFileSystem(t *testing.T) {
	for in, want := range map[string]string{"": "ext4", "XFS": "xfs", "ext4": "ext4", "Ext4": "ext4"} {
		vc, err := ParseCapability(mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER, in))
		if err != nil || vc.FSType != want {
			t.Errorf("fsType %q: got %q, %v; want %q", in, vc.FSType, err, want)
		}
	}
}

func flagsCap(flags ...string) *csi.VolumeCapability {
	return &csi.VolumeCapability{AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{MountFlags: flags}}}
}
