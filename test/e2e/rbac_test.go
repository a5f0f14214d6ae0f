package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/faro-dev/faro/internal/daemon"
)

// TestRBAC applies what `faro rbac` prints, runs Faro with the service
// account's token and checks it reports events without a forbidden error,
// then asks the API server (SubjectAccessReview) what the account may do:
// read what the config names and nothing else, write nothing.
func TestRBAC(t *testing.T) {
	t.Parallel()
	bin := faroBinary(t)
	ns, other, saNS := createNamespace(t, "rbac"), createNamespace(t, "rbac-other"), createNamespace(t, "rbac-sa")
	const saName = "faro"
	cfg := fmt.Sprintf(`resources:
  - gvr: v1/configmaps
    namespace_patterns: [%[1]s]
    cel: "object.metadata.name != ''"
  - gvr: apps/v1/deployments
    namespace_patterns: ["%[1]s|nothing-.*"]
  - gvr: v1/namespaces
    name_pattern: %[1]s
`, ns)
	cfgPath := configFile(t, cfg)
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, "rbac", "--config", cfgPath, "--service-account", saNS+"/"+saName)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("faro rbac: %v\n%s", err, stderr.String())
	}
	objs := decodeYAML(t, stdout.Bytes())
	if kinds := kindsOf(objs); kinds != "ClusterRole ClusterRoleBinding Role RoleBinding" {
		t.Fatalf("faro rbac printed %s; want a ClusterRole (deployments, namespaces) and a Role in %s (configmaps)\n%s", kinds, ns, stdout.String())
	}
	apply(t, objs, false)
	if _, err := kube.CoreV1().ServiceAccounts(saNS).Create(t.Context(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: saName}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	can := func(verb, group, resource, namespace string) bool {
		t.Helper()
		sar, err := kube.AuthorizationV1().SubjectAccessReviews().Create(t.Context(), &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
			User:               "system:serviceaccount:" + saNS + ":" + saName,
			Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:" + saNS, "system:authenticated"},
			ResourceAttributes: &authzv1.ResourceAttributes{Verb: verb, Group: group, Resource: resource, Namespace: namespace},
		}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return sar.Status.Allowed
	}
	// The authorizer follows RBAC objects through its informers: wait until
	// it knows the new ones.
	for deadline := time.Now().Add(30 * time.Second); !can("list", "", "configmaps", ns); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the applied Role does not take effect")
		}
	}

	tr, err := kube.CoreV1().ServiceAccounts(saNS).CreateToken(t.Context(), saName, &authnv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest: %v", err)
	}
	saCfg := &rest.Config{Host: cluster.Config.Host, BearerToken: tr.Status.Token, TLSClientConfig: rest.TLSClientConfig{CAData: cluster.Config.CAData}}
	f := startFaro(t, cfg, func(o *daemon.Options) { o.RestConfig = saCfg })
	createCM(t, ns, "after", nil)
	if _, err := kube.AppsV1().Deployments(ns).Create(t.Context(), deployment("web"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.waitEvent("CONFIG [ADDED] v1/namespaces "+ns, waitTime)
	f.waitEvent("CONFIG [ADDED] v1/configmaps "+ns+"/after", waitTime)
	f.waitEvent("CONFIG [ADDED] apps/v1/deployments "+ns+"/web", waitTime)
	for _, word := range []string{"forbidden", "Forbidden"} {
		if n := f.countDiag(word); n > 0 {
			f.mu.Lock()
			t.Errorf("%d diagnostics say %s:\n%s", n, word, strings.Join(f.diag, "\n"))
			f.mu.Unlock()
		}
	}

	allowed := []struct{ verb, group, resource, namespace string }{
		{"watch", "", "configmaps", ns},
		{"list", "apps", "deployments", ""},
		{"watch", "", "namespaces", ""},
		{"list", "apiextensions.k8s.io", "customresourcedefinitions", ""},
	}
	for _, a := range allowed {
		if !can(a.verb, a.group, a.resource, a.namespace) {
			t.Errorf("the account cannot %s %s/%s in %q; Faro needs it", a.verb, a.group, a.resource, a.namespace)
		}
	}
	denied := []struct{ verb, group, resource, namespace string }{
		{"get", "", "secrets", ns},
		{"list", "", "secrets", ""},
		{"watch", "", "secrets", saNS},
		{"list", "", "configmaps", other}, // configmaps only where the config looks
		{"list", "", "pods", ns},
		{"get", "", "serviceaccounts", saNS},
	}
	for _, verb := range []string{"create", "update", "patch", "delete", "deletecollection"} {
		denied = append(denied,
			struct{ verb, group, resource, namespace string }{verb, "", "configmaps", ns},
			struct{ verb, group, resource, namespace string }{verb, "apps", "deployments", ns},
			struct{ verb, group, resource, namespace string }{verb, "", "namespaces", ""},
			struct{ verb, group, resource, namespace string }{verb, "apiextensions.k8s.io", "customresourcedefinitions", ""},
			struct{ verb, group, resource, namespace string }{verb, "coordination.k8s.io", "leases", saNS},
			struct{ verb, group, resource, namespace string }{verb, "rbac.authorization.k8s.io", "roles", ns},
			struct{ verb, group, resource, namespace string }{verb, "*", "*", ""},
		)
	}
	for _, d := range denied {
		if can(d.verb, d.group, d.resource, d.namespace) {
			t.Errorf("the account can %s %s/%s in %q", d.verb, d.group, d.resource, d.namespace)
		}
	}
}

// deployment is a minimal valid Deployment (nothing runs it: the test
// cluster has no controllers).
func deployment(name string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example.com/app:1"}}},
			},
		},
	}
}

// decodeYAML splits a multi-document YAML stream into objects.
func decodeYAML(t *testing.T, data []byte) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	for _, doc := range strings.Split("\n"+string(data), "\n---\n") {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatalf("decode YAML: %v\n%s", err, doc)
		}
		if len(m) > 0 {
			objs = append(objs, &unstructured.Unstructured{Object: m})
		}
	}
	return objs
}

func kindsOf(objs []*unstructured.Unstructured) string {
	kinds := make([]string, len(objs))
	for i, o := range objs {
		kinds[i] = o.GetKind()
	}
	return strings.Join(kinds, " ")
}

// apply creates every object with the dynamic client, resolving kinds
// through discovery, and deletes the created ones when the test ends; with
// dryRun the server validates and admits each object (server-side dry run)
// without storing it.
func apply(t *testing.T, objs []*unstructured.Unstructured, dryRun bool) {
	t.Helper()
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(kube.Discovery()))
	opts := metav1.CreateOptions{FieldManager: "faro-e2e"}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	for _, obj := range objs {
		gvk := obj.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Fatalf("%s %s: %v", gvk.Kind, obj.GetName(), err)
		}
		ri := dyn.Resource(m.Resource)
		create, del := ri.Create, ri.Delete
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			nri := ri.Namespace(obj.GetNamespace())
			create, del = nri.Create, nri.Delete
		}
		if _, err := create(t.Context(), obj, opts); err != nil {
			t.Fatalf("create %s %s/%s (dry run %v): %v", gvk.Kind, obj.GetNamespace(), obj.GetName(), dryRun, err)
		}
		if !dryRun {
			name := obj.GetName()
			t.Cleanup(func() {
				if err := del(context.Background(), name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
					t.Logf("delete %s %s: %v", gvk.Kind, name, err)
				}
			})
		}
	}
}
