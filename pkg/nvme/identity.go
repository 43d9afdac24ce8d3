package nvme

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// DefaultIdentityDir is where nvme-cli and the kernel tooling keep the host identity.
const DefaultIdentityDir = "/etc/nvme"

// UUIDNQNPrefix is the prefix of an NQN formed from a UUID (NVMe base spec 4.5).
const UUIDNQNPrefix = "nqn.2014-08.org.nvmexpress:uuid:"

// Identity is the NVMe host identity of this node: the host NQN the targets allow, and the
// host ID that goes with it. Both are sent with every connect.
type Identity struct {
	HostNQN string
	HostID  string
}

// LoadOrCreateIdentity reads dir/hostnqn and dir/hostid, creating whichever is missing:
//   - neither: a random UUID v4 becomes the host ID and the host NQN is its UUID form
//     (UUIDNQNPrefix + host ID);
//   - only hostnqn: the host ID is taken from a UUID-form host NQN, else a random UUID;
//   - only hostid: the host NQN is its UUID form.
//
// Created files are written to a temporary file and hard-linked into place, which never
// replaces an existing file: when several processes race, all of them end up with the first
// one's values. Values read are validated (errors wrap ErrInvalidIdentity); surrounding
// whitespace is ignored. dir is created if needed. The identity must persist on the host
// (never be baked into an image), or targets will see a new host after every restart.
func LoadOrCreateIdentity(dir string) (Identity, error) {
	nqnPath := filepath.Join(dir, "hostnqn")
	idPath := filepath.Join(dir, "hostid")
	nqn, haveNQN, err := readIdentityFile(nqnPath, ValidNQN)
	if err != nil {
		return Identity{}, err
	}
	id, haveID, err := readIdentityFile(idPath, ValidUUID)
	if err != nil {
		return Identity{}, err
	}
	if (!haveNQN || !haveID) && dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return Identity{}, fmt.Errorf("nvme: host identity: %w", err)
		}
	}
	if !haveID {
		id = uuidFromNQN(nqn)
		if id == "" {
			if id, err = newUUID(); err != nil {
				return Identity{}, err
			}
		}
		if id, err = createIdentityFile(idPath, id, ValidUUID); err != nil {
			return Identity{}, err
		}
	}
	if !haveNQN {
		if nqn, err = createIdentityFile(nqnPath, UUIDNQNPrefix+id, ValidNQN); err != nil {
			return Identity{}, err
		}
	}
	return Identity{HostNQN: nqn, HostID: id}, nil
}

// uuidFromNQN returns the UUID of a UUID-form NQN, or "".
func uuidFromNQN(nqn string) string {
	u, ok := strings.CutPrefix(nqn, UUIDNQNPrefix)
	if !ok || ValidUUID(u) != nil {
		return ""
	}
	return strings.ToLower(u)
}

// newUUID returns a random (version 4, RFC 9562) UUID.
func newUUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("nvme: generating a host ID: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}

// readIdentityFile returns the trimmed content of path and whether it exists.
func readIdentityFile(path string, valid func(string) error) (string, bool, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("nvme: host identity: %w", err)
	}
	v := strings.TrimSpace(string(raw))
	if err := valid(v); err != nil {
		return "", false, fmt.Errorf("%w: %s: %v", ErrInvalidIdentity, path, err)
	}
	return v, true, nil
}

// createIdentityFile creates path holding value unless it already exists, in which case the
// existing value wins. It returns the value now in the file.
func createIdentityFile(path, value string, valid func(string) error) (string, error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("nvme: host identity: %w", err)
	}
	defer func() { _ = os.Remove(tmp.Name()) }() // a no-op once linked into place
	_, err = tmp.WriteString(value + "\n")
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("nvme: host identity: writing %s: %w", tmp.Name(), err)
	}
	err = os.Link(tmp.Name(), path)
	if errors.Is(err, fs.ErrExist) {
		v, ok, err := readIdentityFile(path, valid)
		if err == nil && !ok {
			err = fmt.Errorf("nvme: host identity: %s vanished", path)
		}
		return v, err
	}
	if err != nil {
		// A file system without hard links: fall back to rename, which is atomic but may
		// replace a file a concurrent creator has just put there.
		if err := os.Rename(tmp.Name(), path); err != nil {
			return "", fmt.Errorf("nvme: host identity: %w", err)
		}
	}
	syncDir(dir)
	return value, nil
}

// syncDir makes a new directory entry durable; failures only cost durability, not
// correctness, so they are ignored.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}
