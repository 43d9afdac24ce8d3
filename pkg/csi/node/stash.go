package node

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// stashVersion is the format version written into every stash file.
const stashVersion = 1

// volumeStash is what NodeStageVolume records for the other RPCs (see the package doc).
type volumeStash struct {
	Version     int    `json:"version"`
	VolumeID    string `json:"volumeID"`
	StagingPath string `json:"stagingPath"`
	SubsysNQN   string `json:"subsysNQN"`
	NSUUID      string `json:"nsUUID"`
	Transport   string `json:"transport"`
	Portals     string `json:"portals"`
	Block       bool   `json:"block"`
	FSType      string `json:"fsType,omitempty"`
	// Device is the namespace device found at the last stage, for humans reading the file;
	// the code always looks the device up again by NQN and UUID.
	Device string `json:"device,omitempty"`
	// Connection is the connection tuning the volume was staged with (volume_context keys),
	// for the healer's reconnects; stashes written before it have none: the defaults apply.
	Connection map[string]string `json:"connection,omitempty"`
	// DHCHAP are the keys the volume was staged with, for the healer's reconnects: the file
	// is the node plugin's alone (0600 in a 0700 directory), like the kernel's own copy.
	DHCHAP dhchapKeys `json:"dhchap,omitzero"`
}

// stashStore keeps one stash file per volume in dir.
type stashStore struct{ dir string }

func (s stashStore) path(volumeID string) string {
	sum := sha256.Sum256([]byte(volumeID))
	return filepath.Join(s.dir, hex.EncodeToString(sum[:])+".json")
}

// load returns the volume's stash, or nil when there is none.
func (s stashStore) load(volumeID string) (*volumeStash, error) {
	raw, err := os.ReadFile(s.path(volumeID))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the stash of volume %s: %w", volumeID, err)
	}
	var st volumeStash
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, fmt.Errorf("stash %s of volume %s: %w", s.path(volumeID), volumeID, err)
	}
	if st.VolumeID != volumeID || st.Version != stashVersion {
		return nil, fmt.Errorf("stash %s is version %d of volume %q, want version %d of %q",
			s.path(volumeID), st.Version, st.VolumeID, stashVersion, volumeID)
	}
	return &st, nil
}

// save writes the stash atomically: a reader sees the old file or the new one, never a torn
// one, and the new one survives a crash once save returns.
func (s stashStore) save(st *volumeStash) error {
	st.Version = stashVersion
	raw, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("stash directory: %w", err)
	}
	tmp, err := os.CreateTemp(s.dir, ".stash-*")
	if err != nil {
		return fmt.Errorf("writing the stash of volume %s: %w", st.VolumeID, err)
	}
	defer func() { _ = os.Remove(tmp.Name()) }() // a no-op after the rename
	_, err = tmp.Write(append(raw, '\n'))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), s.path(st.VolumeID))
	}
	if err != nil {
		return fmt.Errorf("writing the stash of volume %s: %w", st.VolumeID, err)
	}
	return syncDir(s.dir)
}

// all returns the IDs of every volume with a stash, in no particular order. A file that is
// not a readable stash is left out (load reports it for its own volume).
func (s stashStore) all() ([]string, error) {
	entries, err := os.ReadDir(s.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing stashes: %w", err)
	}
	var ids []string
	for _, e := range entries {
		if e.IsDir() || filepath.Ext(e.Name()) != ".json" || e.Name()[0] == '.' {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(s.dir, e.Name()))
		if err != nil {
			continue
		}
		var st volumeStash
		if json.Unmarshal(raw, &st) == nil && st.VolumeID != "" && s.path(st.VolumeID) == filepath.Join(s.dir, e.Name()) {
			ids = append(ids, st.VolumeID)
		}
	}
	return ids, nil
}

// remove deletes the volume's stash; a missing one is fine.
func (s stashStore) remove(volumeID string) error {
	err := os.Remove(s.path(volumeID))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("removing the stash of volume %s: %w", volumeID, err)
	}
	return syncDir(s.dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}
