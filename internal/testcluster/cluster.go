// Package testcluster starts a real etcd and kube-apiserver on loopback for
// Faro's e2e tests and `make demo`. It is not part of the watch pipeline: it
// is the cluster the pipeline watches when no other cluster is at hand.
//
// It wraps controller-runtime's envtest, pointed at the binaries that
// `make testenv` builds from pinned Go modules into .cache/testenv.
package testcluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// AssetsEnv names the environment variable that overrides where the
// etcd and kube-apiserver binaries are looked up.
const AssetsEnv = "FARO_TESTENV_ASSETS"

// apiStopTimeout bounds the apiserver's graceful shutdown before it is
// killed.
const apiStopTimeout = 5 * time.Second

// Options configures Start. The zero value is usable.
type Options struct {
	// AssetsDir holds the etcd and kube-apiserver binaries. Default:
	// $FARO_TESTENV_ASSETS, else .cache/testenv at the repository root.
	AssetsDir string
	// Out and Err receive the control plane's own output; nil discards it.
	Out, Err io.Writer
}

// Cluster is a running etcd + kube-apiserver pair.
type Cluster struct {
	// Config is an admin (system:masters) client config.
	Config *rest.Config
	// Kubeconfig is the path of a kubeconfig file holding Config.
	Kubeconfig string

	env      *envtest.Environment
	dir      string
	stopOnce sync.Once
	stopErr  error
	done     chan struct{}
}

// Start launches etcd and kube-apiserver on free loopback ports, waits until
// the apiserver is ready and returns the running cluster. The caller must call
// Stop; a SIGINT or SIGTERM received before that stops the cluster too, and
// processes orphaned by an earlier crashed run are reaped first.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	assets, err := assetsDir(opts.AssetsDir)
	if err != nil {
		return nil, err
	}
	reapOrphans(assets)
	// envtest logs through controller-runtime's logger, which prints a
	// stack trace to say it was never set; its messages are not needed.
	ctrllog.SetLogger(logr.Discard())

	dir, err := os.MkdirTemp("", "faro-testcluster-")
	if err != nil {
		return nil, err
	}
	certDir := filepath.Join(dir, "certs")
	if err := os.Mkdir(certDir, 0o700); err != nil {
		return nil, err
	}

	env := &envtest.Environment{
		BinaryAssetsDirectory:    assets,
		ControlPlaneStartTimeout: 90 * time.Second,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	api := env.ControlPlane.GetAPIServer()
	// A fixed CertDir makes Stop+Start of the apiserver come back on the same
	// port with the same serving certificate, so running clients reconnect.
	api.CertDir = certDir
	api.Out, api.Err = opts.Out, opts.Err
	api.StopTimeout = apiStopTimeout
	c := &Cluster{env: env, dir: dir, done: make(chan struct{})}

	if _, err := env.Start(); err != nil {
		_ = env.Stop()
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("start test cluster from %s: %w", assets, err)
	}
	go c.stopOnSignal()

	user, err := env.AddUser(envtest.User{Name: "faro-admin", Groups: []string{"system:masters"}}, nil)
	if err == nil {
		c.Config = user.Config()
		var kc []byte
		if kc, err = user.KubeConfig(); err == nil {
			c.Kubeconfig = filepath.Join(dir, "kubeconfig")
			err = os.WriteFile(c.Kubeconfig, kc, 0o600)
		}
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("create admin user: %w", err), c.Stop())
	}
	if err := ctx.Err(); err != nil {
		return nil, errors.Join(err, c.Stop())
	}
	return c, nil
}

// StopAPIServer stops the kube-apiserver and leaves etcd running. An
// apiserver with open watches may not finish its graceful shutdown within
// apiStopTimeout; it is then killed, which is an outage all the same, and
// StopAPIServer waits until its port is free so that it can start again.
func (c *Cluster) StopAPIServer() error {
	api := c.env.ControlPlane.GetAPIServer()
	err := api.Stop()
	if err == nil || !strings.Contains(err.Error(), "timeout waiting for process") {
		return err
	}
	addr := net.JoinHostPort(api.SecureServing.Address, api.SecureServing.Port)
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		conn, derr := net.DialTimeout("tcp", addr, time.Second)
		if derr != nil {
			return nil
		}
		conn.Close()
	}
	return fmt.Errorf("kube-apiserver still listening on %s after being killed: %w", addr, err)
}

// StartAPIServer starts a stopped kube-apiserver again, on the same port,
// with the same certificates and against the same etcd.
func (c *Cluster) StartAPIServer() error {
	return c.env.ControlPlane.GetAPIServer().Start()
}

// FreeAddr returns a loopback address whose port is free at the moment, for
// a process under test to listen on.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// SetWatchCache turns the kube-apiserver's watch cache on or off from its
// next start. Without it, watches are served by etcd itself, so a watch
// that resumes from a resource version etcd compacted away gets 410 Gone
// (with it, a restarted apiserver's cache answers 410 for any version older
// than its start, compacted or not).
func (c *Cluster) SetWatchCache(on bool) {
	c.env.ControlPlane.GetAPIServer().Configure().Set("watch-cache", strconv.FormatBool(on))
}

// RestartAPIServer stops and starts the kube-apiserver.
func (c *Cluster) RestartAPIServer() error {
	if err := c.StopAPIServer(); err != nil {
		return err
	}
	return c.StartAPIServer()
}

// SecondAPIServer starts another kube-apiserver on its own port against the
// same etcd and returns an admin config for it and a stop function. While the
// first apiserver is down, writes through this one are writes a watching
// client misses and must catch up on.
func (c *Cluster) SecondAPIServer() (*rest.Config, func() error, error) {
	first := c.env.ControlPlane.GetAPIServer()
	second := &envtest.APIServer{
		Path:         first.Path,
		EtcdURL:      first.EtcdURL,
		StartTimeout: first.StartTimeout,
		StopTimeout:  first.StopTimeout,
		Out:          first.Out,
		Err:          first.Err,
	}
	cp := &envtest.ControlPlane{APIServer: second, Etcd: c.env.ControlPlane.Etcd}
	if err := second.Start(); err != nil {
		_ = second.Stop()
		return nil, nil, fmt.Errorf("start second apiserver: %w", err)
	}
	user, err := cp.AddUser(envtest.User{Name: "faro-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, nil, errors.Join(err, second.Stop())
	}
	return user.Config(), second.Stop, nil
}

// Stop stops kube-apiserver and etcd and removes the cluster's files. It is
// safe to call more than once.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		c.stopErr = c.env.Stop()
		if err := os.RemoveAll(c.dir); err != nil {
			c.stopErr = errors.Join(c.stopErr, err)
		}
		close(c.done)
	})
	return c.stopErr
}

// stopOnSignal stops the cluster when the process is interrupted, then lets
// the signal take its default course. It returns once the cluster stopped.
func (c *Cluster) stopOnSignal() {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	select {
	case sig := <-sigs:
		_ = c.Stop()
		signal.Reset(sig)
		_ = syscall.Kill(os.Getpid(), sig.(syscall.Signal))
	case <-c.done:
	}
}

func assetsDir(dir string) (string, error) {
	if dir == "" {
		dir = os.Getenv(AssetsEnv)
	}
	if dir == "" {
		root, err := repoRoot()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(root, ".cache", "testenv")
	}
	for _, bin := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(dir, bin)); err != nil {
			return "", fmt.Errorf("%s not found in %s: run `make testenv` first (or set %s)", bin, dir, AssetsEnv)
		}
	}
	return filepath.Abs(dir)
}

// repoRoot walks up from the working directory to the folder holding the
// module's go.mod with the .cache folder beside it.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "hack", "testenv")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("cannot find the Faro repository root above the working directory; set %s", AssetsEnv)
		}
		dir = parent
	}
}

// CompactEtcd compacts etcd's history up to its current revision, through
// etcd's JSON gateway on the client URL: a watch that resumes from an older
// resource version afterwards gets 410 Gone and must list again. It returns
// the revision compacted to.
func (c *Cluster) CompactEtcd(ctx context.Context) (int64, error) {
	base := c.env.ControlPlane.Etcd.URL.String()
	var head struct {
		Header struct {
			Revision string `json:"revision"`
		} `json:"header"`
	}
	// Any range answers with the current revision in its header.
	if err := etcdCall(ctx, base+"/v3/kv/range", `{"key":"AA=="}`, &head); err != nil {
		return 0, err
	}
	rev, err := strconv.ParseInt(head.Header.Revision, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("etcd revision %q: %w", head.Header.Revision, err)
	}
	if err := etcdCall(ctx, base+"/v3/kv/compaction", fmt.Sprintf(`{"revision":"%d","physical":true}`, rev), nil); err != nil {
		return 0, err
	}
	return rev, nil
}

// etcdCall posts body to one of etcd's gateway endpoints and decodes the
// answer into out (when not nil).
func etcdCall(ctx context.Context, url, body string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("etcd %s: %w", url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("etcd %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("etcd %s: %s: %s", url, resp.Status, data)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("etcd %s: %w", url, err)
	}
	return nil
}
