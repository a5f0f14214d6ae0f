package e2e

import (
	"reflect"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/faro-dev/faro/config"
	"github.com/faro-dev/faro/internal/rbac"
)

// TestDeploy renders deploy/ with kustomize, checks that its RBAC is what
// `faro rbac` computes for its config and that the config is valid, and
// has the API server admit every object (server-side dry run), and the
// Deployment's pod under the namespace's restricted Pod Security level.
func TestDeploy(t *testing.T) {
	t.Parallel()
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), "../../deploy")
	if err != nil {
		t.Fatalf("kustomize build deploy/: %v", err)
	}
	var objs []*unstructured.Unstructured
	var ns *unstructured.Unstructured
	rendered := map[string]*unstructured.Unstructured{}
	for _, r := range res.Resources() {
		m, err := r.Map()
		if err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{Object: m}
		rendered[u.GetKind()+" "+u.GetNamespace()+"/"+u.GetName()] = u
		if u.GetKind() == "Namespace" {
			ns = u
			continue
		}
		objs = append(objs, u)
	}
	if ns == nil || ns.GetName() != "faro-system" {
		t.Fatalf("deploy/ has no faro-system namespace")
	}

	cm := rendered["ConfigMap faro-system/faro-config"]
	if cm == nil {
		t.Fatalf("deploy/ has no ConfigMap faro-system/faro-config; has %v", keys(rendered))
	}
	data, _, _ := unstructured.NestedString(cm.Object, "data", "faro.yaml")
	cfg, err := config.Parse([]byte(data), "deploy/faro.yaml")
	if err != nil {
		t.Fatalf("the shipped config: %v", err)
	}
	t.Run("RBAC is what faro rbac prints", func(t *testing.T) {
		grants, err := rbac.For(cfg, rbac.Options{ServiceAccountNamespace: "faro-system", ServiceAccountName: "faro", LeaderElect: true})
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]bool{}
		for _, obj := range grants.Objects() {
			m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
			if err != nil {
				t.Fatal(err)
			}
			u := &unstructured.Unstructured{Object: m}
			unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
			key := u.GetKind() + " " + u.GetNamespace() + "/" + u.GetName()
			want[key] = true
			got := rendered[key]
			if got == nil {
				t.Errorf("deploy/ lacks %s (run make deploy-rbac)", key)
				continue
			}
			if !reflect.DeepEqual(got.Object, u.Object) {
				t.Errorf("deploy/ %s differs from faro rbac (run make deploy-rbac):\n got %v\nwant %v", key, got.Object, u.Object)
			}
		}
		for key, u := range rendered {
			if k := u.GetKind(); (k == "ClusterRole" || k == "ClusterRoleBinding" || k == "Role" || k == "RoleBinding") && !want[key] {
				t.Errorf("deploy/ has %s, which faro rbac does not print", key)
			}
		}
	})

	// The namespace is created for real: the dry runs of its objects need it.
	apply(t, []*unstructured.Unstructured{ns}, false)
	t.Cleanup(func() { deleteNamespace(t, "faro-system") })
	apply(t, objs, true)

	t.Run("restricted Pod Security admits the pod", func(t *testing.T) {
		var d appsv1.Deployment
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(rendered["Deployment faro-system/faro"].Object, &d); err != nil {
			t.Fatal(err)
		}
		if *d.Spec.Replicas != 2 {
			t.Errorf("replicas = %d, want 2", *d.Spec.Replicas)
		}
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "faro-pss", Labels: d.Spec.Template.Labels}, Spec: d.Spec.Template.Spec}
		if _, err := kube.CoreV1().Pods("faro-system").Create(t.Context(), pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
			t.Errorf("the Deployment's pod is not admitted in faro-system: %v", err)
		}
		// The check can fail: a privileged variant is refused.
		pod.Spec.Containers[0].SecurityContext.AllowPrivilegeEscalation = nil
		_, err := kube.CoreV1().Pods("faro-system").Create(t.Context(), pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil || !strings.Contains(err.Error(), `violates PodSecurity "restricted:latest"`) {
			t.Errorf("a pod allowing privilege escalation: err = %v, want a PodSecurity violation", err)
		}
	})
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
