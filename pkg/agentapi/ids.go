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
