// Command mkimage writes a one-layer container image as a docker-archive tarball (the format
// `docker save` writes and `ctr images import` reads, repository tags included), for the
// Kubernetes e2e tier whose containerd imports images instead of pulling them.
//
//	mkimage -o out.tar -tag REF [-tag REF...] [-entrypoint ARG...] [-cmd ARG...] [-env K=V...]
//	        [-user U[:G]] [-workdir DIR] [-busybox PATH] [-dir PATH[:MODE]...]
//	        [-passwd LINE...] [-group LINE...] [-etc=false] SRC:DST...
//
// Each SRC:DST copies a host file or directory (recursively; symbolic links are kept as
// links) to the absolute path DST in the image; DST ending in / means DST/basename(SRC).
// Owners are root, modes are the host's, timestamps are SOURCE_DATE_EPOCH (default 0), so the
// same inputs give the same image digest. Every image has /tmp (1777) and, unless -etc=false,
// /root and an /etc/passwd and /etc/group with root and nobody (plus the -passwd and -group
// lines). -busybox PATH installs that static busybox as /bin/busybox plus one symbolic link
// per applet it lists (`busybox --list-full`, run on this host: the binary must be for this
// host's architecture), like `busybox --install -s`, without replacing files given as
// SRC:DST. Dynamically linked ELF executables are refused: the images have no libc.
package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, " ") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// entry is one file system object of the layer, keyed by its clean absolute image path.
type entry struct {
	typ      byte // tar.TypeDir, tar.TypeReg, tar.TypeSymlink
	mode     int64
	src      string // host file, for TypeReg
	data     []byte // contents, for generated TypeReg
	target   string // for TypeSymlink
	explicit bool   // given on the command line (busybox applets do not replace it)
}

type layerTree map[string]*entry

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fl := flag.NewFlagSet("mkimage", flag.ContinueOnError)
	var tags, entrypoint, cmd, env, dirs, passwd, group listFlag
	out := fl.String("o", "", "output docker-archive tarball (required)")
	fl.Var(&tags, "tag", "image reference to tag the image with (repeatable, at least one)")
	fl.Var(&entrypoint, "entrypoint", "entrypoint argument (repeatable: one per argv element)")
	fl.Var(&cmd, "cmd", "cmd argument (repeatable: one per argv element)")
	fl.Var(&env, "env", "K=V environment variable (repeatable; PATH has a default)")
	user := fl.String("user", "", "user[:group] the container runs as (empty: root)")
	workdir := fl.String("workdir", "/", "working directory")
	busybox := fl.String("busybox", "", "static busybox binary to install as /bin/busybox with its applet links")
	etc := fl.Bool("etc", true, "write /etc/passwd and /etc/group with root and nobody")
	arch := fl.String("arch", "amd64", "image architecture (the OS is linux)")
	fl.Var(&dirs, "dir", "PATH[:OCTAL-MODE] empty directory to create (repeatable; mode 0755 unless given)")
	fl.Var(&passwd, "passwd", "extra /etc/passwd line (repeatable)")
	fl.Var(&group, "group", "extra /etc/group line (repeatable)")
	fl.Usage = func() {
		fmt.Fprintln(fl.Output(), "usage: mkimage -o out.tar -tag REF [flags] SRC:DST...")
		fl.PrintDefaults()
	}
	if err := fl.Parse(args); err != nil {
		return err
	}
	if *out == "" || len(tags) == 0 {
		fl.Usage()
		return errors.New("-o and at least one -tag are required")
	}
	epoch := time.Unix(0, 0).UTC()
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("SOURCE_DATE_EPOCH: %w", err)
		}
		epoch = time.Unix(n, 0).UTC()
	}

	tree := layerTree{}
	tree.dir("/", 0o755)
	tree.dir("/tmp", 0o1777)
	if *etc {
		tree.dir("/etc", 0o755)
		shell := "/sbin/nologin"
		if *busybox != "" {
			shell = "/bin/sh"
		}
		pw := "root:x:0:0:root:/root:" + shell + "\n" +
			"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
		for _, l := range passwd {
			pw += l + "\n"
		}
		gr := "root:x:0:\nnogroup:x:65534:\n"
		for _, l := range group {
			gr += l + "\n"
		}
		tree.file("/etc/passwd", 0o644, []byte(pw))
		tree.file("/etc/group", 0o644, []byte(gr))
		tree.dir("/root", 0o700)
	} else if len(passwd)+len(group) > 0 {
		return errors.New("-passwd and -group need -etc")
	}
	for _, d := range dirs {
		p, m, hasMode := strings.Cut(d, ":")
		mode := int64(0o755)
		if hasMode {
			n, err := strconv.ParseInt(m, 8, 64)
			if err != nil || n < 0 || n > 0o7777 {
				return fmt.Errorf("-dir %q: bad mode", d)
			}
			mode = n
		}
		if !strings.HasPrefix(p, "/") {
			return fmt.Errorf("-dir %q: want an absolute path", d)
		}
		p = path.Clean(p)
		tree.parents(p)
		tree[p] = &entry{typ: tar.TypeDir, mode: mode, explicit: true}
	}
	for _, m := range fl.Args() {
		src, dst, ok := strings.Cut(m, ":")
		if !ok || src == "" || !strings.HasPrefix(dst, "/") {
			return fmt.Errorf("mapping %q: want SRC:/absolute/DST", m)
		}
		if strings.HasSuffix(dst, "/") {
			dst += filepath.Base(src)
		}
		if err := tree.add(src, path.Clean(dst)); err != nil {
			return err
		}
	}
	if *busybox != "" {
		if err := tree.busybox(*busybox); err != nil {
			return err
		}
	}
	if err := tree.checkStatic(); err != nil {
		return err
	}
	layerTar, err := tree.tar(epoch)
	if err != nil {
		return err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return err
	}

	cfgEnv := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	for _, e := range env {
		k, _, ok := strings.Cut(e, "=")
		if !ok || k == "" {
			return fmt.Errorf("-env %q: want K=V", e)
		}
		if k == "PATH" {
			cfgEnv[0] = e
		} else {
			cfgEnv = append(cfgEnv, e)
		}
	}
	base, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{
		Architecture: *arch,
		OS:           "linux",
		Created:      v1.Time{Time: epoch},
		RootFS:       v1.RootFS{Type: "layers"},
		Config: v1.Config{
			Entrypoint: entrypoint,
			Cmd:        cmd,
			Env:        cfgEnv,
			User:       *user,
			WorkingDir: *workdir,
		},
	})
	if err != nil {
		return err
	}
	img, err := mutate.Append(base, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   v1.Time{Time: epoch},
			CreatedBy: "mkimage " + strings.Join(withoutOutput(args), " "),
			Comment:   "tests/e2e/tools/mkimage",
		},
	})
	if err != nil {
		return err
	}
	refs := map[name.Reference]v1.Image{}
	for _, t := range tags {
		ref, err := name.NewTag(t, name.StrictValidation)
		if err != nil {
			return fmt.Errorf("-tag %q: %w", t, err)
		}
		refs[ref] = img
	}
	tmp := *out + ".tmp"
	if err := tarball.MultiRefWriteToFile(tmp, refs); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, *out)
}

// withoutOutput drops -o and its value: the history names the inputs, not where the tarball
// went, so the image digest does not depend on the output path.
func withoutOutput(args []string) []string {
	var r []string
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "-o" || a == "--o":
			i++
		case strings.HasPrefix(a, "-o=") || strings.HasPrefix(a, "--o="):
		default:
			r = append(r, a)
		}
	}
	return r
}

func (t layerTree) dir(p string, mode int64) {
	if e, ok := t[p]; ok && e.typ == tar.TypeDir {
		return
	}
	t[p] = &entry{typ: tar.TypeDir, mode: mode}
}

func (t layerTree) file(p string, mode int64, data []byte) {
	t.parents(p)
	t[p] = &entry{typ: tar.TypeReg, mode: mode, data: data}
}

// parents adds the missing parent directories of p (mode 0755).
func (t layerTree) parents(p string) {
	for d := path.Dir(p); d != "/"; d = path.Dir(d) {
		if _, ok := t[d]; !ok {
			t[d] = &entry{typ: tar.TypeDir, mode: 0o755}
		}
	}
}

// add copies host path src (file, directory or symlink) to image path dst.
func (t layerTree) add(src, dst string) error {
	st, err := os.Lstat(src)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return t.addOne(src, dst, st)
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return t.addOne(p, path.Join(dst, filepath.ToSlash(rel)), info)
	})
}

func (t layerTree) addOne(src, dst string, st fs.FileInfo) error {
	t.parents(dst)
	mode := int64(st.Mode().Perm())
	if st.Mode()&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	if st.Mode()&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if st.Mode()&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	switch {
	case st.IsDir():
		t[dst] = &entry{typ: tar.TypeDir, mode: mode, explicit: true}
	case st.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		t[dst] = &entry{typ: tar.TypeSymlink, mode: 0o777, target: target, explicit: true}
	case st.Mode().IsRegular():
		t[dst] = &entry{typ: tar.TypeReg, mode: mode, src: src, explicit: true}
	default:
		return fmt.Errorf("%s: unsupported file type %v", src, st.Mode().Type())
	}
	return nil
}

// busybox installs bin at /bin/busybox and links every applet it lists to it.
func (t layerTree) busybox(bin string) error {
	st, err := os.Stat(bin)
	if err != nil {
		return err
	}
	if err := t.addOne(bin, "/bin/busybox", st); err != nil {
		return err
	}
	list, err := exec.Command(bin, "--list-full").Output()
	if err != nil {
		return fmt.Errorf("%s --list-full: %w", bin, err)
	}
	n := 0
	for _, l := range strings.Fields(string(list)) {
		p := path.Clean("/" + l)
		if p == "/bin/busybox" {
			continue
		}
		if e, ok := t[p]; ok && e.explicit {
			continue
		}
		t.parents(p)
		t[p] = &entry{typ: tar.TypeSymlink, mode: 0o777, target: "/bin/busybox"}
		n++
	}
	if n == 0 {
		return fmt.Errorf("%s --list-full listed no applets", bin)
	}
	return nil
}

// checkStatic refuses dynamically linked ELF files: the image has no dynamic loader.
func (t layerTree) checkStatic() error {
	for p, e := range t {
		if e.typ != tar.TypeReg || e.src == "" {
			continue
		}
		f, err := elf.Open(e.src)
		if err != nil {
			continue // not ELF
		}
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				f.Close()
				return fmt.Errorf("%s (image %s) is dynamically linked; the image has no libc: build it with CGO_ENABLED=0", e.src, p)
			}
		}
		f.Close()
	}
	return nil
}

// tar writes the tree as an uncompressed tar stream in path order, parents first.
func (t layerTree) tar(mtime time.Time) ([]byte, error) {
	paths := make([]string, 0, len(t))
	for p := range t {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		e := t[p]
		if p == "/" {
			continue // the root of the layer is the container's root: no entry
		}
		h := &tar.Header{
			Name:     strings.TrimPrefix(p, "/"),
			Mode:     e.mode,
			ModTime:  mtime,
			Typeflag: e.typ,
			Uname:    "root",
			Gname:    "root",
			Format:   tar.FormatPAX,
		}
		var r io.Reader
		switch e.typ {
		case tar.TypeDir:
			h.Name += "/"
		case tar.TypeSymlink:
			h.Linkname = e.target
		case tar.TypeReg:
			data := e.data
			if e.src != "" {
				var err error
				if data, err = os.ReadFile(e.src); err != nil {
					return nil, err
				}
			}
			h.Size = int64(len(data))
			r = bytes.NewReader(data)
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if r != nil {
			if _, err := io.Copy(tw, r); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
