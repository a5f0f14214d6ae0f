package rbac

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	fakediscovery "k8s.io/client-go/discovery/fake"
	kubetesting "k8s.io/client-go/testing"

	"github.com/faro-dev/faro/config"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func TestFor(t *testing.T) {
	tests := []struct {
		config      string
		sa          string
		leaderElect bool
		golden      string
	}{
		{"literal-namespaces.yaml", "faro-system/faro", false, "literal-namespaces.golden.yaml"},
		{"cluster-wide.yaml", "faro-system/faro", false, "cluster-wide.golden.yaml"},
		{"spellings.yaml", "ops/watcher", false, "spellings.golden.yaml"},
		{"cluster-wide.yaml", "faro-system/faro", true, "leader-elect.golden.yaml"},
		{"literal-namespaces.yaml", "team-a/faro", true, "leader-elect-shared-namespace.golden.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			cfg, err := config.Load(filepath.Join("testdata", tt.config))
			if err != nil {
				t.Fatal(err)
			}
			ns, name, _ := strings.Cut(tt.sa, "/")
			g, err := For(cfg, Options{ServiceAccountNamespace: ns, ServiceAccountName: name, LeaderElect: tt.leaderElect})
			if err != nil {
				t.Fatal(err)
			}
			got, err := g.YAML("RBAC for " + tt.config)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("testdata", tt.golden), got)
		})
	}
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func TestForRejects(t *testing.T) {
	cfg, err := config.Parse([]byte("resources:\n  - gvr: widgets\n"), "faro.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"no namespace", Options{ServiceAccountName: "faro"}, `service account namespace "" is not valid`},
		{"bad name", Options{ServiceAccountNamespace: "ops", ServiceAccountName: "Faro_1"}, `service account name "Faro_1" is not valid`},
		{"ambiguous bare name", Options{ServiceAccountNamespace: "ops", ServiceAccountName: "faro", Resolver: discoveryOf(t)},
			"faro.yaml:2: resources[0]: widgets is ambiguous: served by the groups a.example.com, b.example.com; name the group"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := For(cfg, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

// discoveryOf is a fake API server's discovery: core and apps resources,
// widgets served by two custom groups, a cluster-scoped custom resource.
func discoveryOf(t *testing.T) *Discovery {
	t.Helper()
	fake := &fakediscovery.FakeDiscovery{Fake: &kubetesting.Fake{}}
	fake.Resources = []*metav1.APIResourceList{
		{GroupVersion: "v1", APIResources: []metav1.APIResource{
			{Name: "configmaps", Namespaced: true, Kind: "ConfigMap"},
			{Name: "nodes", Namespaced: false, Kind: "Node"},
			{Name: "pods/log", Namespaced: true, Kind: "Pod"},
		}},
		{GroupVersion: "apps/v1", APIResources: []metav1.APIResource{{Name: "deployments", Namespaced: true, Kind: "Deployment"}}},
		{GroupVersion: "a.example.com/v1", APIResources: []metav1.APIResource{{Name: "widgets", Namespaced: true, Kind: "Widget"}}},
		{GroupVersion: "b.example.com/v1", APIResources: []metav1.APIResource{{Name: "widgets", Namespaced: true, Kind: "Widget"}}},
		{GroupVersion: "tools.example.com/v1", APIResources: []metav1.APIResource{{Name: "clusterwidgets", Namespaced: false, Kind: "ClusterWidget"}}},
	}
	d, err := NewDiscovery(fake)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDiscoveryResolve(t *testing.T) {
	d := discoveryOf(t)
	tests := []struct {
		gvr, scope string
		want       Resource
	}{
		{"configmaps", "", Resource{Group: "", Resource: "configmaps", Namespaced: true}},
		{"deployments", "", Resource{Group: "apps", Resource: "deployments", Namespaced: true}},
		{"nodes", "", Resource{Group: "", Resource: "nodes", Namespaced: false}},
		// The server's scope wins over the entry's.
		{"clusterwidgets.tools.example.com", "Namespaced", Resource{Group: "tools.example.com", Resource: "clusterwidgets", Namespaced: false}},
		// Not served (a CRD to come): resolved from the config.
		{"example.com/v1/gadgets", "", Resource{Group: "example.com", Resource: "gadgets", Namespaced: true}},
		{"example.com/v1/things", "Cluster", Resource{Group: "example.com", Resource: "things", Namespaced: false}},
	}
	for _, tt := range tests {
		t.Run(tt.gvr, func(t *testing.T) {
			ref, err := config.ParseResourceRef(tt.gvr)
			if err != nil {
				t.Fatal(err)
			}
			got, err := d.Resolve(config.Rule{Resource: ref, Scope: tt.scope})
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("Resolve(%s) = %+v, want %+v", tt.gvr, got, tt.want)
			}
		})
	}
}
