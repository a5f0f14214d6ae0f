// Package daemon assembles Faro's pipeline for cmd/faro: it loads and
// compiles the config, connects to the cluster, runs the engine with the
// plugin handler, and keeps the loggers and the auto-shutdown timer.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/go-hclog"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/kube-openapi/pkg/validation/spec"

	"github.com/faro-dev/faro/config"
	"github.com/faro-dev/faro/engine"
	"github.com/faro-dev/faro/internal/celpred"
	"github.com/faro-dev/faro/internal/logging"
	"github.com/faro-dev/faro/rules"
)

// Options are the daemon's settings; flags override the config file.
type Options struct {
	ConfigPath string
	// Kubeconfig and Context select the cluster as kubectl does (KUBECONFIG
	// and in-cluster config are honoured). RestConfig, when set, wins.
	Kubeconfig, Context string
	RestConfig          *rest.Config
	QPS                 float32
	Burst               int

	// LogLevel overrides log_level; LogFormat is text or json.
	LogLevel, LogFormat string
	// AutoShutdown overrides auto_shutdown_sec when positive.
	AutoShutdown time.Duration
	// Workers and MaxRetries override the config when positive.
	Workers, MaxRetries int

	Stdout, Stderr io.Writer
}

// Run runs Faro until ctx is done or the auto-shutdown timer fires. A bad
// config or an unreachable API server is an error returned before anything
// runs.
func Run(ctx context.Context, opts Options) error {
	cfg, err := config.Load(opts.ConfigPath)
	if err != nil {
		return err
	}
	json := opts.LogFormat == "json"
	if opts.LogFormat != "" && opts.LogFormat != "text" && !json {
		return fmt.Errorf("--log-format: unknown format %q (text or json)", opts.LogFormat)
	}
	level := cfg.LogLevel
	if opts.LogLevel != "" {
		level = opts.LogLevel
	}
	logs, err := logging.New(logging.Options{Level: level, JSON: json, Events: opts.Stdout, Diagnostics: opts.Stderr})
	if err != nil {
		return err
	}
	logCtx, stopLogs := context.WithCancel(context.WithoutCancel(ctx))
	logsDone := make(chan struct{})
	go func() {
		defer close(logsDone)
		logs.Run(logCtx)
	}()
	defer func() {
		stopLogs()
		<-logsDone
	}()

	restCfg, err := restConfig(opts)
	if err != nil {
		return err
	}
	eng, err := engine.New(engine.Options{
		Config:     restCfg,
		Events:     logs.Events,
		Diag:       logs.Diag,
		JSON:       json,
		Workers:    firstPositive(opts.Workers, cfg.Workers),
		MaxRetries: firstPositive(opts.MaxRetries, derefInt(cfg.MaxRetries)),
	})
	if err != nil {
		return err
	}
	if err := eng.Discover(); err != nil {
		return err
	}
	celc, err := celpred.NewCompiler(celpred.Options{MaxEstimatedCost: cfg.CELLimits.MaxEstimatedCost, CostLimit: cfg.CELLimits.CostLimit})
	if err != nil {
		return err
	}
	set, err := rules.Compile(cfg, rules.Options{CEL: celc, Schemas: &schemas{eng: eng, resolver: celpred.NewSchemaResolver(eng.Discovery()), log: logs.Diag}})
	if err != nil {
		return err
	}

	shutdown := opts.AutoShutdown
	if shutdown <= 0 {
		shutdown = time.Duration(cfg.AutoShutdownSec) * time.Second
	}
	if shutdown > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, shutdown, errAutoShutdown)
		defer cancel()
		logs.Diag.Info("auto-shutdown armed", "after", shutdown)
	}
	logs.Diag.Info("starting", "config", opts.ConfigPath, "rules", len(set.Rules))
	eng.Apply(ctx, set)
	err = eng.Run(ctx)
	if errors.Is(context.Cause(ctx), errAutoShutdown) {
		logs.Diag.Info("auto-shutdown: time is up")
	}
	logs.Diag.Info("stopped", "events", eng.Stats().Events.Load(), "matched", eng.Stats().Matched.Load(),
		"dropped", eng.Stats().Dropped.Load(), "diagnostics_dropped", logs.Dropped())
	return err
}

var errAutoShutdown = errors.New("auto-shutdown")

// Validate checks a config file offline: parse, validate and compile every
// rule (CEL with dynamic types, since no schema is at hand).
func Validate(path string) error {
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	celc, err := celpred.NewCompiler(celpred.Options{MaxEstimatedCost: cfg.CELLimits.MaxEstimatedCost, CostLimit: cfg.CELLimits.CostLimit})
	if err != nil {
		return err
	}
	_, err = rules.Compile(cfg, rules.Options{CEL: celc})
	return err
}

func restConfig(opts Options) (*rest.Config, error) {
	cfg := opts.RestConfig
	if cfg == nil {
		rules := clientcmd.NewDefaultClientConfigLoadingRules()
		rules.ExplicitPath = opts.Kubeconfig
		var err error
		cfg, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules,
			&clientcmd.ConfigOverrides{CurrentContext: opts.Context}).ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("kubernetes client config: %w", err)
		}
	}
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = opts.QPS, opts.Burst
	if cfg.QPS <= 0 {
		cfg.QPS = 50
	}
	if cfg.Burst <= 0 {
		cfg.Burst = 100
	}
	cfg.UserAgent = "faro"
	return cfg, nil
}

// schemas finds OpenAPI schemas for CEL type-checking through the engine's
// discovery snapshot. A resource that is not served (yet) or has no schema
// gets nil: CEL falls back to dynamic typing for it.
type schemas struct {
	eng      *engine.Engine
	resolver celpred.SchemaResolver
	log      hclog.Logger
}

func (s *schemas) SchemaFor(ref config.ResourceRef) *spec.Schema {
	gvk, ok := s.eng.KindFor(ref)
	if !ok {
		return nil
	}
	sch, err := s.resolver.ResolveSchema(gvk)
	if err != nil {
		s.log.Debug("no schema for CEL type-checking; using dynamic types", "gvk", gvk.String(), "error", err)
		return nil
	}
	return sch
}

func firstPositive(vs ...int) int {
	for _, v := range vs {
		if v > 0 {
			return v
		}
	}
	return 0
}

func derefInt(p *int) int {
	if p == nil {
		return 0
	}
	return *p
}
