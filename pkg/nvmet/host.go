package nvmet

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"syscall"
)

// Host is a host object (hosts/<nqn>) with its optional DH-HMAC-CHAP settings. Hosts are shared
// by all subsystems that allow them; a host with a key set here is authenticated by every
// subsystem it connects to.
type Host struct {
	// NQN is the host NQN.
	NQN string
	// DHCHAPKey is the host's secret ("DHHC-1:..."); empty leaves the current key.
	DHCHAPKey string
	// DHCHAPCtrlKey is the controller's secret for bidirectional authentication; empty leaves
	// the current one.
	DHCHAPCtrlKey string
	// DHCHAPHash is e.g. "hmac(sha256)"; empty leaves the current one (the kernel's default is
	// hmac(sha256)).
	DHCHAPHash string
	// DHCHAPDHGroup is e.g. "ffdhe2048" or "null"; empty leaves the current one.
	DHCHAPDHGroup string
}

// EnsureHost creates host object h.NQN if missing and sets its non-empty DH-HMAC-CHAP fields.
// A host with a key is kept when no subsystem allows it any more, until RemoveHost.
func (t *Target) EnsureHost(ctx context.Context, h Host) error {
	if err := ValidateNQN(h.NQN); err != nil {
		return fmt.Errorf("nvmet: host: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	t.hostMu.Lock()
	defer t.hostMu.Unlock()
	if err := t.mkdir(t.path("hosts", h.NQN)); err != nil {
		return fmt.Errorf("nvmet: creating host %s: %w", h.NQN, err)
	}
	for _, a := range []struct{ name, value string }{
		{"dhchap_hash", h.DHCHAPHash},
		{"dhchap_dhgroup", h.DHCHAPDHGroup},
		{"dhchap_key", h.DHCHAPKey},
		{"dhchap_ctrl_key", h.DHCHAPCtrlKey},
	} {
		if a.value == "" {
			continue
		}
		if err := t.ensureAttr(t.path("hosts", h.NQN, a.name), a.value); err != nil {
			return fmt.Errorf("nvmet: host %s: %w", h.NQN, err)
		}
	}
	return nil
}

// RemoveHost removes host object nqn, keys included. It fails (EBUSY) while a subsystem still
// allows the host; an absent host is success.
func (t *Target) RemoveHost(ctx context.Context, nqn string) error {
	if err := ValidateNQN(nqn); err != nil {
		return fmt.Errorf("nvmet: host: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	t.hostMu.Lock()
	defer t.hostMu.Unlock()
	if err := t.rmdir(t.path("hosts", nqn)); err != nil {
		return fmt.Errorf("nvmet: removing host %s: %w", nqn, err)
	}
	return nil
}

// AllowHost lets host connect to subsystem nqn, which must exist (ErrNotFound).
func (t *Target) AllowHost(ctx context.Context, nqn, host string) error {
	return t.changeHost(ctx, nqn, host, true)
}

// DisallowHost stops host from connecting to subsystem nqn; an absent subsystem or host is
// success. Controllers the host already has stay connected: the kernel checks allowed_hosts only
// when a controller is created.
func (t *Target) DisallowHost(ctx context.Context, nqn, host string) error {
	return t.changeHost(ctx, nqn, host, false)
}

func (t *Target) changeHost(ctx context.Context, nqn, host string, allow bool) error {
	if err := t.own(nqn); err != nil {
		return err
	}
	if err := ValidateNQN(host); err != nil {
		return fmt.Errorf("nvmet: host: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	ok, err := t.exists(t.subsysPath(nqn))
	if err != nil {
		return fmt.Errorf("nvmet: subsystem %s: %w", nqn, err)
	}
	if !ok {
		if !allow {
			return nil
		}
		return fmt.Errorf("nvmet: subsystem %s: %w", nqn, ErrNotFound)
	}
	t.hostMu.Lock()
	defer t.hostMu.Unlock()
	current, err := t.allowedHosts(nqn)
	if err != nil {
		return fmt.Errorf("nvmet: subsystem %s: %w", nqn, err)
	}
	switch _, present := current[host]; {
	case allow && !present:
		err = t.linkHost(nqn, host)
	case !allow && present:
		err = t.unlinkHost(nqn, host, current[host])
	}
	if err != nil {
		return fmt.Errorf("nvmet: subsystem %s: %w", nqn, err)
	}
	return nil
}

// ensureHosts makes the allowed hosts of nqn exactly want (sorted).
func (t *Target) ensureHosts(nqn string, want []string) error {
	t.hostMu.Lock()
	defer t.hostMu.Unlock()
	current, err := t.allowedHosts(nqn)
	if err != nil {
		return err
	}
	for _, h := range want {
		if _, ok := current[h]; !ok {
			if err := t.linkHost(nqn, h); err != nil {
				return err
			}
		}
	}
	for h, entry := range current {
		if !slices.Contains(want, h) {
			if err := t.unlinkHost(nqn, h, entry); err != nil {
				return err
			}
		}
	}
	return nil
}

// allowedHosts maps each host NQN allowed by subsystem nqn to its entry in allowed_hosts. The
// host is the link's target; the entry name is normally the same.
func (t *Target) allowedHosts(nqn string) (map[string]string, error) {
	names, err := t.readDir(t.subsysPath(nqn, "allowed_hosts"))
	if err != nil {
		return nil, err
	}
	hosts := make(map[string]string, len(names))
	for _, name := range names {
		host, ok := t.linkTarget(t.subsysPath(nqn, "allowed_hosts", name), t.path("hosts"))
		if !ok {
			host = name
		}
		hosts[host] = name
	}
	return hosts, nil
}

// linkHost creates host object host if needed and links it into allowed_hosts. hostMu is held.
func (t *Target) linkHost(nqn, host string) error {
	if err := t.mkdir(t.path("hosts", host)); err != nil {
		return err
	}
	return t.fs().Symlink(t.path("hosts", host), t.subsysPath(nqn, "allowed_hosts", host))
}

// unlinkHost removes host's allowed_hosts entry and collects the host object if unused and
// without keys. hostMu is held.
func (t *Target) unlinkHost(nqn, host, entry string) error {
	if err := t.unlink(t.subsysPath(nqn, "allowed_hosts", entry)); err != nil {
		return err
	}
	for _, key := range []string{"dhchap_key", "dhchap_ctrl_key"} {
		v, err := t.read(t.path("hosts", host, key))
		if err != nil || v != "" {
			return nil // keyed (or unreadable): only RemoveHost removes it
		}
	}
	// The kernel refuses (EBUSY) while any subsystem still links the host.
	if err := t.rmdir(t.path("hosts", host)); err != nil && !errors.Is(err, syscall.EBUSY) {
		return err
	}
	return nil
}

// UnusedHosts returns, sorted, the NQNs of the host objects that no subsystem allows, ours or
// not: what RemoveHost may remove. Host objects carry their keys, so one kept on purpose for a
// host not yet published shows up here too.
func (t *Target) UnusedHosts(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	t.hostMu.Lock()
	defer t.hostMu.Unlock()
	hosts, err := t.readDir(t.path("hosts"))
	if err != nil {
		return nil, fmt.Errorf("nvmet: listing hosts: %w", err)
	}
	subs, err := t.readDir(t.path("subsystems"))
	if err != nil {
		return nil, fmt.Errorf("nvmet: listing subsystems: %w", err)
	}
	used := map[string]bool{}
	for _, nqn := range subs {
		allowed, err := t.allowedHosts(nqn)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed while we listed
			}
			return nil, fmt.Errorf("nvmet: subsystem %s: %w", nqn, err)
		}
		for h := range allowed {
			used[h] = true
		}
	}
	var out []string
	for _, h := range hosts {
		if !used[h] {
			out = append(out, h)
		}
	}
	slices.Sort(out)
	return out, nil
}

// HostHasKey reports whether host object nqn exists with a DH-HMAC-CHAP host key set.
func (t *Target) HostHasKey(ctx context.Context, nqn string) (bool, error) {
	if err := ValidateNQN(nqn); err != nil {
		return false, fmt.Errorf("nvmet: host: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	key, err := t.read(t.path("hosts", nqn, "dhchap_key"))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("nvmet: host %s: %w", nqn, err)
	}
	return strings.TrimSpace(key) != "", nil
}
