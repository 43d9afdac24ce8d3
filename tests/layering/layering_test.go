// Package layering holds the test that keeps the module's imports pointing one way:
//
//	cmd/*                      → pkg/*, internal/*         (never tests/)
//	pkg/csi/* (CSI plugin)     → pkg/agentapi and below    (never pkg/agent: the agent is reached over its API)
//	pkg/agent (storage agent)  → pkg/agentapi and below    (never pkg/csi/*, not even indirectly)
//	everything else in pkg/    → only its peers below      (never pkg/agent or pkg/csi/*)
//	pkg/*, internal/*          → never cmd/* or tests/*
//
// golangci-lint's depguard states the direct rules too (.golangci.yml); this test also follows
// imports transitively, which depguard cannot.
package layering

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/nvmeof-csi/nvmeof-csi"

// pkgImports maps each package directory of the main module (relative, slash-separated) to
// the module-internal packages its non-test files import; testImports adds its test files.
func imports(t *testing.T) (pkgImports, testImports map[string][]string) {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found at %s: %v", root, err)
	}
	pkgImports, testImports = map[string][]string{}, map[string][]string{}
	err = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			// Other modules (their own go.mod) and hidden or test-data directories are not
			// part of the main module's build.
			if path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || exists(filepath.Join(path, "go.mod"))) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		rel = filepath.ToSlash(rel)
		dst := pkgImports
		if strings.HasSuffix(path, "_test.go") {
			dst = testImports
		}
		if _, ok := dst[rel]; !ok {
			dst[rel] = nil
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if internal, ok := strings.CutPrefix(p, module+"/"); ok && !slices.Contains(dst[rel], internal) {
				dst[rel] = append(dst[rel], internal)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgImports) < 20 {
		t.Fatalf("found only %d packages under %s: is the walk looking at the module?", len(pkgImports), root)
	}
	return pkgImports, testImports
}

func exists(path string) bool { _, err := os.Stat(path); return err == nil }

func under(pkg, dir string) bool { return pkg == dir || strings.HasPrefix(pkg, dir+"/") }

// closure returns every module package pkg imports, directly or not.
func closure(pkgImports map[string][]string, pkg string) []string {
	seen := map[string]bool{}
	var visit func(string)
	visit = func(p string) {
		for _, dep := range pkgImports[p] {
			if !seen[dep] {
				seen[dep] = true
				visit(dep)
			}
		}
	}
	visit(pkg)
	var out []string
	for p := range seen {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

func TestImportsPointOneWay(t *testing.T) {
	pkgImports, testImports := imports(t)
	isService := func(p string) bool { return under(p, "pkg/agent") || under(p, "pkg/csi") }

	for pkg, deps := range pkgImports {
		all := append(slices.Clone(deps), testImports[pkg]...)
		for _, dep := range all {
			switch {
			case (under(pkg, "cmd") || under(pkg, "pkg") || under(pkg, "internal")) && under(dep, "tests"):
				t.Errorf("%s imports %s: nothing outside tests/ may depend on the test tree", pkg, dep)
			case (under(pkg, "pkg") || under(pkg, "internal")) && under(dep, "cmd"):
				t.Errorf("%s imports %s: libraries never import commands", pkg, dep)
			}
		}
		for _, dep := range deps {
			switch {
			case under(pkg, "pkg/csi") && under(dep, "pkg/agent"):
				t.Errorf("%s imports %s: the CSI plugin reaches the agent only through pkg/agentapi", pkg, dep)
			case under(pkg, "pkg/agent") && under(dep, "pkg/csi"):
				t.Errorf("%s imports %s: the storage agent never depends on the CSI plugin", pkg, dep)
			case under(pkg, "pkg") && !isService(pkg) && isService(dep):
				t.Errorf("%s imports %s: packages below the services never import them", pkg, dep)
			}
		}
	}
	// Transitively: the agent binary links nothing of the CSI plugin.
	for _, dep := range closure(pkgImports, "pkg/agent") {
		if under(dep, "pkg/csi") {
			t.Errorf("pkg/agent depends on %s (indirectly): the agent binary must not link the CSI plugin", dep)
		}
	}
	for _, dep := range closure(pkgImports, "cmd/nvmeof-agent") {
		if under(dep, "pkg/csi") {
			t.Errorf("cmd/nvmeof-agent depends on %s", dep)
		}
	}
}

func TestTheRulesCatchAViolation(t *testing.T) {
	// The closure and the predicates above on a made-up graph: a rule that can never fail
	// proves nothing.
	g := map[string][]string{"pkg/agent": {"pkg/rpcerr"}, "pkg/rpcerr": {"pkg/csi/contract"}}
	if got := closure(g, "pkg/agent"); !slices.Contains(got, "pkg/csi/contract") {
		t.Fatalf("closure(pkg/agent) = %v, want it to reach pkg/csi/contract", got)
	}
	if !under("pkg/csi/node", "pkg/csi") || under("pkg/csiplus", "pkg/csi") || !under("tests", "tests") {
		t.Fatal("under() is wrong")
	}
}
