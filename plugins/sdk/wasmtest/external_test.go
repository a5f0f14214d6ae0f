package wasmtest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestExternalModule checks that a plugin in a module of its own, outside
// Faro's, can test its .wasm with wasmtest and its handler with sdktest: it
// copies testdata/ownrepo to a temporary directory, points its replace
// directive at this checkout and runs `go test -v ./...` there. That fails
// if the fixture cannot build from outside Faro's module (say a harness
// needed a type from an internal package) or if any of its tests fail.
//
// It runs offline: the fixture gets Faro's go.sum and Faro's requirements,
// so its build list is Faro's, which `go mod download` put in the module
// cache (GOPROXY=off makes a missing module an error instead of a fetch).
func TestExternalModule(t *testing.T) {
	goBin := goCommand(t)
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	var faro struct {
		Module  struct{ Path string }
		Go      string
		Require []struct{ Path, Version string }
	}
	if err := json.Unmarshal(goRun(t, goBin, root, "mod", "edit", "-json"), &faro); err != nil {
		t.Fatal(err)
	}
	if faro.Module.Path != "github.com/faro-dev/faro" {
		t.Fatalf("%s is module %q, not Faro", root, faro.Module.Path)
	}

	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("testdata", "ownrepo"))); err != nil {
		t.Fatal(err)
	}
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.sum"), sum, 0o644); err != nil {
		t.Fatal(err)
	}
	// What `go mod tidy` would write, without the network: Faro's go
	// version and requirements (a superset of the fixture's), and Faro
	// itself from this checkout.
	edit := []string{"mod", "edit", "-go=" + faro.Go, "-replace=github.com/faro-dev/faro=" + root}
	for _, r := range faro.Require {
		edit = append(edit, "-require="+r.Path+"@"+r.Version)
	}
	goRun(t, goBin, dir, edit...)

	ctx := context.Background()
	if dl, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, dl.Add(-10*time.Second))
		defer cancel()
	}
	start := time.Now()
	cmd := exec.CommandContext(ctx, goBin, "test", "-count=1", "-v", "./...")
	cmd.Dir = dir
	cmd.Env = goEnv(goBin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go test in the external module: %v\n%s", err, out)
	}
	for _, want := range []string{
		"--- PASS: TestNativeHarness",
		"--- PASS: TestWasmHarness",
		"--- PASS: TestUnknownKey",
		`external wasm record: {"event":"ADDED","key":"prod/app","kind":"ConfigMap","label":"ext","value":{"level":"debug"}}`,
		`external config check: config: unknown key "fieldz"`,
		"ok  \texample.com/myplugin",
	} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("output lacks %q", want)
		}
	}
	for _, bad := range []string{"--- SKIP", "--- FAIL", "[no test files]"} {
		if bytes.Contains(out, []byte(bad)) {
			t.Errorf("output has %q", bad)
		}
	}
	if t.Failed() {
		t.Logf("go test output:\n%s", out)
	}
	t.Logf("external module built and tested in %s", time.Since(start).Round(time.Millisecond))
}

// goCommand is the go command running this test: go test puts its
// GOROOT/bin first in the PATH of the test binary.
func goCommand(t *testing.T) string {
	p, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// goEnv is the environment for the go commands in the fixture, including
// wasmtest.Build's: the same toolchain first in PATH, offline, no workspace.
func goEnv(goBin string) []string {
	env := make([]string, 0, len(os.Environ())+4)
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "PATH" && k != "GOPROXY" && k != "GOWORK" && k != "GOTOOLCHAIN" {
			env = append(env, kv)
		}
	}
	return append(env,
		"PATH="+filepath.Dir(goBin)+string(os.PathListSeparator)+os.Getenv("PATH"),
		"GOPROXY=off", "GOWORK=off", "GOTOOLCHAIN=local")
}

// goRun runs a quick go command in dir and returns its stdout.
func goRun(t *testing.T, goBin, dir string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(goBin, args...)
	cmd.Dir = dir
	cmd.Env = goEnv(goBin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return out
}
