package nvmet

import (
	"errors"
	"fmt"
	"io/fs"
	"strconv"
)

// ensurePortLinks links subsystem nqn into exactly the ports want (which must exist), creating
// ANA group anaGroup on them if missing, and removes its links from every other port. Entries
// are named after the subsystem, and only entries named nqn are ever touched.
func (t *Target) ensurePortLinks(nqn string, want []uint16, anaGroup uint32) error {
	t.portMu.RLock()
	defer t.portMu.RUnlock()
	for _, id := range want {
		if anaGroup != DefaultANAGroup {
			if err := t.ensureANAGroup(id, anaGroup); err != nil {
				return err
			}
		}
		link := t.portPath(id, "subsystems", nqn)
		ok, err := t.exists(link)
		if err != nil || ok {
			if err != nil {
				return err
			}
			continue
		}
		err = t.fs().Symlink(t.subsysPath(nqn), link)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("port %d: %w: %w", id, ErrNotFound, err)
		case errors.Is(err, fs.ErrExist):
			return fmt.Errorf("port %d already links the subsystem under another name: %w", id, err)
		case err != nil:
			return fmt.Errorf("linking to port %d: %w", id, err)
		}
	}
	ports, err := t.readDir(t.path("ports"))
	if err != nil {
		return err
	}
	keep := map[string]bool{}
	for _, id := range want {
		keep[strconv.FormatUint(uint64(id), 10)] = true
	}
	for _, name := range ports {
		if keep[name] {
			continue
		}
		if err := t.unlink(t.path("ports", name, "subsystems", nqn)); err != nil {
			return fmt.Errorf("unlinking from port %s: %w", name, err)
		}
	}
	return nil
}

// portLinks maps each subsystem NQN with our prefix to the IDs of the ports linking it.
func (t *Target) portLinks() (map[string][]uint16, error) {
	ports, err := t.readDir(t.path("ports"))
	if err != nil {
		return nil, err
	}
	links := map[string][]uint16{}
	for _, name := range ports {
		id, err := strconv.ParseUint(name, 10, 16)
		if err != nil {
			continue
		}
		entries, err := t.readDir(t.path("ports", name, "subsystems"))
		if err != nil {
			return nil, err
		}
		for _, nqn := range entries {
			if t.ours(nqn) {
				links[nqn] = append(links[nqn], uint16(id))
			}
		}
	}
	return links, nil
}
