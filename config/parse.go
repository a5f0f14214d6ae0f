package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// FieldError is one problem in a config file, with the path of the value
// (resources[2].name_pattern) and its line.
type FieldError struct {
	File string
	Line int
	Path string
	Msg  string
}

func (e FieldError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(":")
	}
	if e.Line > 0 {
		if e.File == "" {
			b.WriteString("line ")
		}
		fmt.Fprintf(&b, "%d: ", e.Line)
	} else if e.File != "" {
		b.WriteString(" ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in a file; it is returned whole so that a
// user fixes them in one pass.
type Errors []FieldError

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Load reads and parses the file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(data, path)
}

// Parse parses and validates a config and normalizes its entries into
// Rules. path is used in messages only. On failure the error is Errors.
func Parse(data []byte, path string) (*Config, error) {
	cfg := &Config{Path: path, lines: map[string]int{}}
	var errs Errors
	fail := func(line int, p, msg string) {
		errs = append(errs, FieldError{File: path, Line: line, Path: p, Msg: msg})
	}

	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		line, msg := splitYAMLError(err.Error())
		fail(line, "", msg)
		return nil, errs
	}
	if root.Kind == 0 || len(root.Content) == 0 {
		fail(0, "", "config is empty: add namespaces or resources entries")
		return nil, errs
	}
	doc := root.Content[0]
	cfg.walk(doc, reflect.TypeFor[Config](), "", fail)
	if err := doc.Decode(cfg); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			line, msg := splitYAMLError(err.Error())
			fail(line, "", msg)
			return nil, errs
		}
		// The decoder skipped only the values it reported; validate the rest
		// so that every problem is reported in one pass.
		for _, e := range te.Errors {
			line, msg := splitYAMLError(e)
			fail(line, cfg.pathAt(line), msg)
		}
	}
	cfg.validate(fail)
	if len(errs) > 0 {
		sort.SliceStable(errs, func(i, j int) bool { return errs[i].Line < errs[j].Line })
		return nil, errs
	}
	return cfg, nil
}

// Errorf makes a FieldError for the value at path, with its line; later
// stages (rules, plugins) report their problems through it so that every
// message looks the same.
func (c *Config) Errorf(path, format string, args ...any) FieldError {
	return FieldError{File: c.Path, Line: c.lineOf(path), Path: path, Msg: fmt.Sprintf(format, args...)}
}

// lineOf returns the line of path, or of its closest recorded parent.
func (c *Config) lineOf(path string) int {
	for p := path; p != ""; {
		if l, ok := c.lines[p]; ok {
			return l
		}
		i := strings.LastIndexAny(p, ".[")
		if i <= 0 {
			break
		}
		p = p[:i]
	}
	return 0
}

// pathAt returns the deepest recorded path that starts on line.
func (c *Config) pathAt(line int) string {
	best := ""
	for p, l := range c.lines {
		if l == line && len(p) > len(best) {
			best = p
		}
	}
	return best
}

var yamlLineRe = regexp.MustCompile(`^(?:yaml: )?(?:unmarshal errors:\n\s*)?line (\d+): `)

// splitYAMLError splits a yaml error into its line and message. A syntax
// error without a line is on the first line: the yaml package counts lines
// from 0 internally and leaves out a line 0.
func splitYAMLError(s string) (int, string) {
	m := yamlLineRe.FindStringSubmatch(s)
	if m == nil {
		return 1, strings.TrimPrefix(s, "yaml: ")
	}
	line, _ := strconv.Atoi(m[1])
	return line, s[len(m[0]):]
}

// walk records the line of every key and reports keys that t does not have.
func (c *Config) walk(n *yaml.Node, t reflect.Type, path string, fail func(int, string, string)) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	switch {
	case t == reflect.TypeFor[StringList]() || t.Kind() == reflect.Interface:
		return
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := join(path, k.Value)
			c.lines[p] = k.Line
			ft, ok := fields[k.Value]
			if !ok {
				fail(k.Line, p, fmt.Sprintf("unknown key %q%s", k.Value, suggest(k.Value, fields)))
				continue
			}
			c.walk(v, ft, p, fail)
		}
	case t.Kind() == reflect.Map && n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := fmt.Sprintf("%s[%q]", path, k.Value)
			c.lines[p] = k.Line
			c.walk(v, t.Elem(), p, fail)
		}
	case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		for i, item := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			c.lines[p] = item.Line
			c.walk(item, t.Elem(), p, fail)
		}
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// yamlFields maps the yaml keys of struct t (inline fields flattened) to
// their types.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for f := range t.Fields() {
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		switch {
		case name == "-" || !f.IsExported():
		case opts == "inline":
			for k, v := range yamlFields(f.Type) {
				out[k] = v
			}
		case name != "":
			out[name] = f.Type
		}
	}
	return out
}

// suggest offers the closest known key for a misspelled one.
func suggest(key string, fields map[string]reflect.Type) string {
	best, bestD := "", 3
	for k := range fields {
		if d := editDistance(key, k); d < bestD || (d == bestD && k < best) {
			best, bestD = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
