package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/faro-dev/faro/internal/daemon"
)

// event is one matched-event line of Faro's JSON output.
type event struct {
	Message         string `json:"@message"`
	Type            string `json:"event_type"`
	GVR             string `json:"gvr"`
	Namespace       string `json:"namespace"`
	Name            string `json:"name"`
	UID             string `json:"uid"`
	ResourceVersion string `json:"resource_version"`
	Rule            string `json:"rule"`
	Initial         bool   `json:"initial"`
}

func (e event) String() string {
	return fmt.Sprintf("%s rule=%s initial=%v rv=%s", e.Message, e.Rule, e.Initial, e.ResourceVersion)
}

// faro is a Faro daemon running in-process against the test cluster, with
// its JSON output collected line by line.
type faro struct {
	t       testing.TB
	cfgPath string
	cancel  context.CancelFunc
	done    chan error

	mu     sync.Mutex
	events []event  // CONFIG lines
	raw    []string // every stdout line (CONFIG and PLUGIN)
	diag   []string
	change chan struct{}
}

// startFaro writes cfg to a file and runs Faro on it until the test ends.
func startFaro(t testing.TB, cfg string, extra ...func(*daemon.Options)) *faro {
	t.Helper()
	path := configFile(t, cfg)
	f := &faro{t: t, cfgPath: path, done: make(chan error, 1), change: make(chan struct{})}
	outR, outW := io.Pipe()
	errR, errW := io.Pipe()
	go f.collect(outR, true)
	go f.collect(errR, false)
	opts := daemon.Options{
		// One worker takes objects in the order their events arrived, so
		// that once a marker object's event is logged, the events before it
		// have been decided (see settle). Concurrency is covered by the
		// engine's unit tests and the throughput benchmark.
		Workers:    1,
		ConfigPath: path,
		RestConfig: cluster.Config,
		LogFormat:  "json",
		LogLevel:   "debug",
		Stdout:     outW,
		Stderr:     errW,
	}
	for _, fn := range extra {
		fn(&opts)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	go func() {
		err := daemon.Run(ctx, opts)
		outW.Close()
		errW.Close()
		f.done <- err
	}()
	t.Cleanup(func() {
		f.stop()
		if t.Failed() {
			f.mu.Lock()
			t.Logf("faro diagnostics:\n%s", strings.Join(f.diag, "\n"))
			t.Logf("faro events:\n%s", fmt.Sprint(f.events))
			f.mu.Unlock()
		}
	})
	f.waitSynced()
	return f
}

func (f *faro) collect(r io.Reader, events bool) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		f.mu.Lock()
		if events {
			f.raw = append(f.raw, line)
			var ev event
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				f.diag = append(f.diag, "UNPARSABLE EVENT LINE: "+line)
			} else if strings.HasPrefix(ev.Message, "CONFIG [") {
				f.events = append(f.events, ev)
			}
		} else {
			f.diag = append(f.diag, line)
		}
		close(f.change)
		f.change = make(chan struct{})
		f.mu.Unlock()
	}
}

// stop cancels the daemon and checks it exited cleanly.
func (f *faro) stop() {
	f.cancel()
	select {
	case err := <-f.done:
		if err != nil {
			f.t.Errorf("faro exited with error: %v", err)
		}
		f.done <- err
	case <-time.After(30 * time.Second):
		f.t.Errorf("faro did not stop within 30s")
	}
}

// running reports whether the daemon is still running.
func (f *faro) running() bool {
	select {
	case err := <-f.done:
		f.done <- err
		return false
	default:
		return true
	}
}

// waitFor polls the collected state until cond holds or timeout passes.
func (f *faro) waitFor(timeout time.Duration, what string, cond func(events []event, diag []string) bool) {
	f.t.Helper()
	deadline := time.After(timeout)
	for {
		f.mu.Lock()
		ok := cond(f.events, f.diag)
		ch := f.change
		f.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-time.After(200 * time.Millisecond):
		case <-deadline:
			f.mu.Lock()
			defer f.mu.Unlock()
			f.t.Fatalf("timed out after %v waiting for %s\nevents:\n%s", timeout, what, joinEvents(f.events))
		}
	}
}

func joinEvents(evs []event) string {
	var b strings.Builder
	for _, e := range evs {
		b.WriteString("  " + e.String() + "\n")
	}
	return b.String()
}

// waitEvent waits until an event with this message (and, if non-empty,
// rule) was logged.
func (f *faro) waitEvent(msg string, timeout time.Duration) {
	f.t.Helper()
	f.waitFor(timeout, fmt.Sprintf("event %q", msg), func(evs []event, _ []string) bool {
		return countMsg(evs, msg) > 0
	})
}

// waitSynced waits until every informer Faro started has synced, so that
// objects created from now on are not part of the initial list: the daemon
// says how many it started ("watching", then one "config reloaded" per
// reload with the ones it added), and each logs "informer synced".
func (f *faro) waitSynced() {
	f.t.Helper()
	f.waitFor(2*time.Minute, "informers synced", func(_ []event, diag []string) bool {
		want, synced, ready := 0, 0, false
		for _, l := range diag {
			var line struct {
				Message   string   `json:"@message"`
				Informers int      `json:"informers"`
				Started   []string `json:"informers_started"`
			}
			if json.Unmarshal([]byte(l), &line) != nil {
				continue
			}
			switch line.Message {
			case "watching":
				want, ready = want+line.Informers, true
			case "config reloaded":
				want += len(line.Started)
			case "informer synced":
				synced++
			}
		}
		return ready && synced >= want
	})
}

// waitDiag waits until a diagnostic line contains every one of parts.
func (f *faro) waitDiag(timeout time.Duration, parts ...string) {
	f.t.Helper()
	f.waitFor(timeout, fmt.Sprintf("diagnostic %q", parts), func(_ []event, diag []string) bool {
		return countLines(diag, parts...) > 0
	})
}

// countDiag counts diagnostic lines containing every one of parts.
func (f *faro) countDiag(parts ...string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return countLines(f.diag, parts...)
}

// countLines counts the lines containing every one of parts.
func countLines(lines []string, parts ...string) int {
	n := 0
	for _, l := range lines {
		if !slices.ContainsFunc(parts, func(p string) bool { return !strings.Contains(l, p) }) {
			n++
		}
	}
	return n
}

// snapshot returns the events logged so far.
func (f *faro) snapshot() []event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]event(nil), f.events...)
}

func countMsg(evs []event, msg string) int {
	n := 0
	for _, e := range evs {
		if e.Message == msg {
			n++
		}
	}
	return n
}

// settle gives Faro time to report anything it would wrongly report, by
// waiting for a marker event that is created after the operations under
// test and must be reported through the same watch: with one worker, events
// of one informer are processed in arrival order.
func (f *faro) settle(marker func(), msg string) {
	f.t.Helper()
	marker()
	f.waitEvent(msg, 30*time.Second)
}
