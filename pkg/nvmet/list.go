package nvmet

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"strings"
)

// List returns all our subsystems as configfs has them, in the normalized form (see
// Subsystem.Normalized), sorted by NQN. Foreign subsystems are left out. The reconciler uses it
// to find our subsystems that are no longer wanted; to repair a wanted one, call
// EnsureSubsystem, which writes nothing when nothing differs.
func (t *Target) List(ctx context.Context) ([]Subsystem, error) {
	if err := t.checkPrefix(); err != nil {
		return nil, err
	}
	names, err := t.readDir(t.path("subsystems"))
	if err != nil {
		return nil, fmt.Errorf("nvmet: listing subsystems: %w", err)
	}
	links, err := t.portLinks()
	if err != nil {
		return nil, fmt.Errorf("nvmet: listing port links: %w", err)
	}
	var out []Subsystem
	for _, nqn := range names {
		if !t.ours(nqn) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		s, err := t.readSubsystem(nqn, links[nqn])
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed while we listed
		}
		if err != nil {
			return nil, fmt.Errorf("nvmet: reading subsystem %s: %w", nqn, err)
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b Subsystem) int { return strings.Compare(a.NQN, b.NQN) })
	return out, nil
}

// NQNs returns the NQNs of our subsystems, sorted, from one directory read: cheaper than List
// when only the names matter.
func (t *Target) NQNs(ctx context.Context) ([]string, error) {
	if err := t.checkPrefix(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	names, err := t.readDir(t.path("subsystems"))
	if err != nil {
		return nil, fmt.Errorf("nvmet: listing subsystems: %w", err)
	}
	names = slices.DeleteFunc(names, func(n string) bool { return !t.ours(n) })
	slices.Sort(names)
	return names, nil
}

// Get returns our subsystem nqn as configfs has it (see List), or ErrNotFound.
func (t *Target) Get(ctx context.Context, nqn string) (Subsystem, error) {
	if err := t.own(nqn); err != nil {
		return Subsystem{}, err
	}
	if err := ctx.Err(); err != nil {
		return Subsystem{}, err
	}
	links, err := t.portLinks()
	if err != nil {
		return Subsystem{}, fmt.Errorf("nvmet: listing port links: %w", err)
	}
	s, err := t.readSubsystem(nqn, links[nqn])
	if errors.Is(err, fs.ErrNotExist) {
		return Subsystem{}, fmt.Errorf("nvmet: subsystem %s: %w", nqn, ErrNotFound)
	}
	if err != nil {
		return Subsystem{}, fmt.Errorf("nvmet: reading subsystem %s: %w", nqn, err)
	}
	return s, nil
}

func (t *Target) readSubsystem(nqn string, ports []uint16) (Subsystem, error) {
	s := Subsystem{NQN: nqn, Ports: sortedSet(ports)}
	serial, err := t.read(t.subsysPath(nqn, "attr_serial"))
	if err != nil {
		return Subsystem{}, err
	}
	s.Serial = strings.TrimRight(serial, " ")
	if s.Model, err = t.read(t.subsysPath(nqn, "attr_model")); err != nil {
		return Subsystem{}, err
	}
	if s.Namespace, err = t.readNamespace(nqn); err != nil {
		return Subsystem{}, err
	}
	hosts, err := t.allowedHosts(nqn)
	if err != nil {
		return Subsystem{}, err
	}
	s.Hosts = sortedSet(slices.Collect(maps.Keys(hosts)))
	return s, nil
}
