package manifests_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/agent"
)

// The image holds both binaries and the tools they run.
func TestDockerfile(t *testing.T) {
	raw, err := os.ReadFile(path("Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := string(raw)
	for _, bin := range imageBinaries {
		if !strings.Contains(df, "/src/bin/"+bin+" ") {
			t.Errorf("Dockerfile does not copy bin/%s into the image", bin)
		}
	}
	if ep := entrypoint(t); ep != "/usr/local/bin/nvmeof-csi" {
		t.Errorf("ENTRYPOINT %s: the manifests run nvmeof-csi without a command", ep)
	}
	// mount-utils and the node service: mount, umount, blkid, blockdev (util-linux, mount),
	// mkfs.ext4, fsck.ext4, resize2fs, dumpe2fs (e2fsprogs), mkfs.xfs, xfs_growfs, xfs_io
	// (xfsprogs); the agent: lvm (lvm2), thin_check (thin-provisioning-tools).
	install := regexp.MustCompile(`(?s)apt-get install[^&]*`).FindString(df)
	for _, pkg := range []string{"util-linux", "mount", "e2fsprogs", "xfsprogs", "lvm2", "thin-provisioning-tools"} {
		if !regexp.MustCompile(`\s` + regexp.QuoteMeta(pkg) + `\s`).MatchString(install + " ") {
			t.Errorf("Dockerfile does not install %s", pkg)
		}
	}
}

// The systemd unit runs the agent with flags it has, and the sample configuration it names
// is valid.
func TestSystemdUnit(t *testing.T) {
	raw, err := os.ReadFile(path("deploy/systemd/nvmeof-agent.service"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^ExecStart=(\S+)(.*)$`).FindStringSubmatch(string(raw))
	if m == nil || filepath.Base(m[1]) != "nvmeof-agent" {
		t.Fatalf("nvmeof-agent.service: want ExecStart=.../nvmeof-agent")
	}
	args := strings.Fields(m[2])
	checkArgs(t, "nvmeof-agent.service", nil, args, binaryFlags(t, "nvmeof-agent"))
	if cfg, ok := flagValue(args, "config"); ok && cfg != "/etc/nvmeof-agent/config.yaml" {
		t.Errorf("nvmeof-agent.service: --config=%s; the sample is installed as /etc/nvmeof-agent/config.yaml", cfg)
	}
	cfg, err := agent.LoadConfig(path("deploy/systemd/config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// The modules the sample's pool needs are loaded before the agent starts: the target and
	// dm-thin-pool; the lvm backend also needs dm-snapshot.
	want := []string{"nvmet", "dm-thin-pool"}
	if cfg.Pool.Backend == agent.BackendLVM {
		want = append(want, "dm-snapshot")
	}
	var loaded []string
	for _, m := range regexp.MustCompile(`(?m)^ExecStartPre=-?/sbin/modprobe -a (.*)$`).FindAllStringSubmatch(string(raw), -1) {
		loaded = append(loaded, strings.Fields(m[1])...)
	}
	for _, mod := range want {
		if !slices.Contains(loaded, mod) {
			t.Errorf("nvmeof-agent.service loads modules %v; the %s backend of config.yaml needs %s", loaded, cfg.Pool.Backend, mod)
		}
	}
}

// The workers' shutdown unit runs the plugin with flags it has, at stop.
func TestShutdownUnit(t *testing.T) {
	raw, err := os.ReadFile(path("deploy/systemd/nvmeof-csi-shutdown.service"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^ExecStop=(\S+)(.*)$`).FindStringSubmatch(string(raw))
	if m == nil || filepath.Base(m[1]) != "nvmeof-csi" {
		t.Fatalf("nvmeof-csi-shutdown.service: want ExecStop=.../nvmeof-csi")
	}
	args := strings.Fields(m[2])
	checkArgs(t, "nvmeof-csi-shutdown.service", nil, args, binaryFlags(t, "nvmeof-csi"))
	if _, ok := flagValue(args, "release-paths"); !ok {
		t.Errorf("nvmeof-csi-shutdown.service: ExecStop %v does not release the paths", args)
	}
}
