// Package daemon assembles Faro's pipeline for cmd/faro: it loads and
// compiles the config, connects to the cluster, runs the engine with the
// plugin handler, and keeps the loggers and the auto-shutdown timer.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/kube-openapi/pkg/validation/spec"

	"github.com/faro-dev/faro/config"
	"github.com/faro-dev/faro/engine"
	"github.com/faro-dev/faro/internal/celpred"
	"github.com/faro-dev/faro/internal/logging"
	"github.com/faro-dev/faro/internal/metrics"
	"github.com/faro-dev/faro/internal/state"
	"github.com/faro-dev/faro/internal/wasmhost"
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
	// Workers overrides the config when positive.
	Workers int
	// MaxRetries overrides the config when not nil; 0 means no retries.
	MaxRetries *int
	// StateDir overrides state_dir: where the delivery ledger is kept
	// across restarts.
	StateDir string
	// LeaderElection makes only the holder of a Lease report.
	LeaderElection LeaderElection
	// Shard and TotalShards split every resource's objects between
	// replicas (TotalShards 0 or 1: no sharding).
	Shard, TotalShards int
	// Probes, when set, gets the daemon's liveness and readiness checks.
	Probes *metrics.Probes

	Stdout, Stderr io.Writer
}

// Run runs Faro until ctx is done or the auto-shutdown timer fires, following
// the config file as it changes (and on SIGHUP). A bad config or an
// unreachable API server at start is an error returned before anything runs;
// a bad config later is refused and the running rules stay.
func Run(ctx context.Context, opts Options) error {
	data, err := os.ReadFile(opts.ConfigPath)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	cfg, err := config.Parse(data, opts.ConfigPath)
	if err != nil {
		return err
	}
	// What the watcher compares later edits with: the bytes loaded here.
	loaded := fingerprint(data, cfg)
	json := opts.LogFormat == "json"
	if opts.LogFormat != "" && opts.LogFormat != "text" && !json {
		return fmt.Errorf("--log-format: unknown format %q (text or json)", opts.LogFormat)
	}
	logs, err := logging.New(logging.Options{Level: firstNonEmpty(opts.LogLevel, cfg.LogLevel), JSON: json, Events: opts.Stdout, Diagnostics: opts.Stderr})
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
	workers := firstPositive(opts.Workers, cfg.Workers, defaultWorkers)
	host, err := wasmhost.New(wasmhost.Options{PoolSize: workers, Logger: logs.Diag.Named("plugin")})
	if err != nil {
		return err
	}
	defer host.Close(context.WithoutCancel(ctx))
	r := &router{events: logs.Events, diag: logs.Diag, json: json}
	// Live while workers and the control loop finish what they begin (a
	// plugin call is bounded by its timeout; two minutes is stuck).
	progress := metrics.NewHeartbeat(2 * time.Minute)
	opts.Probes.AddHealthz("progress", progress)
	configLoaded := opts.Probes.Condition("config", "config not loaded yet")
	engOpts := engine.Options{
		Config:              restCfg,
		Events:              logs.Events,
		Diag:                logs.Diag,
		JSON:                json,
		Handler:             r,
		Workers:             workers,
		MaxRetries:          maxRetries(opts, cfg),
		MaxPendingPerObject: cfg.MaxPendingPerObject,
		KeepLastApplied:     cfg.KeepLastApplied,
		Shard:               engine.Shard{Index: opts.Shard, Total: opts.TotalShards},
		Standby:             opts.LeaderElection.Enabled,
		Progress:            progress,
	}
	if dir := stateDir(opts, cfg); dir != "" {
		store, err := state.Open(state.Options{Dir: dir, Log: logs.Diag.Named("state")})
		if err != nil {
			return err
		}
		// Closed after the engine has stopped: its last marks are committed.
		defer store.Close()
		engOpts.Checkpoint = store
		logs.Diag.Info("delivery ledger kept across restarts", "state_dir", dir)
	}
	eng, err := engine.New(engOpts)
	if err != nil {
		return err
	}
	if err := eng.Discover(); err != nil {
		return err
	}
	d := &daemon{opts: opts, logs: logs, log: logs.Diag, eng: eng, host: host, router: r, initial: cfg, startedAt: time.Now(),
		resolver: celpred.NewSchemaResolver(eng.Discovery())}
	set, err := d.compile(cfg)
	if err != nil {
		return err
	}
	plugins, err := loadPlugins(ctx, host, cfg, nil)
	if err != nil {
		return err
	}
	r.live.Store(&plugins)

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	d.cancel = cancel
	d.armShutdown(cfg)
	defer d.disarmShutdown()

	started := []any{"config", opts.ConfigPath, "rules", len(set.Rules)}
	if lim := debug.SetMemoryLimit(-1); lim != math.MaxInt64 {
		started = append(started, "go_memory_limit", fmt.Sprintf("%dMiB", lim>>20))
	}
	d.log.Info("starting", started...)
	d.current, d.attempted = set, cfg
	res := eng.Apply(ctx, set)
	configLoaded.Set(nil)
	opts.Probes.AddReadyz("informers", metrics.CheckerFunc(eng.Synced))
	metrics.SetLeader(!opts.LeaderElection.Enabled)
	d.log.Info("watching", "informers", len(res.Started), "pending", res.Pending)

	watchDone := d.watchConfig(ctx, loaded)
	electionDone := make(chan struct{})
	if le := opts.LeaderElection; le.Enabled {
		le = leaderDefaults(le, opts.Shard, opts.TotalShards)
		el, err := newElector(restCfg, le, eng, d.log, metrics.SetLeader)
		if err != nil {
			return err
		}
		go func() {
			defer close(electionDone)
			if err := el.run(ctx, func() { cancel(errLostLease) }); err != nil {
				cancel(fmt.Errorf("leader election: %w", err))
			}
		}()
	} else {
		close(electionDone)
	}
	err = eng.Run(ctx)
	<-watchDone
	<-electionDone
	// A lost lease or a failed election ends the run with an error.
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) && !errors.Is(cause, errAutoShutdown) {
		err = cause
	}
	if errors.Is(context.Cause(ctx), errAutoShutdown) {
		d.log.Info("auto-shutdown: time is up")
	}
	st := eng.Stats()
	d.log.Info("stopped", "unprocessed", st.Unprocessed.Load(), "compacted", st.Compacted.Load(), "diagnostics_dropped", logs.Dropped())
	return err
}

var errAutoShutdown = errors.New("auto-shutdown")

// daemon is one running Faro: the engine plus what a reload changes.
type daemon struct {
	opts     Options
	logs     *logging.Logs
	log      hclog.Logger
	eng      *engine.Engine
	host     *wasmhost.Host
	router   *router
	resolver celpred.SchemaResolver
	schemas  *schemas // guarded by mu
	cancel   context.CancelCauseFunc
	// initial is the config at start: settings that need a restart are
	// compared against it.
	initial   *config.Config
	startedAt time.Time

	mu      sync.Mutex // guards the fields below (reloads are serialized)
	current *rules.Set
	// attempted is the config of the last load, applied or refused: the
	// plugin files it names are watched, so that fixing a missing one
	// reloads.
	attempted *config.Config
	celc      *celpred.Compiler
	celLimit  config.CELLimits
	timer     *time.Timer
	shutdown  time.Duration
}

// compile turns a parsed config into a rule set: regexes, selectors and
// CEL, type-checked against the cluster's schemas. Entries that did not
// change since the running set are reused as compiled. The CEL compiler is
// rebuilt only when the cost limits change.
//
// Nothing is kept unless the whole set compiles: a refused reload leaves the
// compiler and its limits as they were.
func (d *daemon) compile(cfg *config.Config) (*rules.Set, error) {
	prev, celc := d.current, d.celc
	if celc == nil || d.celLimit != cfg.CELLimits {
		prev = nil // programs compiled under other limits are not reused
		celc = celpred.NewCompiler(celpred.Options{MaxEstimatedCost: cfg.CELLimits.MaxEstimatedCost, CostLimit: cfg.CELLimits.CostLimit})
	}
	if gen := d.eng.DiscoveryGeneration(); d.schemas == nil || d.schemas.generation != gen {
		d.schemas = &schemas{eng: d.eng, resolver: d.resolver, log: d.log, generation: gen, cache: map[schema.GroupVersionKind]*spec.Schema{}}
	}
	set, err := rules.Compile(cfg, rules.Options{CEL: celc, Schemas: d.schemas, Previous: prev})
	if err != nil {
		return nil, err
	}
	d.celc, d.celLimit = celc, cfg.CELLimits
	return set, nil
}

// armShutdown (re)arms the auto-shutdown timer from the flag or config,
// counting from the daemon's start.
func (d *daemon) armShutdown(cfg *config.Config) {
	after := d.opts.AutoShutdown
	if after <= 0 {
		after = time.Duration(cfg.AutoShutdownSec) * time.Second
	}
	if after == d.shutdown && d.timer != nil {
		return
	}
	d.disarmShutdown()
	d.shutdown = after
	if after > 0 {
		d.timer = time.AfterFunc(time.Until(d.startedAt.Add(after)), func() { d.cancel(errAutoShutdown) })
		d.log.Info("auto-shutdown armed", "after", after)
	}
}

func (d *daemon) disarmShutdown() {
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
}

// defaultWorkers is the worker count when neither flag nor config sets it.
const defaultWorkers = 4

// Validate checks a config file offline: parse, validate and compile every
// rule (CEL with dynamic types, since no schema is at hand) and load every
// plugin (its module compiled and its ABI checked). All problems of a stage
// are reported together.
func Validate(ctx context.Context, path string) error {
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	celc := celpred.NewCompiler(celpred.Options{MaxEstimatedCost: cfg.CELLimits.MaxEstimatedCost, CostLimit: cfg.CELLimits.CostLimit})
	_, rulesErr := rules.Compile(cfg, rules.Options{CEL: celc})
	host, err := wasmhost.New(wasmhost.Options{PoolSize: 1})
	if err != nil {
		return err
	}
	defer host.Close(ctx)
	_, pluginErr := loadPlugins(ctx, host, cfg, nil)
	var all config.Errors
	for _, err := range []error{rulesErr, pluginErr} {
		var errs config.Errors
		if errors.As(err, &errs) {
			all = append(all, errs...)
		} else if err != nil {
			return err
		}
	}
	if len(all) > 0 {
		return all
	}
	return nil
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
// gets nil: CEL falls back to dynamic typing for it. Each kind is fetched
// once however many entries name it, and kept until the engine rediscovers
// the API (which CRD changes trigger), since a CRD's schema may then differ.
type schemas struct {
	eng        *engine.Engine
	resolver   celpred.SchemaResolver
	log        hclog.Logger
	generation uint64
	cache      map[schema.GroupVersionKind]*spec.Schema
}

func (s *schemas) SchemaFor(ref config.ResourceRef) *spec.Schema {
	gvk, ok := s.eng.KindFor(ref)
	if !ok {
		return nil
	}
	if sch, ok := s.cache[gvk]; ok {
		return sch
	}
	sch, err := s.resolver.ResolveSchema(gvk)
	if err != nil {
		s.log.Debug("no schema for CEL type-checking; using dynamic types", "gvk", gvk.String(), "error", err)
		sch = nil
	}
	s.cache[gvk] = sch
	return sch
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

func firstPositive(vs ...int) int {
	for _, v := range vs {
		if v > 0 {
			return v
		}
	}
	return 0
}

// stateDir is the --state-dir flag, else state_dir (relative to the config
// file); "" keeps the ledger in memory only.
func stateDir(opts Options, cfg *config.Config) string {
	if opts.StateDir != "" {
		return opts.StateDir
	}
	return cfg.FilePath(cfg.StateDir)
}

// defaultMaxRetries applies when neither flag nor config sets max_retries.
const defaultMaxRetries = 5

func maxRetries(opts Options, cfg *config.Config) int {
	switch {
	case opts.MaxRetries != nil:
		return *opts.MaxRetries
	case cfg.MaxRetries != nil:
		return *cfg.MaxRetries
	default:
		return defaultMaxRetries
	}
}

func derefInt(p *int) int {
	if p == nil {
		return 0
	}
	return *p
}
