// Command faro watches Kubernetes resources and reacts to their changes as
// its config file says. main only parses flags and wires package daemon.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"syscall"
	"time"

	"github.com/faro-dev/faro/internal/daemon"
	"github.com/faro-dev/faro/internal/metrics"
)

const usage = `Usage:
  faro [run] --config FILE [flags]   watch the cluster and report matched events
  faro validate --config FILE        check a config file offline; exit 1 on any problem
  faro rbac --config FILE --service-account NAMESPACE/NAME [--leader-elect]
                                     print the least-privilege RBAC for the config
  faro plugin compile PLUGIN.wasm... pre-compile plugins into the compilation cache
  faro plugin run PLUGIN.wasm --object FILE [...]
                                     run a plugin on objects from files, no cluster

Flags:
`

// defaultGCPercent is Faro's GOGC when the environment sets none. Most of
// a watcher's heap is its cache, which lives as long as the process, so
// the Go default (100: the heap may grow to twice what is live between
// collections) mostly buys headroom for garbage; 25 keeps peak memory
// within a quarter of what is live, for a little more GC work (make
// bench-e2e shows the CPU per event and the list time it costs).
const defaultGCPercent = 25

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	setMemoryLimit(cgroupRoot, debug.SetMemoryLimit)
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "rbac" {
		return runRBAC(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "plugin" {
		return runPlugin(args[1:], stdin, stdout, stderr)
	}
	cmd := "run"
	if len(args) > 0 && (args[0] == "run" || args[0] == "validate") {
		cmd, args = args[0], args[1:]
	}
	var opts daemon.Options
	fs := flag.NewFlagSet("faro", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	fs.StringVar(&opts.ConfigPath, "config", "", "config file (YAML)")
	fs.StringVar(&opts.Kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster)")
	fs.StringVar(&opts.Context, "context", "", "kubeconfig context to use")
	fs.StringVar(&opts.LogLevel, "log-level", "", "debug, info, warn or error (overrides log_level)")
	fs.StringVar(&opts.LogFormat, "log-format", "text", "text or json")
	fs.DurationVar(&opts.AutoShutdown, "auto-shutdown", 0, "stop after this long, e.g. 30s (overrides auto_shutdown_sec)")
	fs.IntVar(&opts.Workers, "workers", 0, "events processed at once (default 4, or workers in the config)")
	fs.Func("max-retries", "retries of a failing event before it is dropped (default 5, or max_retries in the config)", func(v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("want a whole number >= 0")
		}
		opts.MaxRetries = &n
		return nil
	})
	fs.StringVar(&opts.StateDir, "state-dir", "", "keep the delivery ledger in this folder across restarts (overrides state_dir)")
	fs.BoolVar(&opts.LeaderElection.Enabled, "leader-elect", false, "report only while holding a Lease; other replicas stand by hot")
	fs.StringVar(&opts.LeaderElection.Namespace, "leader-elect-resource-namespace", "", "namespace of the Lease (default: the pod's, else default)")
	fs.StringVar(&opts.LeaderElection.Name, "leader-elect-resource-name", "faro", "name of the Lease (-shard-N is appended when sharded)")
	fs.DurationVar(&opts.LeaderElection.LeaseDuration, "leader-elect-lease-duration", 15*time.Second, "how long a lease lasts without renewal")
	fs.DurationVar(&opts.LeaderElection.RenewDeadline, "leader-elect-renew-deadline", 10*time.Second, "how long the leader retries renewing before it gives up")
	fs.DurationVar(&opts.LeaderElection.RetryPeriod, "leader-elect-retry-period", 2*time.Second, "how often to try to acquire or renew the lease (and to publish delivered marks)")
	fs.IntVar(&opts.Shard, "shard", 0, "this replica's shard, 0 <= shard < total-shards")
	fs.IntVar(&opts.TotalShards, "total-shards", 1, "how many shards split every resource's objects (by hash of namespace/name)")
	qps := fs.Float64("qps", 50, "API client queries per second")
	fs.IntVar(&opts.Burst, "burst", 100, "API client burst")
	var serving metrics.ServerOptions
	fs.StringVar(&serving.MetricsAddr, "metrics-bind-address", ":8080", `address /metrics is served on ("0" turns it off)`)
	fs.StringVar(&serving.ProbeAddr, "health-probe-bind-address", ":8081", `address /healthz and /readyz are served on ("0" turns it off)`)
	fs.StringVar(&serving.PprofAddr, "pprof-bind-address", "0", `address Go's profiles are served on, under /debug/pprof/, in a faro built with -tags pprof ("0", the default, turns it off)`)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	opts.QPS = float32(*qps)
	if opts.ConfigPath == "" {
		fmt.Fprintln(stderr, "faro: --config is required")
		fs.Usage()
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "faro: unexpected arguments %q\n", fs.Args())
		return 2
	}

	if cmd == "validate" {
		if err := daemon.Validate(context.Background(), opts.ConfigPath); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		fmt.Fprintf(stdout, "%s: ok\n", opts.ConfigPath)
		return 0
	}

	opts.Stdout, opts.Stderr = stdout, stderr
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go exitOnSecondSignal(ctx, cancel, stderr)
	serving.Probes = metrics.NewProbes()
	opts.Probes = serving.Probes
	srv, err := metrics.NewServer(serving)
	if err != nil {
		fmt.Fprintf(stderr, "faro: %v\n", err)
		return 1
	}
	served := make(chan error, 1)
	go func() { served <- srv.Run(ctx) }()
	err = daemon.Run(ctx, opts)
	cancel()
	if serr := <-served; serr != nil && err == nil {
		err = fmt.Errorf("metrics and probes: %w", serr)
	}
	if err != nil {
		fmt.Fprintf(stderr, "faro: %v\n", err)
		return 1
	}
	return 0
}

// exitOnSecondSignal cancels ctx on the first SIGINT or SIGTERM (a graceful
// stop) and exits at once on the second.
func exitOnSecondSignal(ctx context.Context, cancel context.CancelFunc, stderr io.Writer) {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	select {
	case <-sigs:
		cancel()
	case <-ctx.Done():
		return
	}
	<-sigs
	fmt.Fprintln(stderr, "faro: second signal, exiting now")
	os.Exit(1)
}
