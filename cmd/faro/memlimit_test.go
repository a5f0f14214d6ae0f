package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestMemoryLimit: the Go soft limit is 90% of the cgroup's memory limit
// (v2, else v1), none when the cgroup has no limit, and GOMEMLIMIT wins.
func TestMemoryLimit(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string // under the cgroup root
		env   string            // GOMEMLIMIT
		want  int64             // the limit set; -1 when none
	}{
		{"cgroup v2", map[string]string{"memory.max": "268435456\n"}, "", 241591910},
		{"cgroup v2 without a limit", map[string]string{"memory.max": "max\n"}, "", -1},
		{"cgroup v1", map[string]string{"memory/memory.limit_in_bytes": "104857600\n"}, "", 94371840},
		{"cgroup v1 without a limit", map[string]string{"memory/memory.limit_in_bytes": "9223372036854771712\n"}, "", -1},
		{"v2 before v1", map[string]string{"memory.max": "1000", "memory/memory.limit_in_bytes": "5000"}, "", 900},
		{"no cgroup files", nil, "", -1},
		{"unreadable value", map[string]string{"memory.max": "lots"}, "", -1},
		{"GOMEMLIMIT set", map[string]string{"memory.max": "268435456"}, "100MiB", -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for name, content := range tt.files {
				path := filepath.Join(root, name)
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			t.Setenv("GOMEMLIMIT", tt.env)
			got := int64(-1)
			setMemoryLimit(root, func(n int64) int64 { got = n; return 0 })
			if got != tt.want {
				t.Errorf("limit set %d, want %d", got, tt.want)
			}
		})
	}
}
