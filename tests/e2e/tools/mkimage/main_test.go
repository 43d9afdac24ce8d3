package main

import (
	"archive/tar"
	"debug/elf"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// entries reads the flattened file system of the first image tagged ref in the archive.
func entries(t *testing.T, archive, ref string) (map[string]*tar.Header, map[string]string, *tarball.Manifest) {
	t.Helper()
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(archive, &tag)
	if err != nil {
		t.Fatalf("reading %s as %s: %v", archive, ref, err)
	}
	hdrs, data := map[string]*tar.Header{}, map[string]string{}
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		p := "/" + strings.TrimSuffix(h.Name, "/")
		hdrs[p] = h
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			data[p] = string(b)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != "amd64" {
		t.Errorf("platform %s/%s, want linux/amd64", cf.OS, cf.Architecture)
	}
	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(archive) })
	if err != nil {
		t.Fatal(err)
	}
	return hdrs, data, &m
}

func TestImage(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(filepath.Join(src, "sub"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "run.sh"), []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "sub", "data"), []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../run.sh", filepath.Join(src, "sub", "link")); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.tar")
	args := []string{"-o", out, "-tag", "example.test/a:1", "-tag", "example.test/b:2",
		"-entrypoint", "/app/run.sh", "-cmd", "x", "-env", "A=1", "-user", "65534",
		"-dir", "/uploads:0700", "-passwd", "u:x:1000:1000::/:/bin/sh",
		src + ":/app", filepath.Join(src, "run.sh") + ":/bin/"}
	if err := run(args); err != nil {
		t.Fatal(err)
	}
	hdrs, data, m := entries(t, out, "example.test/b:2")
	if got := (*m)[0].RepoTags; !slices.Equal(got, []string{"example.test/a:1", "example.test/b:2"}) {
		t.Errorf("RepoTags %v", got)
	}
	for p, want := range map[string]int64{
		"/tmp": 0o1777, "/app": 0o750, "/app/run.sh": 0o755, "/app/sub/data": 0o600,
		"/bin/run.sh": 0o755, "/uploads": 0o700, "/etc/passwd": 0o644, "/root": 0o700,
	} {
		h, ok := hdrs[p]
		if !ok {
			t.Errorf("%s missing", p)
			continue
		}
		if h.Mode != want || h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s: mode %o uid %d gid %d, want %o root", p, h.Mode, h.Uid, h.Gid, want)
		}
	}
	if h := hdrs["/app/sub/link"]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "../run.sh" {
		t.Errorf("/app/sub/link: %+v", h)
	}
	if !strings.Contains(data["/etc/passwd"], "root:x:0:0:") || !strings.Contains(data["/etc/passwd"], "\nu:x:1000:1000:") {
		t.Errorf("/etc/passwd: %q", data["/etc/passwd"])
	}

	// Same inputs, another output path: the same bytes.
	out2 := filepath.Join(dir, "out2.tar")
	args[1] = out2
	if err := run(args); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(out)
	b, _ := os.ReadFile(out2)
	if string(a) != string(b) {
		t.Error("two builds of the same inputs differ")
	}
}

func TestBusybox(t *testing.T) {
	const bb = "/bin/busybox"
	if _, err := os.Stat(bb); err != nil {
		t.Skip("no", bb)
	}
	out := filepath.Join(t.TempDir(), "bb.tar")
	if err := run([]string{"-o", out, "-tag", "example.test/bb:1", "-busybox", bb, "-cmd", "sh"}); err != nil {
		t.Fatal(err)
	}
	hdrs, _, _ := entries(t, out, "example.test/bb:1")
	if h := hdrs["/bin/busybox"]; h == nil || h.Typeflag != tar.TypeReg || h.Mode&0o111 == 0 {
		t.Fatalf("/bin/busybox: %+v", h)
	}
	for _, p := range []string{"/bin/sh", "/bin/dd", "/usr/bin/sha256sum", "/bin/sleep"} {
		if h := hdrs[p]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "/bin/busybox" {
			t.Errorf("%s: %+v", p, h)
		}
	}
}

func TestDynamicRefused(t *testing.T) {
	bin := "/bin/ls"
	f, err := elf.Open(bin)
	if err != nil {
		t.Skip(err)
	}
	dynamic := slices.ContainsFunc(f.Progs, func(p *elf.Prog) bool { return p.Type == elf.PT_INTERP })
	f.Close()
	if !dynamic {
		t.Skip(bin, "is static")
	}
	err = run([]string{"-o", filepath.Join(t.TempDir(), "x.tar"), "-tag", "example.test/x:1", bin + ":/ls"})
	if err == nil || !strings.Contains(err.Error(), "dynamically linked") {
		t.Fatalf("err = %v, want dynamically linked", err)
	}
}
