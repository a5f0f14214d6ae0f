package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestSecretValuesStayHidden: a plugin that echoes the object, and a CEL
// rule whose error would quote a value, see a Secret's values only through
// an entry that says `secrets: reveal`; elsewhere they are redacted, in
// records, log lines and CEL errors alike (keys are kept).
func TestSecretValuesStayHidden(t *testing.T) {
	hidden, revealed := createNamespace(t, "secrets"), createNamespace(t, "secrets-reveal")
	wasm := filepath.Join(builtPlugins(t), "guest.wasm")
	f := startFaro(t, fmt.Sprintf(`
plugins:
  - name: echo
    path: %s
resources:
  - gvr: v1/secrets
    namespace_patterns: [%[2]q]
    plugins: [echo]
  - gvr: v1/secrets
    namespace_patterns: [%[2]q]
    cel: "object.data[object.data.password] != ''"
  - gvr: v1/secrets
    namespace_patterns: [%[3]q]
    secrets: reveal
    plugins: [echo]
`, wasm, hidden, revealed))
	for _, ns := range []string{hidden, revealed} {
		if _, err := kube.CoreV1().Secrets(ns).Create(t.Context(), &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "echo"},
			Data:       map[string][]byte{"password": []byte("hunter2")},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	const value = "aHVudGVyMg==" // base64 of hunter2, as the API serves it
	f.waitFor(waitTime, "both echo records and the CEL error", func(_ []event, diag []string) bool {
		return len(recordsOf(f.raw, "echo")) == 2 && countLines(diag, "CEL evaluation failed") > 0 // f.mu is held
	})
	for _, r := range f.records("echo") {
		var rec struct {
			Object struct {
				Metadata struct{ Namespace string }
				Data     map[string]string
			}
		}
		if err := json.Unmarshal(r.Record, &rec); err != nil {
			t.Fatalf("echo record %s: %v", r.Record, err)
		}
		want := "<redacted>"
		if rec.Object.Metadata.Namespace == revealed {
			want = value
		}
		if got := rec.Object.Data["password"]; got != want {
			t.Errorf("the echo record in %s shows password %q, want %q", rec.Object.Metadata.Namespace, got, want)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, l := range append(append([]string(nil), f.diag...), f.raw...) {
		if strings.Contains(l, value) && !strings.Contains(l, revealed) {
			t.Errorf("a line outside the revealing entry shows the value: %s", l)
		}
	}
}
