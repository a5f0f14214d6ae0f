package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// LeaderElection configures leader election between replicas: only the
// holder of a coordination.k8s.io Lease reports. The others are hot
// standbys: their informers run, and they drop what the leader has
// delivered, as the leader publishes it (its engine's Marks, in an
// annotation of a second Lease, NAME-marks) every RetryPeriod. A Lease, not a
// ConfigMap, so that a rule on ConfigMaps does not see Faro's own writes.
type LeaderElection struct {
	Enabled                                   bool
	Namespace, Name                           string
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
}

// marksAnnotation holds the leader's marks (JSON) on the marks Lease.
const marksAnnotation = "faro.dev/delivered-marks"

// errLostLease ends a leader that lost its lease: it stopped reporting at
// once, and a restart makes it a standby again.
var errLostLease = errors.New("leader election lost: stopped reporting")

// engineLead is what leader election drives in the engine.
type engineLead interface {
	Marks() map[string]uint64
	Trim(marks map[string]uint64)
	Lead()
	Pause()
}

// elector runs leader election for one replica.
type elector struct {
	opts   LeaderElection
	kube   kubernetes.Interface
	eng    engineLead
	log    hclog.Logger
	id     string
	onLead func(bool) // reports leadership changes (the faro_leader gauge)
}

// leaderDefaults fills in the namespace (the pod's, else default), the
// name (faro, with the shard index when sharded) and the client-go
// durations.
func leaderDefaults(le LeaderElection, shard, total int) LeaderElection {
	if le.Namespace == "" {
		le.Namespace = podNamespace()
	}
	if le.Name == "" {
		le.Name = "faro"
	}
	if total > 1 {
		le.Name = fmt.Sprintf("%s-shard-%d", le.Name, shard)
	}
	if le.LeaseDuration <= 0 {
		le.LeaseDuration = 15 * time.Second
	}
	if le.RenewDeadline <= 0 {
		le.RenewDeadline = 10 * time.Second
	}
	if le.RetryPeriod <= 0 {
		le.RetryPeriod = 2 * time.Second
	}
	return le
}

// podNamespace is the namespace Faro runs in: POD_NAMESPACE, the service
// account's namespace file, else default.
func podNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	if b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil {
		if ns := strings.TrimSpace(string(b)); ns != "" {
			return ns
		}
	}
	return "default"
}

func newElector(cfg *rest.Config, le LeaderElection, eng engineLead, log hclog.Logger, onLead func(bool)) (*elector, error) {
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("leader election client: %w", err)
	}
	host, _ := os.Hostname()
	return &elector{opts: le, kube: kube, eng: eng, log: log, id: host + "_" + string(uuid.NewUUID()), onLead: onLead}, nil
}

// run takes part in the election until ctx is done. While standing by, it
// trims the engine by the leader's published marks; once leading, it trims
// one last time, lets the engine deliver and publishes its marks. Losing
// the lease pauses the engine at once and calls lost.
func (el *elector) run(ctx context.Context, lost func()) error {
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, el.opts.Namespace, el.opts.Name,
		el.kube.CoreV1(), el.kube.CoordinationV1(), resourcelock.ResourceLockConfig{Identity: el.id})
	if err != nil {
		return err
	}
	standbyCtx, stopStandby := context.WithCancel(ctx)
	standbyDone := make(chan struct{})
	go func() {
		defer close(standbyDone)
		el.every(standbyCtx, el.trim)
	}()
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   el.opts.LeaseDuration,
		RenewDeadline:   el.opts.RenewDeadline,
		RetryPeriod:     el.opts.RetryPeriod,
		ReleaseOnCancel: true,
		Name:            el.opts.Name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				stopStandby()
				<-standbyDone
				el.trim(ctx)
				el.eng.Lead()
				el.onLead(true)
				el.log.Info("leading: reporting from the last published marks", "lease", el.opts.Namespace+"/"+el.opts.Name, "identity", el.id)
				el.every(ctx, el.publish)
			},
			OnStoppedLeading: func() {
				if ctx.Err() != nil {
					return // shutting down
				}
				el.eng.Pause()
				el.onLead(false)
				el.log.Error("lost the lease; stopped reporting", "lease", el.opts.Namespace+"/"+el.opts.Name)
				lost()
			},
			OnNewLeader: func(id string) {
				if id != el.id {
					el.log.Info("standing by", "leader", id, "lease", el.opts.Namespace+"/"+el.opts.Name)
				}
			},
		},
	})
	if err != nil {
		stopStandby()
		return err
	}
	le.Run(ctx)
	stopStandby()
	<-standbyDone
	return nil
}

// every calls f each RetryPeriod until ctx is done.
func (el *elector) every(ctx context.Context, f func(context.Context)) {
	t := time.NewTicker(el.opts.RetryPeriod)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f(ctx)
		}
	}
}

func (el *elector) marksName() string { return el.opts.Name + "-marks" }

// trim reads the leader's published marks and drops what they cover.
func (el *elector) trim(ctx context.Context) {
	lease, err := el.kube.CoordinationV1().Leases(el.opts.Namespace).Get(ctx, el.marksName(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) || ctx.Err() != nil {
		return
	}
	if err != nil {
		el.log.Warn("cannot read the leader's marks", "lease", el.opts.Namespace+"/"+el.marksName(), "error", err)
		return
	}
	var marks map[string]uint64
	if err := json.Unmarshal([]byte(lease.Annotations[marksAnnotation]), &marks); err != nil {
		el.log.Warn("the leader's marks are not readable", "lease", el.opts.Namespace+"/"+el.marksName(), "error", err)
		return
	}
	el.eng.Trim(marks)
}

// publish writes the engine's marks for the standbys.
func (el *elector) publish(ctx context.Context) {
	data, err := json.Marshal(el.eng.Marks())
	if err != nil {
		return
	}
	leases := el.kube.CoordinationV1().Leases(el.opts.Namespace)
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: el.marksName(), Namespace: el.opts.Namespace,
		Annotations: map[string]string{marksAnnotation: string(data)}}}
	_, err = leases.Update(ctx, lease, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		_, err = leases.Create(ctx, lease, metav1.CreateOptions{})
	}
	if err != nil && ctx.Err() == nil {
		el.log.Warn("cannot publish the delivered marks", "lease", el.opts.Namespace+"/"+el.marksName(), "error", err)
	}
}
