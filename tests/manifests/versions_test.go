package manifests_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/nvmeof-csi/nvmeof-csi/tests/manifests"
)

// versions.env is the one place versions are pinned. What has to repeat a version (the Helm
// chart's values.yaml, the wrapper modules the tools are built from, the e2e manifests, the
// docs) is checked against it here, and the build scripts may write none of their own.

// helmSidecars: values.yaml's sidecars.<name>.tag and the versions.env key it repeats.
var helmSidecars = map[string]string{
	"provisioner":         "PROVISIONER_VERSION",
	"attacher":            "ATTACHER_VERSION",
	"resizer":             "RESIZER_VERSION",
	"snapshotter":         "SNAPSHOTTER_VERSION",
	"nodeDriverRegistrar": "NODE_DRIVER_REGISTRAR_VERSION",
	"livenessProbe":       "LIVENESSPROBE_VERSION",
	"snapshotMetadata":    "SNAPSHOT_METADATA_VERSION",
}

// toolModule is what a wrapper module under tests/e2e/tools builds: the versions.env key of
// its version, and the upstream modules it must require at exactly that version, as paths
// without the /vN suffix that the version's major decides. family: every module it requires
// under this prefix is of the same release, at the same version. staging: the module maps
// Kubernetes' staging modules (k8s.io/api, ...) to the v0 tag of the Kubernetes version.
type toolModule struct {
	key     string
	modules []string
	family  string
	staging bool
}

var toolModules = map[string]toolModule{
	"kubernetes":      {key: "K8S_VERSION", modules: []string{"k8s.io/kubernetes"}, staging: true},
	"etcd":            {key: "ETCD_VERSION", modules: []string{"go.etcd.io/etcd/server"}, family: "go.etcd.io/etcd/"},
	"csi-provisioner": {key: "PROVISIONER_VERSION", modules: []string{"github.com/kubernetes-csi/external-provisioner"}},
	"csi-attacher":    {key: "ATTACHER_VERSION", modules: []string{"github.com/kubernetes-csi/external-attacher"}},
	"csi-resizer":     {key: "RESIZER_VERSION", modules: []string{"github.com/kubernetes-csi/external-resizer"}},
	"csi-snapshotter": {key: "SNAPSHOTTER_VERSION", modules: []string{
		"github.com/kubernetes-csi/external-snapshotter",
		// The CRDs hack/build-k8s.sh installs come from the client module.
		"github.com/kubernetes-csi/external-snapshotter/client",
	}},
	"external-snapshot-metadata": {key: "SNAPSHOT_METADATA_VERSION", modules: []string{
		"github.com/kubernetes-csi/external-snapshot-metadata",
		// The SnapshotMetadataService CRD hack/build-k8s.sh installs comes from the client module.
		"github.com/kubernetes-csi/external-snapshot-metadata/client",
	}},
	// Our own image writer: it requires libraries, no pinned tool.
	"mkimage": {},
}

// The e2e manifests and cluster code that name a pinned image.
const (
	snapshotControllerKustomization = "tests/e2e/manifests/snapshot-controller/kustomization.yaml"
	snapshotControllerImage         = "registry.k8s.io/sig-storage/snapshot-controller"
	snapshotControllerKey           = "SNAPSHOTTER_VERSION"
	clusterCode                     = "tests/e2e/cluster/cluster.go"
	pauseKey                        = "PAUSE_TAGS"
)

// notToolVersions are version literals the build scripts may write: they pin no tool.
var notToolVersions = map[string]string{
	"v0.0.0-dev": "our own binaries' version when git describe has none",
}

var (
	semver = regexp.MustCompile(`\bv(\d+)\.\d+\.\d+\b`)
	// A version literal in a script: digits, a dot (escaped in a regular expression or
	// not, at any quoting depth), digits; and @latest, the opposite of a pin.
	versionLiteral = regexp.MustCompile(`v?\d+(\\*\.\d+)+(-[0-9A-Za-z.]+)?|@latest\b`)
)

// pins reads versions.env as key -> value; a malformed file fails the test.
func pins(t *testing.T) map[string]string {
	t.Helper()
	ps := readPins(t)
	m := map[string]string{}
	for _, p := range ps {
		m[p.Key] = p.Value
	}
	return m
}

func readPins(t *testing.T) []manifests.Pin {
	t.Helper()
	raw, err := os.ReadFile(path(manifests.VersionsFile))
	if err != nil {
		t.Fatal(err)
	}
	ps, err := manifests.ParseVersions(manifests.VersionsFile, raw)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

// lookup is versions.env's value of key; a key it lacks is an error of the test's tables.
func lookup(t *testing.T, pins map[string]string, key, boundBy string) (string, bool) {
	t.Helper()
	v, ok := pins[key]
	if !ok {
		t.Errorf("%s repeats %s, which %s does not set: add it there (a comment line, then %s=<version>), or fix the table in tests/manifests/versions_test.go",
			boundBy, key, manifests.VersionsFile, key)
	}
	return v, ok
}

func TestVersionsFileFormat(t *testing.T) {
	pins(t) // the real file parses
	ok := "# what it pins\nA_VERSION=v1.2.3\n\n# the other\nB_TAGS=3.6,3.10.1\n"
	if _, err := manifests.ParseVersions("ok", []byte(ok)); err != nil {
		t.Errorf("a well-formed file: %v", err)
	}
	for name, bad := range map[string]string{
		"double quotes":            "# c\nA_VERSION=\"v1.2.3\"\n",
		"single quotes":            "# c\nA_VERSION='v1.2.3'\n",
		"space before =":           "# c\nA_VERSION =v1.2.3\n",
		"space in the value":       "# c\nA_TAGS=3.6 3.10\n",
		"trailing comment":         "# c\nA_VERSION=v1.2.3 # make keeps the space\n",
		"a $ in the value":         "# c\nA_VERSION=$B\n",
		"export":                   "# c\nexport A_VERSION=v1.2.3\n",
		"lower-case key":           "# c\na_version=v1.2.3\n",
		"make's :=":                "# c\nA_VERSION:=v1.2.3\n",
		"empty value":              "# c\nA_VERSION=\n",
		"CRLF line":                "# c\r\nA_VERSION=v1.2.3\r\n",
		"no comment above":         "A_VERSION=v1.2.3\n",
		"comment not right above":  "# c\n\nA_VERSION=v1.2.3\n",
		"one comment, two entries": "# c\nA_VERSION=v1.2.3\nB_VERSION=v1.2.3\n",
		"a key twice":              "# c\nA_VERSION=v1.2.3\n# again\nA_VERSION=v1.2.4\n",
		"no entries":               "# only a comment\n",
	} {
		if _, err := manifests.ParseVersions(name, []byte(bad)); err == nil {
			t.Errorf("%s: accepted:\n%s", name, bad)
		}
	}
}

// values.yaml repeats the sidecar tags because Helm needs literal values.
func TestHelmSidecarsMatchVersions(t *testing.T) {
	p := pins(t)
	file := filepath.Join(manifests.Chart, "values.yaml")
	var values struct {
		Sidecars map[string]struct {
			Tag string `json:"tag"`
		} `json:"sidecars"`
	}
	raw, err := os.ReadFile(path(file))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &values); err != nil {
		t.Fatal(err)
	}
	for _, name := range sortedKeys(values.Sidecars) {
		key, ok := helmSidecars[name]
		if !ok {
			t.Errorf("%s: sidecars.%s has no versions.env entry: add one (a comment line, then <NAME>_VERSION=%s) and map %q to it in helmSidecars (tests/manifests/versions_test.go)",
				file, name, values.Sidecars[name].Tag, name)
			continue
		}
		want, ok := lookup(t, p, key, file+" sidecars."+name+".tag")
		if ok && values.Sidecars[name].Tag != want {
			t.Errorf("%s: sidecars.%s.tag is %s, but %s has %s=%s: write the same version in both (versions.env is the source), then run `make generate` for the kustomize base and update the chart README's table",
				file, name, values.Sidecars[name].Tag, manifests.VersionsFile, key, want)
		}
	}
	for _, name := range sortedKeys(helmSidecars) {
		if _, ok := values.Sidecars[name]; !ok {
			t.Errorf("%s has no sidecars.%s: remove it from helmSidecars (tests/manifests/versions_test.go)", file, name)
		}
	}
}

// goMod is the part of `go mod edit -json` this test reads.
type goMod struct {
	Require []struct {
		Path    string
		Version string
	}
	Replace []struct {
		Old, New struct {
			Path    string
			Version string
		}
	}
}

// readGoMod parses a go.mod with the go command's own parser (go test puts its go first in
// PATH); it reads only the file, no module graph.
func readGoMod(t *testing.T, file string) goMod {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "mod", "edit", "-json", path(file))
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local", "GOFLAGS=")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go mod edit -json %s: %v\n%s", file, err, stderr.String())
	}
	var m goMod
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("go mod edit -json %s: %v", file, err)
	}
	return m
}

// major is a semantic version's major number, -1 if v is none.
func major(v string) int {
	m := semver.FindStringSubmatch(v)
	if m == nil || m[0] != v {
		return -1
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// modulePath is the module path of base at version: /vN for a major N of 2 or more.
func modulePath(base, version string) string {
	if n := major(version); n >= 2 {
		return fmt.Sprintf("%s/v%d", base, n)
	}
	return base
}

// stagingVersion is the v0 tag Kubernetes' staging modules carry for a Kubernetes version:
// v1.34.3 -> v0.34.3.
func stagingVersion(k8s string) string {
	return "v0" + strings.TrimPrefix(k8s, "v1")
}

// headerVersions are the semantic versions in the comment lines a file starts with
// (comment: "//" or "#"), with their line numbers.
func headerVersions(raw []byte, comment string) map[int][]string {
	found := map[int][]string{}
	for i, line := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(line, comment) {
			break
		}
		if vs := semver.FindAllString(line, -1); vs != nil {
			found[i+1] = vs
		}
	}
	return found
}

func TestE2EToolModulesMatchVersions(t *testing.T) {
	p := pins(t)
	dir := "tests/e2e/tools"
	entries, err := os.ReadDir(path(dir))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		file := filepath.Join(dir, e.Name(), "go.mod")
		tm, known := toolModules[e.Name()]
		if !known {
			t.Errorf("%s: a wrapper module tests/manifests does not know: add it to toolModules (tests/manifests/versions_test.go) with its versions.env key and the upstream module it builds", file)
			continue
		}
		if tm.key == "" {
			continue
		}
		want, ok := lookup(t, p, tm.key, file)
		if !ok {
			continue
		}
		staging := stagingVersion(want)
		regen := fmt.Sprintf("regenerate the wrapper module for %s=%s (cd %s && go get <module>@%s && go mod tidy, with the replace lines its header describes) and commit go.mod and go.sum",
			tm.key, want, filepath.Dir(file), want)
		mod := readGoMod(t, file)
		required := map[string]string{}
		for _, r := range mod.Require {
			required[r.Path] = r.Version
		}
		for _, base := range tm.modules {
			wantPath := modulePath(base, want)
			got, ok := required[wantPath]
			if !ok {
				var other []string
				for mp, v := range required {
					if mp == base || regexp.MustCompile(`^`+regexp.QuoteMeta(base)+`/v\d+$`).MatchString(mp) {
						other = append(other, mp+" "+v)
					}
				}
				t.Errorf("%s does not require %s (it has %v), but %s=%s is of that module: %s; a new major also changes the package paths in hack/build-k8s.sh and tools.go",
					file, wantPath, other, tm.key, want, regen)
				continue
			}
			if got != want {
				t.Errorf("%s requires %s %s, but %s has %s=%s: %s",
					file, wantPath, got, manifests.VersionsFile, tm.key, want, regen)
			}
		}
		if tm.family != "" {
			for _, r := range mod.Require {
				if strings.HasPrefix(r.Path, tm.family) && r.Version != want {
					t.Errorf("%s requires %s %s, but the modules under %s are one release, %s=%s: %s",
						file, r.Path, r.Version, tm.family, tm.key, want, regen)
				}
			}
		}
		for _, r := range mod.Replace {
			for _, base := range tm.modules {
				if r.Old.Path == modulePath(base, want) {
					t.Errorf("%s replaces %s (=> %s %s): the wrapper must build the version %s pins, %s=%s; remove the replace line",
						file, r.Old.Path, r.New.Path, r.New.Version, manifests.VersionsFile, tm.key, want)
				}
			}
			if tm.staging && strings.HasPrefix(r.Old.Path, "k8s.io/") && r.New.Path == r.Old.Path && r.New.Version != staging {
				t.Errorf("%s replaces %s with %s, but Kubernetes %s=%s publishes its staging modules as %s: %s",
					file, r.Old.Path, r.New.Version, tm.key, want, staging, regen)
			}
		}
		// The header says what the module builds.
		raw, err := os.ReadFile(path(file))
		if err != nil {
			t.Fatal(err)
		}
		named := map[string]bool{want: true}
		if tm.staging {
			named[staging] = true
		}
		for line, vs := range headerVersions(raw, "//") {
			for _, v := range vs {
				if !named[v] {
					t.Errorf("%s:%d: the header comment names %s, but the module builds %s=%s: update the comment", file, line, v, tm.key, want)
				}
			}
		}
	}
}

func TestE2EManifestsMatchVersions(t *testing.T) {
	p := pins(t)

	// snapshot-controller's image: hack/build-images.sh tags it with the snapshotter's
	// version, and the test cluster never pulls.
	file := snapshotControllerKustomization
	if want, ok := lookup(t, p, snapshotControllerKey, file); ok {
		raw, err := os.ReadFile(path(file))
		if err != nil {
			t.Fatal(err)
		}
		var k struct {
			Images []struct {
				Name   string `json:"name"`
				NewTag string `json:"newTag"`
			} `json:"images"`
		}
		if err := yaml.Unmarshal(raw, &k); err != nil {
			t.Fatal(err)
		}
		found := false
		for _, im := range k.Images {
			if im.Name != snapshotControllerImage {
				continue
			}
			found = true
			if im.NewTag != want {
				t.Errorf("%s: the newTag of %s is %s, but %s has %s=%s: write %s",
					file, im.Name, im.NewTag, manifests.VersionsFile, snapshotControllerKey, want, want)
			}
		}
		if !found {
			t.Errorf("%s: no images entry for %s: add one with newTag: %s (%s)", file, snapshotControllerImage, want, snapshotControllerKey)
		}
		for line, vs := range headerVersions(raw, "#") {
			for _, v := range vs {
				if v != want {
					t.Errorf("%s:%d: the header comment names external-snapshotter %s, but %s=%s: copy rbac-snapshot-controller.yaml and setup-snapshot-controller.yaml from that release (deploy/kubernetes/snapshot-controller) and update the comment",
						file, line, v, snapshotControllerKey, want)
				}
			}
		}
	}

	// containerd's sandbox image: hack/build-images.sh imports the pause image under the
	// tags of PAUSE_TAGS only.
	if tags, ok := lookup(t, p, pauseKey, clusterCode); ok {
		raw, err := os.ReadFile(path(clusterCode))
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`sandbox_image = "registry\.k8s\.io/pause:([^"]+)"`).FindSubmatch(raw)
		switch {
		case m == nil:
			t.Errorf("%s: no sandbox_image = \"registry.k8s.io/pause:<tag>\" in containerd's configuration: if it moved, update TestE2EManifestsMatchVersions (tests/manifests/versions_test.go)", clusterCode)
		case !slices.Contains(strings.Split(tags, ","), string(m[1])):
			t.Errorf("%s: containerd's sandbox_image is registry.k8s.io/pause:%s, a tag hack/build-images.sh does not import (%s=%s): use one of those, or add %s to %s",
				clusterCode, m[1], pauseKey, tags, m[1], pauseKey)
		}
	}
}

// buildScripts are the files that build, test and install (relative to the repository
// root): they read versions.env and pin no version of their own.
func buildScripts(t *testing.T) []string {
	t.Helper()
	sh, err := filepath.Glob(path("hack/*.sh"))
	if err != nil {
		t.Fatal(err)
	}
	files := []string{"Makefile", ".ci/run"}
	for _, f := range sh {
		files = append(files, strings.TrimPrefix(f, root+string(filepath.Separator)))
	}
	return files
}

// codeLines are a script's lines with their comments blanked: a # that starts a word outside
// quotes starts a comment (the shell's rule, and this Makefile's comments follow it).
func codeLines(t *testing.T, file string) []string {
	t.Helper()
	raw, err := os.ReadFile(path(file))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(raw), "\n")
	for i, line := range lines {
		var quote byte
		for j := 0; j < len(line); j++ {
			c := line[j]
			switch {
			case quote == '\'':
				if c == '\'' {
					quote = 0
				}
			case c == '\\':
				j++
			case quote == '"':
				if c == '"' {
					quote = 0
				}
			case c == '\'' || c == '"':
				quote = c
			case c == '#' && (j == 0 || line[j-1] == ' ' || line[j-1] == '\t'):
				line = line[:j]
			}
		}
		lines[i] = line
	}
	return lines
}

// Versions are written in versions.env only: a script that writes one of its own drifts.
func TestBuildScriptsPinNoVersionOfTheirOwn(t *testing.T) {
	for _, file := range buildScripts(t) {
		for i, line := range codeLines(t, file) {
			for lit := range notToolVersions {
				line = strings.ReplaceAll(line, lit, "")
			}
			if lit := versionLiteral.FindString(line); lit != "" {
				t.Errorf("%s:%d: %s pins a version outside %s: add it there (a comment line, then KEY=value) and use $KEY here; if it is no tool's version, allow it in notToolVersions (tests/manifests/versions_test.go) with the reason\n\t%s",
					file, i+1, lit, manifests.VersionsFile, strings.TrimSpace(line))
			}
		}
	}
}

// Every entry is read by a build script or repeated by a file that is checked against it
// here; a script that reads one sources (make: includes) versions.env.
func TestEveryVersionIsUsed(t *testing.T) {
	ps := readPins(t)
	checked := map[string]bool{snapshotControllerKey: true, pauseKey: true}
	for _, key := range helmSidecars {
		checked[key] = true
	}
	for _, tm := range toolModules {
		if tm.key != "" {
			checked[tm.key] = true
		}
	}
	readers := regexp.MustCompile(`(?m)^\s*(source|\.) .*/versions\.env"?$|^-?include versions\.env$`)
	usedBy := map[string][]string{}
	for _, file := range buildScripts(t) {
		code := strings.Join(codeLines(t, file), "\n")
		var uses []string
		for _, p := range ps {
			if regexp.MustCompile(`\b` + p.Key + `\b`).MatchString(code) {
				usedBy[p.Key] = append(usedBy[p.Key], file)
				uses = append(uses, p.Key)
			}
		}
		if uses != nil && !readers.MatchString(code) {
			t.Errorf("%s uses %s but does not read %s: add `source \"$ROOT/versions.env\"` (a Makefile: `include versions.env`)",
				file, strings.Join(uses, ", "), manifests.VersionsFile)
		}
	}
	for _, p := range ps {
		if usedBy[p.Key] == nil && !checked[p.Key] {
			t.Errorf("%s:%d: %s is read by no build script (hack/*.sh, Makefile, .ci/run) and repeated by no file tests/manifests checks: remove it, or use it",
				manifests.VersionsFile, p.Line, p.Key)
		}
	}
}

// The docs name the versions in use: every vX.Y.Z in README.md and deploy/**/*.md is pinned
// (versions.env, or the chart's appVersion), and the chart README's table shows the
// sidecars' tags. The CHANGELOG is history and not checked.
func TestDocsNamePinnedVersions(t *testing.T) {
	p := pins(t)
	var chart struct {
		AppVersion string `json:"appVersion"`
	}
	raw, err := os.ReadFile(path(filepath.Join(manifests.Chart, "Chart.yaml")))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &chart); err != nil {
		t.Fatal(err)
	}
	pinned := map[string]bool{chart.AppVersion: true}
	for _, v := range p {
		pinned[v] = true
	}
	docs := []string{"README.md"}
	err = filepath.WalkDir(path("deploy"), func(f string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(f, ".md") {
			docs = append(docs, strings.TrimPrefix(f, root+string(filepath.Separator)))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range docs {
		raw, err := os.ReadFile(path(doc))
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(raw), "\n") {
			for _, v := range semver.FindAllString(line, -1) {
				if !pinned[v] {
					t.Errorf("%s:%d: %s is not a version %s pins (nor the chart's appVersion %s): write the pinned version\n\t%s",
						doc, i+1, v, manifests.VersionsFile, chart.AppVersion, strings.TrimSpace(line))
				}
			}
		}
	}
	readme := filepath.Join(manifests.Chart, "README.md")
	raw, err = os.ReadFile(path(readme))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range sortedKeys(helmSidecars) {
		key := helmSidecars[name]
		want, ok := lookup(t, p, key, readme)
		if !ok {
			continue
		}
		m := regexp.MustCompile("(?m)^\\| `sidecars\\." + name + "` \\|[^|\\n]*`(v[^`]+)`").FindSubmatch(raw)
		switch {
		case m == nil:
			t.Errorf("%s: no table row | `sidecars.%s` | `<repository>` `<tag>` |", readme, name)
		case string(m[1]) != want:
			t.Errorf("%s: the row of sidecars.%s shows %s, but %s=%s: write %s", readme, name, m[1], key, want, want)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
