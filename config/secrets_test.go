package config

import (
	"strings"
	"testing"
)

func TestSecretsKey(t *testing.T) {
	tests := []struct {
		name, yaml string
		reveal     []bool // per rule, when valid
		wantErr    string
	}{
		{"default redacts", "resources:\n  - gvr: v1/secrets\n", []bool{false}, ""},
		{"both formats", `namespaces:
  - name_pattern: vault
    resources:
      v1/secrets: {secrets: reveal}
resources:
  - gvr: secrets
    secrets: redact
  - gvr: v1/secrets
    secrets: reveal
`, []bool{true, false, true}, ""},
		{"unknown value", "resources:\n  - gvr: v1/secrets\n    secrets: show\n", nil,
			`faro.yaml:3: resources[0].secrets: unknown value "show" (redact, the default, or reveal)`},
		{"not a secret", "namespaces:\n  - resources:\n      v1/configmaps:\n        secrets: reveal\n", nil,
			`faro.yaml:4: namespaces[0].resources["v1/configmaps"].secrets: applies only to v1/secrets, not v1/configmaps`},
		{"a secret of another group", "resources:\n  - gvr: example.com/v1/secrets\n    secrets: reveal\n", nil,
			`faro.yaml:3: resources[0].secrets: applies only to v1/secrets, not example.com/v1/secrets`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tt.yaml), "faro.yaml")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for i, r := range cfg.Rules {
				if r.RevealSecrets != tt.reveal[i] {
					t.Errorf("%s: RevealSecrets = %v, want %v", r.ID, r.RevealSecrets, tt.reveal[i])
				}
			}
		})
	}
}
