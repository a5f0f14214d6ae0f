package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	faroBin   string
	buildErr  error
)

// faroBinary builds cmd/faro once per test run.
func faroBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "faro-e2e-bin-")
		if err != nil {
			buildErr = err
			return
		}
		faroBin = filepath.Join(dir, "faro")
		out, err := exec.Command("go", "build", "-o", faroBin, "github.com/faro-dev/faro/cmd/faro").CombinedOutput()
		if err != nil {
			buildErr = &buildError{err: err, out: string(out)}
		}
	})
	if buildErr != nil {
		t.Fatalf("build faro: %v", buildErr)
	}
	return faroBin
}

// noServing turns off the metrics and probe servers of a faro binary, so
// that binaries running at once do not compete for their default ports.
var noServing = []string{"--metrics-bind-address", "0", "--health-probe-bind-address", "0"}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + e.out }

// TestValidateBrokenFiles: `faro validate` exits 1 on each broken file and
// names the place of the problem; it exits 0 on a good one.
func TestValidateBrokenFiles(t *testing.T) {
	t.Parallel()
	bin := faroBinary(t)
	fixtures := filepath.Join("..", "..", "config", "testdata")
	tests := []struct {
		file     string
		wantCode int
		want     []string
	}{
		{"valid/both-formats.yaml", 0, []string{"both-formats.yaml: ok"}},
		{"invalid/bad-yaml.yaml", 1, []string{"bad-yaml.yaml:3: mapping values are not allowed"}},
		{"invalid/unknown-key.yaml", 1, []string{`unknown-key.yaml:3: resources[0].name_patern: unknown key "name_patern"`}},
		{"invalid/bad-regex.yaml", 1, []string{`bad-regex.yaml:3: resources[0].name_pattern: invalid regular expression "app-("`}},
		{"invalid/bad-selector.yaml", 1, []string{`bad-selector.yaml:3: resources[0].label_selector: invalid label selector`}},
		{"invalid/bad-event-type.yaml", 1, []string{`bad-event-type.yaml:3: resources[0].event_types[1]: unknown event type "MODIFIED"`}},
		{"invalid/bad-plugin.yaml", 1, []string{`bad-plugin.yaml:3: plugins[0].path: plugin "broken"`}},
		{"invalid/many-problems.yaml", 1, []string{"many-problems.yaml:1: log_level", "many-problems.yaml:4: resources[0].name_pattern", "many-problems.yaml:8: resources[2].plugins[0]"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			cmd := exec.Command(bin, "validate", "--config", filepath.Join(fixtures, tt.file))
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.wantCode {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, tt.wantCode, stderr.String())
			}
			out := stdout.String() + stderr.String()
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

// TestBinaryLifecycle runs the real binary: it reports a matched event,
// exits 0 on SIGTERM after a graceful stop, and a startup failure exits
// non-zero with a one-line reason.
func TestBinaryLifecycle(t *testing.T) {
	t.Parallel()
	bin := faroBinary(t)
	ns := createNamespace(t, "binary")
	cfg := configFile(t, "resources:\n  - gvr: v1/configmaps\n    namespace_patterns: ["+ns+"]\n")

	t.Run("graceful SIGTERM", func(t *testing.T) {
		createCM(t, ns, "pre-existing", nil)
		var stdout, stderr syncBuffer
		cmd := exec.Command(bin, append([]string{"--config", cfg, "--kubeconfig", cluster.Kubeconfig}, noServing...)...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		want := "CONFIG [ADDED] v1/configmaps " + ns + "/pre-existing"
		deadline := time.Now().Add(waitTime)
		for !strings.Contains(stdout.String(), want) {
			if time.Now().After(deadline) {
				_ = cmd.Process.Kill()
				t.Fatalf("no %q in output:\n%s\n%s", want, stdout.String(), stderr.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
		if !strings.Contains(stdout.String(), "initial=true") {
			t.Errorf("pre-existing object not marked initial:\n%s", stdout.String())
		}
		// SIGHUP reloads the config even when the file did not change.
		_ = cmd.Process.Signal(syscall.SIGHUP)
		for !strings.Contains(stderr.String(), "config reloaded: reason=SIGHUP") {
			if time.Now().After(deadline) {
				_ = cmd.Process.Kill()
				t.Fatalf("no reload after SIGHUP:\n%s", stderr.String())
			}
			time.Sleep(50 * time.Millisecond)
		}

		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("faro exited with %v after SIGTERM; stderr:\n%s", err, stderr.String())
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatal("faro did not exit within 30s of SIGTERM")
		}
		if !strings.Contains(stderr.String(), "stopped") {
			t.Errorf("no final 'stopped' line (logs not flushed?):\n%s", stderr.String())
		}
	})

	t.Run("unreachable API server", func(t *testing.T) {
		kc := filepath.Join(t.TempDir(), "kubeconfig")
		if err := os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, bin, append([]string{"--config", cfg, "--kubeconfig", kc}, noServing...)...).CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() == 0 {
			t.Fatalf("exit = %v, want a non-zero exit; output:\n%s", err, out)
		}
		last := strings.TrimSpace(string(out))
		if i := strings.LastIndex(last, "\n"); i >= 0 {
			last = last[i+1:]
		}
		if !strings.HasPrefix(last, "faro: discover API resources at https://127.0.0.1:1") {
			t.Errorf("last line %q does not give the reason", last)
		}
	})
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
