// Package config is the first stage of Faro's pipeline: it parses the YAML
// file a user writes (namespace-centric and resource-centric entries, plugins
// and daemon settings), validates it offline, reporting every problem at once
// with its path and line, and normalizes both formats into one list of Rules
// that package rules compiles.
//
// Nothing in this package talks to a cluster: resource names are checked for
// syntax here and resolved against discovery by package engine.
package config

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"time"

	"go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Config is the parsed file, as the user wrote it.
type Config struct {
	LogLevel        string `yaml:"log_level"`
	AutoShutdownSec int    `yaml:"auto_shutdown_sec"`
	Workers         int    `yaml:"workers"`
	MaxRetries      *int   `yaml:"max_retries"`
	// MaxPendingPerObject bounds one object's backlog of undelivered
	// events; 0 means the default (1000).
	MaxPendingPerObject int `yaml:"max_pending_per_object"`
	// StateDir, when set, is where the delivery ledger is kept across
	// restarts.
	StateDir string `yaml:"state_dir"`
	// KeepLastApplied keeps the kubectl last-applied-configuration
	// annotation in the objects rules and plugins see; by default it is
	// stripped (it repeats the object, and for a Secret its data).
	KeepLastApplied bool             `yaml:"keep_last_applied"`
	CELLimits       CELLimits        `yaml:"cel_limits"`
	Namespaces      []NamespaceEntry `yaml:"namespaces"`
	Resources       []ResourceEntry  `yaml:"resources"`
	Plugins         []Plugin         `yaml:"plugins"`

	// Rules is the normalized form of Namespaces and Resources, in file
	// order, filled by Parse.
	Rules []Rule `yaml:"-"`
	// Path is the file the config was loaded from ("" when parsed from bytes).
	Path string `yaml:"-"`

	lines map[string]int // config path -> line, for error messages
}

// CELLimits bounds the cost of CEL expressions; zero means the default.
type CELLimits struct {
	MaxEstimatedCost uint64 `yaml:"max_estimated_cost"`
	CostLimit        uint64 `yaml:"cost_limit"`
}

// Filter is what both formats say about one resource.
type Filter struct {
	NamePattern   string     `yaml:"name_pattern"`
	LabelSelector string     `yaml:"label_selector"`
	EventTypes    []string   `yaml:"event_types"`
	InitialEvents *bool      `yaml:"initial_events"`
	CEL           StringList `yaml:"cel"`
	Variables     []Variable `yaml:"variables"`
	Plugins       []string   `yaml:"plugins"`
	// Secrets is SecretsRedact ("" too) or SecretsReveal; see Rule.RevealSecrets.
	Secrets string `yaml:"secrets"`
}

// NamespaceEntry is the namespace-centric format: the namespaces matching
// NamePattern, and per resource what to watch in them.
type NamespaceEntry struct {
	NamePattern string            `yaml:"name_pattern"`
	Resources   map[string]Filter `yaml:"resources"`
}

// ResourceEntry is the resource-centric format.
type ResourceEntry struct {
	GVR               string   `yaml:"gvr"`
	Scope             string   `yaml:"scope"`
	NamespacePatterns []string `yaml:"namespace_patterns"`
	Filter            `yaml:",inline"`
}

// Variable is a named CEL expression usable as variables.NAME.
type Variable struct {
	Name       string `yaml:"name"`
	Expression string `yaml:"expression"`
}

// Plugin declares a WebAssembly handler plugin.
type Plugin struct {
	Name         string   `yaml:"name"`
	Path         string   `yaml:"path"`
	Config       any      `yaml:"config"`
	Timeout      Duration `yaml:"timeout"`
	MemoryLimit  string   `yaml:"memory_limit"`
	AllowedHosts []string `yaml:"allowed_hosts"`
	MaxCalls     int      `yaml:"max_calls"`
	// RetryOn names the failure kinds (error, panic, trap, timeout,
	// out-of-memory, output, canceled) after which an event is retried;
	// nil means [error]. The daemon checks the names.
	RetryOn []string `yaml:"retry_on"`
}

// FilePath resolves a path written in the config: relative paths are
// relative to the config file's folder.
func (c *Config) FilePath(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(filepath.Dir(c.Path), p)
}

// ConfigJSON returns the plugin's config as JSON, the form plugins read.
func (p Plugin) ConfigJSON() (json.RawMessage, error) {
	if p.Config == nil {
		return json.RawMessage("{}"), nil
	}
	return json.Marshal(p.Config)
}

// MemoryLimitBytes returns memory_limit in bytes, 0 when unset.
func (p Plugin) MemoryLimitBytes() (uint64, error) {
	if p.MemoryLimit == "" {
		return 0, nil
	}
	q, err := resource.ParseQuantity(p.MemoryLimit)
	if err != nil {
		return 0, err
	}
	if q.Sign() <= 0 {
		return 0, fmt.Errorf("must be positive")
	}
	return uint64(q.Value()), nil
}

// StringList accepts a single string or a list of strings.
type StringList []string

// UnmarshalYAML implements yaml.Unmarshaler.
func (s *StringList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		var one string
		if err := n.Decode(&one); err != nil {
			return err
		}
		*s = StringList{one}
		return nil
	}
	var many []string
	if err := n.Decode(&many); err != nil {
		return err
	}
	*s = many
	return nil
}

// Duration is a time.Duration written as "250ms", "1s".
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: invalid duration %q (use e.g. 250ms, 1s)", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// EventType is one of the three kinds of event Faro reports.
type EventType string

// The event types, as they appear in config and output.
const (
	Added   EventType = "ADDED"
	Updated EventType = "UPDATED"
	Deleted EventType = "DELETED"
)

// AllEventTypes is the default of event_types.
var AllEventTypes = []EventType{Added, Updated, Deleted}

// Scope values of resource entries.
const (
	ScopeNamespaced = "Namespaced"
	ScopeCluster    = "Cluster"
)

// Rule is one normalized config entry: one resource and what to report of it.
type Rule struct {
	// ID is the entry's config path, e.g. `resources[1]` or
	// `namespaces[0].resources["v1/configmaps"]`; log lines name it.
	ID       string
	Resource ResourceRef
	// Scope is "", ScopeNamespaced or ScopeCluster as configured; discovery
	// has the last word.
	Scope string
	// NamespacePatterns: an object in any matching namespace qualifies; empty
	// matches every namespace.
	NamespacePatterns []string
	NamePattern       string
	LabelSelector     string
	EventTypes        []EventType
	InitialEvents     bool
	CEL               []string
	Variables         []Variable
	Plugins           []string
	// RevealSecrets hands this entry's CEL and plugins a Secret's data and
	// stringData as they are; by default their values are replaced with a
	// marker (see rules.Redact).
	RevealSecrets bool
}

// Values of an entry's secrets key.
const (
	SecretsRedact = "redact"
	SecretsReveal = "reveal"
)

// CompilePattern compiles a name pattern so that it must match the whole
// name, as if written ^(?:pattern)$. An empty pattern matches everything and
// compiles to nil.
func CompilePattern(p string) (*regexp.Regexp, error) {
	if p == "" {
		return nil, nil
	}
	// Compile the pattern alone first so that errors quote what the user wrote.
	if _, err := regexp.Compile(p); err != nil {
		return nil, err
	}
	return regexp.Compile(`^(?:` + p + `)$`)
}

// IsLiteralPattern reports whether p can only match itself, so that a watch
// can be narrowed to that one namespace.
func IsLiteralPattern(p string) bool {
	return p != "" && regexp.QuoteMeta(p) == p
}
