package config

import (
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseValidNormalizesBothFormats(t *testing.T) {
	cfg, err := Load(filepath.Join("testdata", "valid", "both-formats.yaml"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if cfg.LogLevel != "debug" || cfg.AutoShutdownSec != 30 {
		t.Errorf("settings = %q/%d, want debug/30", cfg.LogLevel, cfg.AutoShutdownSec)
	}
	want := []Rule{
		{ID: `namespaces[0].resources["apps/v1/deployments"]`, Resource: ResourceRef{Group: "apps", Version: "v1", Resource: "deployments"},
			NamespacePatterns: []string{"prod-.*"}, EventTypes: []EventType{Updated}, InitialEvents: true},
		{ID: `namespaces[0].resources["v1/configmaps"]`, Resource: ResourceRef{Version: "v1", Resource: "configmaps"},
			NamespacePatterns: []string{"prod-.*"}, NamePattern: "app-config", LabelSelector: "env=production", EventTypes: AllEventTypes, InitialEvents: true},
		{ID: "resources[0]", Resource: ResourceRef{Version: "v1", Resource: "configmaps"}, Scope: ScopeNamespaced,
			NamespacePatterns: []string{"prod-.*", "staging-.*"}, NamePattern: "app-.*", LabelSelector: "managed-by=faro", EventTypes: AllEventTypes, InitialEvents: false},
		{ID: "resources[1]", Resource: ResourceRef{Version: "v1", Resource: "namespaces"}, Scope: ScopeCluster,
			EventTypes: AllEventTypes, InitialEvents: true, CEL: []string{"object.metadata.name.startsWith('faro')"}},
		{ID: "resources[2]", Resource: ResourceRef{Group: "apps", Resource: "deployments"},
			EventTypes: AllEventTypes, InitialEvents: true, CEL: []string{"has(object.spec)", "variables.replicas > 1"},
			Variables: []Variable{{Name: "replicas", Expression: "has(object.spec.replicas) ? object.spec.replicas : 1"}}},
	}
	if len(cfg.Rules) != len(want) {
		t.Fatalf("got %d rules, want %d: %+v", len(cfg.Rules), len(want), cfg.Rules)
	}
	for i := range want {
		got := cfg.Rules[i]
		got.CEL, want[i].CEL = []string(got.CEL), []string(want[i].CEL)
		if !reflect.DeepEqual(got, want[i]) {
			t.Errorf("rule %d:\n got %+v\nwant %+v", i, got, want[i])
		}
	}
}

func TestParseInvalidReportsEveryProblemWithItsPlace(t *testing.T) {
	tests := []struct {
		file string
		want []string // each must appear in the error text
	}{
		{"bad-yaml.yaml", []string{"bad-yaml.yaml:3: mapping values are not allowed"}},
		{"unknown-key.yaml", []string{
			`unknown-key.yaml:3: resources[0].name_patern: unknown key "name_patern" (did you mean "name_pattern"?)`,
			`unknown-key.yaml:8: namespaces[0].resources["v1/configmaps"].labelselector: unknown key "labelselector" (did you mean "label_selector"?)`,
		}},
		{"bad-regex.yaml", []string{
			`bad-regex.yaml:3: resources[0].name_pattern: invalid regular expression "app-(": missing closing )`,
			`bad-regex.yaml:5: resources[1].namespace_patterns[1]: invalid regular expression "[z-a]"`,
		}},
		{"bad-selector.yaml", []string{`bad-selector.yaml:3: resources[0].label_selector: invalid label selector "env==(prod"`}},
		{"bad-event-type.yaml", []string{`bad-event-type.yaml:3: resources[0].event_types[1]: unknown event type "MODIFIED"`}},
		{"wrong-type.yaml", []string{
			"wrong-type.yaml:1: auto_shutdown_sec: cannot unmarshal !!str `soon` into int",
			"wrong-type.yaml:4: resources[0].namespace_patterns: cannot unmarshal !!str `prod` into []string",
		}},
		{"many-problems.yaml", []string{
			`many-problems.yaml:1: log_level: unknown level "loud"`,
			`many-problems.yaml:4: resources[0].name_pattern: invalid regular expression "("`,
			`many-problems.yaml:5: resources[1].gvr: "apps/deployments": "apps" is not a version`,
			`many-problems.yaml:6: resources[1].scope: unknown scope "Global"`,
			`many-problems.yaml:8: resources[2].plugins[0]: unknown plugin "missing"`,
		}},
		{"unknown-key-and-more.yaml", []string{
			`unknown-key-and-more.yaml:3: resources[0].name_patern: unknown key`,
			`unknown-key-and-more.yaml:4: resources[0].label_selector: invalid label selector`,
			`unknown-key-and-more.yaml:6: resources[1].name_pattern: invalid regular expression "("`,
		}},
		{"empty.yaml", []string{"config is empty"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			cfg, err := Load(filepath.Join("testdata", "invalid", tt.file))
			if err == nil {
				t.Fatalf("Load succeeded with %d rules, want an error", len(cfg.Rules))
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error is %T, want config.Errors: %v", err, err)
			}
			if len(errs) < len(tt.want) {
				t.Errorf("got %d problems, want at least %d:\n%v", len(errs), len(tt.want), err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error text lacks %q; got:\n%v", w, err)
				}
			}
		})
	}
}

func TestParseResourceRef(t *testing.T) {
	tests := []struct {
		in      string
		want    ResourceRef
		wantErr string
	}{
		{in: "v1/configmaps", want: ResourceRef{Version: "v1", Resource: "configmaps"}},
		{in: "apps/v1/deployments", want: ResourceRef{Group: "apps", Version: "v1", Resource: "deployments"}},
		{in: "configmaps", want: ResourceRef{Resource: "configmaps", AnyGroup: true}},
		{in: "deployments.apps", want: ResourceRef{Group: "apps", Resource: "deployments"}},
		{in: "widgets.example.com", want: ResourceRef{Group: "example.com", Resource: "widgets"}},
		{in: "example.com/v1beta2/widgets", want: ResourceRef{Group: "example.com", Version: "v1beta2", Resource: "widgets"}},
		{in: "apps/deployments", wantErr: `"apps" is not a version`},
		{in: "apps/one/deployments", wantErr: `invalid version "one"`},
		{in: "a/v1/b/c", wantErr: "too many slashes"},
		{in: "v1/ConfigMaps", wantErr: `invalid resource name "ConfigMaps"`},
		{in: "", wantErr: "invalid resource name"},
	}
	for _, tt := range tests {
		got, err := ParseResourceRef(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseResourceRef(%q) error = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseResourceRef(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
		if s := got.String(); s != tt.in {
			t.Errorf("String() = %q, want %q", s, tt.in)
		}
	}
}

func TestCompilePatternMatchesWholeName(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"app-config", "app-config", true},
		{"app-config", "my-app-config", false},
		{"app-config", "app-config-2", false},
		{"app-.*", "app-x", true},
		{"a|b", "ab", false},
		{"a|b", "b", true},
		{"", "anything", true},
	}
	for _, tt := range tests {
		re, err := CompilePattern(tt.pattern)
		if err != nil {
			t.Fatal(err)
		}
		if got := re == nil || re.MatchString(tt.name); got != tt.want {
			t.Errorf("pattern %q on %q = %v, want %v", tt.pattern, tt.name, got, tt.want)
		}
	}
	if !IsLiteralPattern("faro-test-1") || IsLiteralPattern("prod-.*") || IsLiteralPattern("") {
		t.Error("IsLiteralPattern misclassifies")
	}
}
