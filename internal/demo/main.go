// Command demo is what `make demo` runs: it starts the embedded test
// cluster, runs the faro binary on a copy of config/examples/demo.yaml,
// drives a few objects through it (namespaced, cluster-scoped, a CEL rule
// that does not match and then does, a Deployment and a custom resource
// whose CRD appears while Faro runs), adds a rule to the config file while
// Faro runs, so that the matched events and the reload show on the
// terminal, then stops everything cleanly.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/faro-dev/faro/internal/testcluster"
)

func main() {
	faroBin := flag.String("faro", "bin/faro", "faro binary")
	cfg := flag.String("config", "config/examples/demo.yaml", "config file")
	flag.Parse()
	if err := run(*faroBin, *cfg); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func say(format string, args ...any) {
	fmt.Printf("\n\033[1m>>> "+format+"\033[0m\n", args...)
}

func run(faroBin, cfg string) error {
	ctx := context.Background()
	say("starting a local kube-apiserver and etcd (no Docker, no downloads)")
	c, err := testcluster.Start(ctx, testcluster.Options{})
	if err != nil {
		return err
	}
	defer func() {
		say("stopping the local cluster")
		_ = c.Stop()
	}()
	kube := kubernetes.NewForConfigOrDie(c.Config)
	dyn := dynamic.NewForConfigOrDie(c.Config)

	// The demo edits the config while Faro runs: it works on a copy, whose
	// plugin paths still point at bin/plugins.
	live, err := copyConfig(cfg)
	if err != nil {
		return err
	}
	defer os.RemoveAll(filepath.Dir(live))
	say("%s --config %s --kubeconfig %s", faroBin, live, c.Kubeconfig)
	cmd := exec.Command(faroBin, "--config", live, "--kubeconfig", c.Kubeconfig)
	cmd.Stdout = os.Stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	synced, reloaded := make(chan struct{}), make(chan struct{})
	go forward(stderr, map[string]chan struct{}{"informer synced": synced, "config reloaded": reloaded})
	if err := await(synced, "faro did not start watching"); err != nil {
		_ = cmd.Process.Kill()
		return err
	}

	steps := []struct {
		what string
		do   func() error
	}{
		{"create namespace faro-demo (cluster-scoped)", func() error {
			_, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "faro-demo"}}, metav1.CreateOptions{})
			return err
		}},
		{"create ConfigMaps app-settings (matches) and scratch (does not)", func() error {
			for _, n := range []string{"app-settings", "scratch"} {
				if _, err := kube.CoreV1().ConfigMaps("faro-demo").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: n}, Data: map[string]string{"mode": "blue"}}, metav1.CreateOptions{}); err != nil {
					return err
				}
			}
			return nil
		}},
		{"update app-settings", func() error { return setMode(ctx, kube, "app-settings", "green") }},
		{"create ConfigMap alert with mode=blue: the CEL rule (mode == 'red') does not match", func() error {
			_, err := kube.CoreV1().ConfigMaps("faro-demo").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "alert"}, Data: map[string]string{"mode": "blue"}}, metav1.CreateOptions{})
			return err
		}},
		{"set alert's mode to red: now it matches", func() error { return setMode(ctx, kube, "alert", "red") }},
		{"create Deployment web (tier=web), then scale it to 3", func() error {
			replicas := int32(1)
			labels := map[string]string{"app": "web", "tier": "web"}
			d := &appsv1.Deployment{
				ObjectMeta: metav1.ObjectMeta{Name: "web", Labels: labels},
				Spec: appsv1.DeploymentSpec{
					Replicas: &replicas,
					Selector: &metav1.LabelSelector{MatchLabels: labels},
					Template: corev1.PodTemplateSpec{
						ObjectMeta: metav1.ObjectMeta{Labels: labels},
						Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx:1.27"}}},
					},
				},
			}
			d, err := kube.AppsV1().Deployments("faro-demo").Create(ctx, d, metav1.CreateOptions{})
			if err != nil {
				return err
			}
			replicas = 3
			d.Spec.Replicas = &replicas
			_, err = kube.AppsV1().Deployments("faro-demo").Update(ctx, d, metav1.UpdateOptions{})
			return err
		}},
		{"create the CRD widgets.demo.faro.dev, then a Widget", func() error { return createWidget(ctx, dyn) }},
		{"delete app-settings", func() error {
			return kube.CoreV1().ConfigMaps("faro-demo").Delete(ctx, "app-settings", metav1.DeleteOptions{})
		}},
		{"edit the config file while Faro runs: add a rule for Secrets", func() error {
			f, err := os.OpenFile(live, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			_, err = f.WriteString("  # Added while Faro runs.\n  - gvr: v1/secrets\n    namespace_patterns: [\"faro-demo\"]\n")
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
			return await(reloaded, "faro did not reload its config")
		}},
		{"create Secret api-token: the new rule reports it", func() error {
			_, err := kube.CoreV1().Secrets("faro-demo").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "api-token"}, StringData: map[string]string{"token": "s3cr3t"}}, metav1.CreateOptions{})
			return err
		}},
	}
	for _, s := range steps {
		say("%s", s.what)
		if err := s.do(); err != nil {
			_ = cmd.Process.Kill()
			return fmt.Errorf("%s: %w", s.what, err)
		}
		time.Sleep(1500 * time.Millisecond) // let the reader see each step's events
	}

	say("SIGTERM to faro: it stops its informers, finishes queued events and exits 0")
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("faro: %w", err)
	}
	return nil
}

// setMode sets data.mode of ConfigMap faro-demo/name.
func setMode(ctx context.Context, kube kubernetes.Interface, name, mode string) error {
	cm, err := kube.CoreV1().ConfigMaps("faro-demo").Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	cm.Data["mode"] = mode
	_, err = kube.CoreV1().ConfigMaps("faro-demo").Update(ctx, cm, metav1.UpdateOptions{})
	return err
}

// forward copies faro's diagnostics to the terminal and closes each
// channel of seen when a line first contains its key.
func forward(r io.Reader, seen map[string]chan struct{}) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fmt.Fprintln(os.Stderr, sc.Text())
		for marker, ch := range seen {
			if strings.Contains(sc.Text(), marker) {
				close(ch)
				delete(seen, marker)
			}
		}
	}
}

// await waits for ch to close, for at most a minute.
func await(ch chan struct{}, what string) error {
	select {
	case <-ch:
		return nil
	case <-time.After(time.Minute):
		return fmt.Errorf("%s within a minute", what)
	}
}

// copyConfig copies the config at path into a temporary folder, with the
// paths it holds relative to path's folder made absolute, and returns the
// copy's path.
func copyConfig(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	abs, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "faro-demo-")
	if err != nil {
		return "", err
	}
	text := regexp.MustCompile(`(?m)^(\s+path: )(\S+)$`).ReplaceAllStringFunc(string(data), func(line string) string {
		i := strings.Index(line, "path: ") + len("path: ")
		return line[:i] + filepath.Join(abs, line[i:])
	})
	live := filepath.Join(dir, "faro.yaml")
	return live, os.WriteFile(live, []byte(text), 0o644)
}

func createWidget(ctx context.Context, dyn dynamic.Interface) error {
	crdGVR := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	crd := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1",
		"kind":       "CustomResourceDefinition",
		"metadata":   map[string]any{"name": "widgets.demo.faro.dev"},
		"spec": map[string]any{
			"group": "demo.faro.dev",
			"scope": "Namespaced",
			"names": map[string]any{"plural": "widgets", "singular": "widget", "kind": "Widget"},
			"versions": []any{map[string]any{
				"name": "v1", "served": true, "storage": true,
				"schema": map[string]any{"openAPIV3Schema": map[string]any{
					"type": "object", "x-kubernetes-preserve-unknown-fields": true,
				}},
			}},
		},
	}}
	if _, err := dyn.Resource(crdGVR).Create(ctx, crd, metav1.CreateOptions{}); err != nil {
		return err
	}
	gvr := schema.GroupVersionResource{Group: "demo.faro.dev", Version: "v1", Resource: "widgets"}
	w := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "demo.faro.dev/v1", "kind": "Widget",
		"metadata": map[string]any{"name": "gizmo"},
		"spec":     map[string]any{"size": int64(3)},
	}}
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := dyn.Resource(gvr).Namespace("faro-demo").Create(ctx, w, metav1.CreateOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil // the CRD is not established yet
		}
		return err == nil, err
	})
}
