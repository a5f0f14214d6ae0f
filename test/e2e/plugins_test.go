package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/faro-dev/faro/plugins/sdk/wasmtest"
)

var (
	pluginsOnce sync.Once
	pluginsDir  string
	pluginsErr  error
)

// builtPlugins builds the three example plugins and the host's test guest
// once per test run and returns the folder holding changelog.wasm,
// notify.wasm, image-policy.wasm and guest.wasm.
func builtPlugins(t *testing.T) string {
	t.Helper()
	pluginsOnce.Do(func() {
		pluginsDir, pluginsErr = os.MkdirTemp("", "faro-e2e-plugins-")
		if pluginsErr != nil {
			return
		}
		for _, name := range []string{"changelog", "notify", "image-policy"} {
			if pluginsErr = buildPlugin(name, filepath.Join(pluginsDir, name+".wasm")); pluginsErr != nil {
				return
			}
		}
		pluginsErr = wasmtest.Build(context.Background(), filepath.Join("..", "..", "internal", "wasmhost", "testdata", "guest"), filepath.Join(pluginsDir, "guest.wasm"))
	})
	if pluginsErr != nil {
		t.Fatalf("build example plugins: %v", pluginsErr)
	}
	return pluginsDir
}

func buildPlugin(name, out string) error {
	return wasmtest.Build(context.Background(), filepath.Join("..", "..", "plugins", "examples", name), out)
}

// pluginRecord is a PLUGIN line of the JSON output.
type pluginRecord struct {
	Message string          `json:"@message"`
	Plugin  string          `json:"plugin"`
	Name    string          `json:"name"`
	Rule    string          `json:"rule"`
	Record  json.RawMessage `json:"record"`
}

// records returns the PLUGIN lines of plugin, parsed.
func (f *faro) records(plugin string) []pluginRecord {
	f.mu.Lock()
	defer f.mu.Unlock()
	return recordsOf(f.raw, plugin)
}

func recordsOf(raw []string, plugin string) []pluginRecord {
	var out []pluginRecord
	for _, l := range raw {
		if r, ok := parseRecord(l); ok && r.Plugin == plugin {
			out = append(out, r)
		}
	}
	return out
}

// parseRecord parses one output line as a PLUGIN line.
func parseRecord(line string) (pluginRecord, bool) {
	var r pluginRecord
	ok := json.Unmarshal([]byte(line), &r) == nil && r.Plugin != "" && strings.HasPrefix(r.Message, "PLUGIN ["+r.Plugin+"]")
	return r, ok
}

// TestExamplePlugins runs Faro with the three example plugins against the
// real apiserver and checks the records they emit and the webhook request.
func TestExamplePlugins(t *testing.T) {
	t.Parallel()
	dir := builtPlugins(t)
	ns := createNamespace(t, "plugins")

	var hookMu sync.Mutex
	var hookBodies []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		hookMu.Lock()
		hookBodies = append(hookBodies, string(b))
		hookMu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer hook.Close()
	hookHost := strings.TrimPrefix(hook.URL, "http://")

	f := startFaro(t, fmt.Sprintf(`
plugins:
  - name: changelog
    path: %[1]s/changelog.wasm
    config: {fields: ["data"]}
    timeout: 2s
  - name: notify
    path: %[1]s/notify.wasm
    config:
      webhook_url: %[2]s/hook
      link: "https://console.example.com/{namespace}/{name}"
      events: [ADDED]
    allowed_hosts: [%[3]q]
  - name: image-policy
    path: %[1]s/image-policy.wasm
    config: {allowed_registries: ["registry.example.com"]}
resources:
  - gvr: v1/configmaps
    namespace_patterns: [%[4]q]
    plugins: [changelog, notify]
  - gvr: v1/pods
    namespace_patterns: [%[4]q]
    plugins: [image-policy]
  - gvr: apps/v1/deployments
    namespace_patterns: [%[4]q]
    plugins: [image-policy]
`, dir, hook.URL, hookHost, ns))

	// changelog + notify on a ConfigMap.
	createCM(t, ns, "settings", nil)
	updateCM(t, ns, "settings", "1")
	f.waitFor(waitTime, "a changelog record", func([]event, []string) bool { return len(recordsOf(f.raw, "changelog")) > 0 })
	cl := f.records("changelog")
	if len(cl) != 1 {
		t.Fatalf("changelog emitted %d records, want 1 (only the UPDATED): %v", len(cl), cl)
	}
	var change struct {
		Key     string `json:"key"`
		Changes []struct {
			Path     string `json:"path"`
			Old, New any
		} `json:"changes"`
	}
	if err := json.Unmarshal(cl[0].Record, &change); err != nil {
		t.Fatal(err)
	}
	if change.Key != ns+"/settings" || len(change.Changes) != 1 || change.Changes[0].Path != "data.v" || change.Changes[0].Old != "0" || change.Changes[0].New != "1" {
		t.Errorf("changelog record = %s, want data.v from 0 to 1", cl[0].Record)
	}
	f.waitFor(waitTime, "a notify record", func([]event, []string) bool { return len(recordsOf(f.raw, "notify")) > 0 })
	hookMu.Lock()
	bodies := append([]string(nil), hookBodies...)
	hookMu.Unlock()
	if len(bodies) != 1 {
		t.Fatalf("webhook got %d requests, want 1 (ADDED only): %v", len(bodies), bodies)
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(bodies[0]), &body); err != nil {
		t.Fatalf("webhook body is not JSON: %q", bodies[0])
	}
	if body["key"] != ns+"/settings" || body["event"] != "ADDED" || body["link"] != "https://console.example.com/"+ns+"/settings" ||
		!strings.Contains(fmt.Sprint(body["text"]), "added") {
		t.Errorf("webhook body = %s", bodies[0])
	}

	// image-policy on a Pod and a Deployment.
	if _, err := kube.CoreV1().Pods(ns).Create(t.Context(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "bad-pod"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{
			{Name: "ok", Image: "registry.example.com/app@sha256:" + strings.Repeat("a", 64), Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("64Mi")}}},
			{Name: "bad", Image: "docker.io/library/nginx:1.27"},
		}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "x"}
	if _, err := kube.AppsV1().Deployments(ns).Create(t.Context(), &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "bad-deploy"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "quay.io/evil/miner:latest"}}}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.waitFor(waitTime, "three findings each for the pod and the deployment", func([]event, []string) bool {
		n := map[string]int{}
		for _, r := range recordsOf(f.raw, "image-policy") {
			n[r.Name]++
		}
		return n["bad-pod"] >= 3 && n["bad-deploy"] >= 3
	})
	findings := map[string][]string{}
	for _, r := range f.records("image-policy") {
		var fd struct{ Container, Check string }
		if err := json.Unmarshal(r.Record, &fd); err != nil {
			t.Fatal(err)
		}
		findings[r.Name] = append(findings[r.Name], fd.Container+":"+fd.Check)
	}
	want := map[string]string{"bad-pod": "bad:digest,bad:limits,bad:registry", "bad-deploy": "c:digest,c:limits,c:registry"}
	for name, w := range want {
		got := findings[name]
		slices.Sort(got)
		if strings.Join(got, ",") != w {
			t.Errorf("%s findings = %v, want %s", name, got, w)
		}
	}
}
