package layering

import (
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestReadmeLayoutListsEveryPackage keeps README.md's Layout table true: every package of the
// main module is named there (fakes and generated code through their parent), and every path
// it names exists.
func TestReadmeLayoutListsEveryPackage(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, layout, ok := strings.Cut(string(raw), "\n## Layout\n")
	if !ok {
		t.Fatal("README.md has no ## Layout section")
	}
	layout, _, _ = strings.Cut(layout, "\n## ")
	// Only the table's rows name packages: the prose above it mentions `internal/` and
	// `tests/` as directions of imports, which must not count as rows for what is under them.
	named := map[string]bool{}
	for _, line := range strings.Split(layout, "\n") {
		for _, m := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(line, -1) {
			p := strings.TrimSuffix(m[1], "/")
			if !regexp.MustCompile(`^(cmd|pkg|internal|tests)(/|$)`).MatchString(p) || strings.Contains(p, "…") {
				continue
			}
			if _, err := os.Stat(filepath.Join("..", "..", p)); err != nil {
				t.Errorf("README's layout names %s, which does not exist", p)
			}
			if strings.HasPrefix(line, "|") {
				named[p] = true
			}
		}
	}
	pkgImports, testImports := imports(t)
	all := map[string]bool{}
	for pkg := range pkgImports {
		all[pkg] = true
	}
	for pkg := range testImports {
		all[pkg] = true
	}
	for pkg := range all {
		if named[pkg] || strings.HasPrefix(pkg, "tests/") && named[topTwo(pkg)] {
			continue
		}
		base := path.Base(pkg)
		support := strings.HasSuffix(base, "test") || base == "fakeagent" || strings.HasSuffix(base, "api")
		if support && named[path.Dir(pkg)] {
			continue // a fake or generated code, covered by its parent's row
		}
		if support && strings.HasPrefix(pkg, "pkg/") {
			continue // covered by the `pkg/…/…test` row
		}
		t.Errorf("README's layout does not name %s", pkg)
	}
}

// topTwo is the first two elements of a path: tests/e2e/cluster → tests/e2e.
func topTwo(p string) string {
	parts := strings.SplitN(p, "/", 3)
	if len(parts) < 2 {
		return p
	}
	return parts[0] + "/" + parts[1]
}
