package nvme

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
)

var uuidV4RE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestLoadOrCreateIdentityCreatesPersistsAndReloads(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etc", "nvme") // does not exist yet
	id, err := LoadOrCreateIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !uuidV4RE.MatchString(id.HostID) {
		t.Errorf("host ID %q is not a random (v4) UUID", id.HostID)
	}
	if id.HostNQN != UUIDNQNPrefix+id.HostID {
		t.Errorf("host NQN %q is not the UUID form of host ID %q", id.HostNQN, id.HostID)
	}
	for name, want := range map[string]string{"hostnqn": id.HostNQN, "hostid": id.HostID} {
		p := filepath.Join(dir, name)
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if string(raw) != want+"\n" {
			t.Errorf("%s holds %q, want %q", name, raw, want+"\n")
		}
		if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o644 {
			t.Errorf("%s has mode %v, want 0644", name, fi.Mode().Perm())
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("%s holds %d entries, want hostnqn and hostid only (temporary files left?)", dir, len(entries))
	}
	again, err := LoadOrCreateIdentity(dir)
	if err != nil || again != id {
		t.Errorf("reload = %+v, %v; want %+v", again, err, id)
	}
	other, err := LoadOrCreateIdentity(t.TempDir())
	if err != nil || other.HostID == id.HostID {
		t.Errorf("a second host got %+v, %v; want a different identity", other, err)
	}
}

func TestLoadOrCreateIdentityCompletesAHalfIdentity(t *testing.T) {
	const uuid = "3f0c9e2a-7b1d-4e5f-8a6b-9c0d1e2f3a4b"
	for _, tc := range []struct {
		name               string
		hostnqn, hostid    string // file contents; "" means no file
		wantNQN, wantID    string
		wantIDIsRandomUUID bool
	}{
		{name: "uuid-form hostnqn only: hostid derived", hostnqn: UUIDNQNPrefix + uuid + "\n", wantNQN: UUIDNQNPrefix + uuid, wantID: uuid},
		{name: "upper-case uuid-form hostnqn: hostid lower-cased", hostnqn: UUIDNQNPrefix + "3F0C9E2A-7B1D-4E5F-8A6B-9C0D1E2F3A4B", wantNQN: UUIDNQNPrefix + "3F0C9E2A-7B1D-4E5F-8A6B-9C0D1E2F3A4B", wantID: uuid},
		{name: "other hostnqn only: random hostid", hostnqn: "nqn.2024-01.io.example:node-7\n", wantNQN: "nqn.2024-01.io.example:node-7", wantIDIsRandomUUID: true},
		{name: "hostid only: uuid-form hostnqn", hostid: uuid + "\n", wantNQN: UUIDNQNPrefix + uuid, wantID: uuid},
		{name: "both present, whitespace ignored", hostnqn: "  nqn.2024-01.io.example:node-7 \n", hostid: uuid + "\n\n", wantNQN: "nqn.2024-01.io.example:node-7", wantID: uuid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			write := func(name, content string) {
				if content != "" {
					if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			write("hostnqn", tc.hostnqn)
			write("hostid", tc.hostid)
			id, err := LoadOrCreateIdentity(dir)
			if err != nil {
				t.Fatal(err)
			}
			if id.HostNQN != tc.wantNQN {
				t.Errorf("host NQN = %q, want %q", id.HostNQN, tc.wantNQN)
			}
			if tc.wantIDIsRandomUUID {
				if !uuidV4RE.MatchString(id.HostID) {
					t.Errorf("host ID = %q, want a random UUID", id.HostID)
				}
			} else if id.HostID != tc.wantID {
				t.Errorf("host ID = %q, want %q", id.HostID, tc.wantID)
			}
			if again, err := LoadOrCreateIdentity(dir); err != nil || again != id {
				t.Errorf("reload = %+v, %v; want %+v", again, err, id)
			}
			if tc.hostnqn != "" {
				if raw, _ := os.ReadFile(filepath.Join(dir, "hostnqn")); string(raw) != tc.hostnqn {
					t.Errorf("existing hostnqn rewritten to %q", raw)
				}
			}
		})
	}
}

func TestLoadOrCreateIdentityRejectsMalformedFiles(t *testing.T) {
	for _, tc := range []struct{ name, file, content string }{
		{"hostnqn without nqn. prefix", "hostnqn", "node-7\n"},
		{"empty hostnqn", "hostnqn", "\n"},
		{"hostnqn with a comma", "hostnqn", "nqn.2024-01.io.example:a,b\n"},
		{"hostid not a UUID", "hostid", "0123456789\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, tc.file), []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := LoadOrCreateIdentity(dir); !errors.Is(err, ErrInvalidIdentity) {
				t.Fatalf("error = %v, want ErrInvalidIdentity", err)
			}
			if raw, _ := os.ReadFile(filepath.Join(dir, tc.file)); string(raw) != tc.content {
				t.Errorf("malformed %s was replaced by %q", tc.file, raw)
			}
		})
	}
}

func TestLoadOrCreateIdentityRacingCreatorsAgree(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	ids := make([]Identity, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { ids[i], errs[i] = LoadOrCreateIdentity(dir) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || ids[i] != ids[0] {
			t.Errorf("creator %d got %+v, %v; creator 0 got %+v", i, ids[i], errs[i], ids[0])
		}
	}
}
