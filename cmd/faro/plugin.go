package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"

	"github.com/faro-dev/faro/config"
	"github.com/faro-dev/faro/engine"
	"github.com/faro-dev/faro/internal/daemon"
	"github.com/faro-dev/faro/internal/object"
	"github.com/faro-dev/faro/internal/wasmhost"
	"github.com/faro-dev/faro/rules"
)

const pluginUsage = `Usage:
  faro plugin compile [--cache-dir DIR] PLUGIN.wasm...
      compile plugins into the compilation cache (to bake into an image)
  faro plugin run PLUGIN.wasm [--plugin-config JSON|@FILE] --object FILE|- [--old-object FILE]
                  [--event-type ADDED|UPDATED|DELETED] [--gvr GVR] [--keep-last-applied]
      run a plugin on objects from files, without a cluster, as the daemon
      would: each emitted record is a JSON line on stdout; the plugin's logs
      and a summary go to stderr; exit 1 unless every event succeeded.
      FILE is one object (JSON or YAML) or a List (one event per item).
      As the daemon does, metadata.managedFields and (unless
      --keep-last-applied) the kubectl last-applied-configuration
      annotation are dropped before the plugin sees an object.
      The resource is guessed from apiVersion and kind (the kind's English
      plural: v1/configmaps, networking.k8s.io/v1/ingresses); --gvr
      overrides the guess, e.g. for a custom resource's irregular plural.
`

// runPlugin is `faro plugin`.
func runPlugin(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "compile":
			return runPluginCompile(args[1:], stdout, stderr)
		case "run":
			return runPluginRun(args[1:], stdin, stdout, stderr)
		}
	}
	fmt.Fprint(stderr, pluginUsage)
	return 2
}

// parseInterspersed parses fs's flags from args, which may have positional
// arguments before, between or after them, and returns those.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, pluginUsage+"\nFlags:\n")
		fs.PrintDefaults()
	}
	return fs
}

func parseCode(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 2
}

func runPluginCompile(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("faro plugin compile", stderr)
	dir := fs.String("cache-dir", "", "compilation cache (default $XDG_CACHE_HOME/faro/wasm or ~/.cache/faro/wasm, where faro run looks)")
	files, err := parseInterspersed(fs, args)
	if err != nil {
		return parseCode(err)
	}
	if len(files) == 0 {
		fmt.Fprintln(stderr, "faro plugin compile: no PLUGIN.wasm given")
		return 2
	}
	ctx := context.Background()
	host, err := wasmhost.New(wasmhost.Options{CacheDir: *dir, PoolSize: 1, Logger: cliLogger(stderr, "faro")})
	if err != nil {
		fmt.Fprintf(stderr, "faro plugin compile: %v\n", err)
		return 1
	}
	defer host.Close(ctx)
	if host.CacheDir() == "" {
		fmt.Fprintln(stderr, "faro plugin compile: no usable compilation cache directory (see the warning above); set --cache-dir")
		return 1
	}
	code := 0
	for _, f := range files {
		if err := host.Compile(ctx, f); err != nil {
			fmt.Fprintf(stderr, "faro plugin compile: %v\n", err)
			code = 1
			continue
		}
		fmt.Fprintf(stdout, "%s: compiled into %s\n", f, host.CacheDir())
	}
	return code
}

func runPluginRun(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("faro plugin run", stderr)
	pluginConfig := fs.String("plugin-config", "", "the plugin's config: JSON, or @FILE (JSON or YAML)")
	objectFile := fs.String("object", "", "the object: a JSON or YAML file, or - for stdin; a List gives one event per item")
	oldFile := fs.String("old-object", "", "the previous object, for an UPDATED event")
	eventType := fs.String("event-type", "", "ADDED, UPDATED or DELETED (default UPDATED with --old-object, else ADDED)")
	gvr := fs.String("gvr", "", "the resource, e.g. v1/configmaps or apps/v1/deployments; overrides the guess from apiVersion and kind\n(the English plural of the kind), which is wrong for custom resources with an irregular plural")
	keepLastApplied := fs.Bool("keep-last-applied", false, "keep the "+object.LastApplied+" annotation,\nas keep_last_applied: true in the daemon's config does (by default it is dropped, as is metadata.managedFields)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return parseCode(err)
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "faro plugin run: "+format+"\n", a...)
		return 2
	}
	switch {
	case len(pos) != 1:
		return usage("want exactly one PLUGIN.wasm, got %d", len(pos))
	case *objectFile == "":
		return usage("--object is required")
	}
	typ := config.EventType(strings.ToUpper(*eventType))
	switch {
	case typ == "" && *oldFile != "":
		typ = config.Updated
	case typ == "":
		typ = config.Added
	case typ != config.Added && typ != config.Updated && typ != config.Deleted:
		return usage("--event-type %q: want ADDED, UPDATED or DELETED", *eventType)
	}

	plugin := config.Plugin{Name: strings.TrimSuffix(filepath.Base(pos[0]), ".wasm"), Path: pos[0]}
	if plugin.Path, err = filepath.Abs(pos[0]); err != nil {
		return usage("%v", err)
	}
	if *pluginConfig != "" {
		if plugin.Config, err = readValue(*pluginConfig, stdin); err != nil {
			return usage("--plugin-config: %v", err)
		}
	}
	// The objects as the daemon's informers decode them.
	decode := object.Options{KeepLastApplied: *keepLastApplied}
	objects, err := readObjects(*objectFile, stdin, decode)
	if err != nil {
		return usage("--object: %v", err)
	}
	var old *unstructured.Unstructured
	if *oldFile != "" {
		olds, err := readObjects(*oldFile, stdin, decode)
		switch {
		case err != nil:
			return usage("--old-object: %v", err)
		case len(olds) != 1 || len(objects) != 1:
			return usage("--old-object needs one object, and one --object")
		}
		old = olds[0]
	}

	ctx := context.Background()
	p, err := daemon.OpenPlugin(ctx, plugin, cliLogger(stderr, "plugin"))
	if err != nil {
		fmt.Fprintf(stderr, "faro plugin run: %v\n", err)
		return 1
	}
	defer p.Close(ctx)
	failed := 0
	for i, obj := range objects {
		m := &engine.Matched{Type: typ, Object: obj, OldObject: old, Rule: &rules.Rule{Rule: config.Rule{ID: "faro plugin run"}}}
		if m.GVR, err = eventGVR(*gvr, obj); err != nil {
			return usage("%v", err)
		}
		start := time.Now()
		records, err := p.Handle(ctx, m)
		took := time.Since(start)
		for _, rec := range records {
			fmt.Fprintf(stdout, "%s\n", rec)
		}
		outcome := fmt.Sprintf("ok, %d records", len(records))
		var perr *wasmhost.Error
		if errors.As(err, &perr) {
			failed++
			// The message may itself start with the kind (the SDK reports
			// a recovered panic as "panic: VALUE"): say the kind once.
			outcome = perr.Kind.String() + ": " + strings.TrimPrefix(perr.Err.Error(), perr.Kind.String()+": ")
			if p.Retried(err) {
				outcome += " (the daemon would retry it)"
			}
		} else if err != nil {
			failed++
			outcome = err.Error()
		}
		fmt.Fprintf(stderr, "event %d/%d %s %s %s: %s in %s\n", i+1, len(objects), typ, m.GVRString(), m.Key(), outcome, took.Round(10*time.Microsecond))
	}
	fmt.Fprintf(stderr, "%d events: %d ok, %d failed\n", len(objects), len(objects)-failed, failed)
	if failed > 0 {
		return 1
	}
	return 0
}

// cliLogger logs to w as the daemon's diagnostics do.
func cliLogger(w io.Writer, name string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: name, Output: w, Level: hclog.Debug})
}

// readFile reads a file, or stdin for "-".
func readFile(name string, stdin io.Reader) ([]byte, error) {
	if name == "-" {
		return io.ReadAll(stdin)
	}
	return os.ReadFile(name)
}

// readValue parses an inline JSON value, or @FILE holding JSON or YAML.
func readValue(arg string, stdin io.Reader) (any, error) {
	data := []byte(arg)
	if name, ok := strings.CutPrefix(arg, "@"); ok {
		var err error
		if data, err = readFile(name, stdin); err != nil {
			return nil, err
		}
	}
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	return v, nil
}

// readObjects reads one object, or the items of a List, from a JSON or
// YAML file, and decodes them as the daemon's informers decode what the
// API server sends (internal/object, with opts): without managedFields and,
// unless kept, the last-applied-configuration annotation, numbers as the
// API machinery decodes them, and a List's items given its item type when
// they lack one.
func readObjects(name string, stdin io.Reader, opts object.Options) ([]*unstructured.Unstructured, error) {
	data, err := readFile(name, stdin)
	if err != nil {
		return nil, err
	}
	raw, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var obj map[string]any
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if obj == nil {
		return nil, fmt.Errorf("%s: not an object", name)
	}
	var objects []*object.Object
	if (&unstructured.Unstructured{Object: obj}).IsList() {
		list, err := object.DecodeList(bytes.NewReader(raw), opts)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if len(list.Items) == 0 {
			return nil, fmt.Errorf("%s: the List has no items", name)
		}
		objects = list.Items
	} else {
		o, err := object.Decode(raw, opts)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		objects = []*object.Object{o}
	}
	out := make([]*unstructured.Unstructured, len(objects))
	for i, o := range objects {
		if out[i], err = o.Unstructured(); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	return out, nil
}

// eventGVR is the resource given with --gvr, else a guess from the
// object's apiVersion and kind: apimachinery's English plural of the
// lower-case kind (ingresses, networkpolicies), and the kinds whose
// resource that gets wrong.
func eventGVR(flagValue string, obj *unstructured.Unstructured) (schema.GroupVersionResource, error) {
	if flagValue != "" {
		ref, err := config.ParseResourceRef(flagValue)
		if err != nil || ref.Version == "" {
			return schema.GroupVersionResource{}, fmt.Errorf("--gvr %q: want VERSION/RESOURCE or GROUP/VERSION/RESOURCE", flagValue)
		}
		return schema.GroupVersionResource{Group: ref.Group, Version: ref.Version, Resource: ref.Resource}, nil
	}
	gv, err := schema.ParseGroupVersion(obj.GetAPIVersion())
	if err != nil || gv.Version == "" || obj.GetKind() == "" {
		return schema.GroupVersionResource{}, fmt.Errorf("object %s has no apiVersion and kind: give --gvr", obj.GetName())
	}
	if res, ok := irregularResources[obj.GetKind()]; ok {
		return gv.WithResource(res), nil
	}
	plural, _ := meta.UnsafeGuessKindToResource(gv.WithKind(obj.GetKind()))
	return plural, nil
}

// irregularResources are the built-in kinds whose resource is not the
// guessed plural.
var irregularResources = map[string]string{"Endpoints": "endpoints"}
