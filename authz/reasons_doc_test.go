package authz_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// troubleshootingDoc explains every reason code to operators.
const troubleshootingDoc = "../docs/troubleshooting.md"

// authzImport is the import path of the package that declares Reason.
const authzImport = "github.com/mlflow-authz/mlflow-authz/authz"

// declaredReasons parses every non-test Go file of the module under root
// and returns each constant of type authz.Reason: code → where declared.
// Reasons are constants by convention (decision.go), so this finds a new
// one wherever a package declares it.
func declaredReasons(t *testing.T, root string) map[string]string {
	t.Helper()
	fset := token.NewFileSet()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			// manifests is a module of its own; the rest hold no reasons.
			switch d.Name() {
			case ".git", "manifests", "proto", "testdata", "bin", "bench-results", "docs":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		isReason := func(e ast.Expr) bool {
			switch e := e.(type) {
			case *ast.Ident: // inside package authz
				return e.Name == "Reason" && f.Name.Name == "authz" && filepath.Base(filepath.Dir(path)) == "authz"
			case *ast.SelectorExpr:
				x, ok := e.X.(*ast.Ident)
				return ok && e.Sel.Name == "Reason" && importedAs(f, authzImport) == x.Name
			}
			return false
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				if vs.Type == nil || !isReason(vs.Type) {
					continue
				}
				for i, name := range vs.Names {
					lit, ok := vs.Values[i].(*ast.BasicLit)
					if !ok || lit.Kind != token.STRING {
						t.Errorf("%s: reason %s is not a string literal", fset.Position(name.Pos()), name.Name)
						continue
					}
					code, _ := strconv.Unquote(lit.Value)
					out[code] = fset.Position(name.Pos()).String() + " (" + name.Name + ")"
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// importedAs returns the name file f refers to package path by, or "".
func importedAs(f *ast.File, path string) string {
	for _, imp := range f.Imports {
		if p, _ := strconv.Unquote(imp.Path.Value); p == path {
			if imp.Name != nil {
				return imp.Name.Name
			}
			return filepath.Base(path)
		}
	}
	return ""
}

// documentedReason is an entry heading in the troubleshooting guide.
var documentedReason = regexp.MustCompile("(?m)^### `([a-z0-9_]+)`")

// TestEveryReasonIsDocumented holds docs/troubleshooting.md to the code:
// every reason code a decision can carry has an entry, and every entry is a
// reason code.
func TestEveryReasonIsDocumented(t *testing.T) {
	declared := declaredReasons(t, "..")
	if len(declared) < 30 {
		t.Fatalf("found only %d reason codes: is the scan broken?", len(declared))
	}
	data, err := os.ReadFile(troubleshootingDoc)
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range documentedReason.FindAllStringSubmatch(string(data), -1) {
		documented[m[1]] = true
	}
	codes := make([]string, 0, len(declared))
	for c := range declared {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	for _, c := range codes {
		if !documented[c] {
			t.Errorf("reason code %q, declared at %s, has no entry in %s.\nAdd a section headed\n### `%s`\nsaying the HTTP status, what it means, and what the caller or the operator should do (with an `mlflow-authz explain` example where it helps).",
				c, declared[c], troubleshootingDoc, c)
		}
	}
	for c := range documented {
		if _, ok := declared[c]; !ok {
			t.Errorf("%s has an entry for %q, which is no authz.Reason constant in the code (renamed or removed?)", troubleshootingDoc, c)
		}
	}
}
