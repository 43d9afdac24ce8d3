package agentapi

import (
	"crypto/sha256"
	"encoding/hex"
)

// VolumeID is the agent's ID of the volume named name: "vol-" and 32 hex digits of the name's
// SHA-256. The same name always gives the same ID, which makes CreateVolume idempotent without
// a lookup table, and lets a caller find a volume it may already have created.
func VolumeID(name string) string { return "vol-" + digest(name) }

// SnapshotID is the agent's ID of the snapshot named name: "snap-" and 32 hex digits.
func SnapshotID(name string) string { return "snap-" + digest(name) }

func digest(name string) string {
	sum := sha256.Sum256([]byte(name))
	return hex.EncodeToString(sum[:16])
}

// GroupSnapshotID is the ID of the group snapshot named name: "grp-" and 32 hex digits. Its
// member snapshots carry it (Snapshot.group_id), whichever storage nodes they are on.
func GroupSnapshotID(name string) string { return "grp-" + digest(name) }

// IsGroupSnapshotID reports whether id has the form GroupSnapshotID gives.
func IsGroupSnapshotID(id string) bool {
	const prefix = "grp-"
	if len(id) != len(prefix)+32 || id[:len(prefix)] != prefix {
		return false
	}
	for _, c := range id[len(prefix):] {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
