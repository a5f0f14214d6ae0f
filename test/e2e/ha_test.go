package e2e

import (
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/faro-dev/faro/internal/daemon"
)

// TestLeaderFailover: two replicas with --leader-elect; only the leader
// reports. SIGKILL the leader: what changes during the failover is reported
// once by the new leader, and what the old leader reported is not reported
// again.
func TestLeaderFailover(t *testing.T) {
	ns := createNamespace(t, "failover")
	cfg := configFile(t, fmt.Sprintf("resources:\n  - gvr: v1/configmaps\n    namespace_patterns: [%q]\n", ns))
	for i := range 10 {
		createCM(t, ns, fmt.Sprintf("before-%d", i), nil)
	}
	args := []string{"--leader-elect", "--leader-elect-resource-namespace", ns,
		"--leader-elect-lease-duration", "3s", "--leader-elect-renew-deadline", "2s", "--leader-elect-retry-period", "500ms"}
	replicas := []*faroProcess{startProcess(t, cfg, args...), startProcess(t, cfg, args...)}
	leading := func(p *faroProcess) bool { return strings.Contains(p.stderr.String(), "leading: reporting") }
	var leader, standby *faroProcess
	deadline := time.Now().Add(waitTime)
	for leader == nil {
		if time.Now().After(deadline) {
			t.Fatalf("no leader:\n%s\n%s", replicas[0].stderr.String(), replicas[1].stderr.String())
		}
		for i, p := range replicas {
			if leading(p) {
				leader, standby = p, replicas[1-i]
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	leader.waitFor(t, "the initial events", func(evs []event) bool { return len(evs) == 10 })
	createCM(t, ns, "before-live", nil)
	leader.waitFor(t, "a live event", hasMsg(msg("ADDED", "v1/configmaps", ns+"/before-live")))
	// Let the leader publish its marks and the standby trim by them: only
	// events of the last publishing interval may be reported twice.
	time.Sleep(2 * time.Second)
	if n := len(standby.snapshot()); n != 0 {
		t.Fatalf("the standby reported %d events", n)
	}
	if err := leader.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	for i := range 3 {
		createCM(t, ns, fmt.Sprintf("during-%d", i), nil)
	}
	updateCM(t, ns, "before-0", "1")
	updateCM(t, ns, "before-1", "1")
	deleteCM(t, ns, "before-2")
	deleteCM(t, ns, "before-3")
	standby.waitFor(t, "the failover's changes", func(evs []event) bool { return len(evs) >= 7 })
	t.Logf("failover: first event from the new leader %v after the kill", time.Since(killed).Round(100*time.Millisecond))
	createCM(t, ns, "after", nil)
	standby.waitFor(t, "a marker", hasMsg(msg("ADDED", "v1/configmaps", ns+"/after")))
	var got []string
	for _, e := range standby.snapshot() {
		got = append(got, e.Type+" "+e.Name)
	}
	slices.Sort(got)
	want := []string{"ADDED after", "ADDED during-0", "ADDED during-1", "ADDED during-2",
		"DELETED before-2", "DELETED before-3", "UPDATED before-0", "UPDATED before-1"}
	if !slices.Equal(got, want) {
		t.Errorf("the new leader reported\n  %v\nwant\n  %v", got, want)
	}
}

// TestShards: three replicas, one shard each, on one apiserver: every
// object's events are reported exactly once between them, all by one shard.
func TestShards(t *testing.T) {
	ns := createNamespace(t, "shards")
	cfg := fmt.Sprintf("resources:\n  - gvr: v1/configmaps\n    namespace_patterns: [%q]\n", ns)
	var shards []*faro
	for i := range 3 {
		shards = append(shards, startFaro(t, cfg, func(o *daemon.Options) { o.Shard, o.TotalShards = i, 3 }))
	}
	const objects = 30
	for i := range objects {
		createCM(t, ns, fmt.Sprintf("cm-%d", i), nil)
	}
	for i := range objects {
		updateCM(t, ns, fmt.Sprintf("cm-%d", i), "1")
		deleteCM(t, ns, fmt.Sprintf("cm-%d", i))
	}
	// Markers until every shard has reported one: then each has decided
	// the events before.
	marked := make([]bool, len(shards))
	for i := 0; slices.Contains(marked, false); i++ {
		if i == 100 {
			t.Fatalf("shards that reported no marker of 100: %v", marked)
		}
		name := fmt.Sprintf("marker-%d", i)
		createCM(t, ns, name, nil)
		deadline := time.Now().Add(waitTime)
		for owner := -1; owner < 0; {
			for s, f := range shards {
				if countMsg(f.snapshot(), msg("ADDED", "v1/configmaps", ns+"/"+name)) > 0 {
					owner, marked[s] = s, true
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("no shard reported %s", name)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	per := make([]int, len(shards))
	for i := range objects {
		name := fmt.Sprintf("cm-%d", i)
		var owners []int
		var evs []string
		for s, f := range shards {
			for _, e := range f.snapshot() {
				if e.Name == name {
					evs = append(evs, e.Type)
					if !slices.Contains(owners, s) {
						owners = append(owners, s)
					}
				}
			}
		}
		if len(owners) != 1 || strings.Join(evs, ",") != "ADDED,UPDATED,DELETED" {
			t.Errorf("%s: events %v from shards %v; want ADDED,UPDATED,DELETED from one", name, evs, owners)
			continue
		}
		per[owners[0]]++
	}
	t.Logf("objects per shard: %v", per)
}
