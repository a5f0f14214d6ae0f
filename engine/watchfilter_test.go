package engine

import (
	"runtime"
	"strings"
	"testing"
	"time"

	apiwatch "k8s.io/apimachinery/pkg/watch"
)

// TestFilterWatchStopEndsPendingSend: a filtered watch stopped while it
// holds an event nobody reads ends its goroutine (apimachinery's
// watch.Filter stays blocked on the send forever).
func TestFilterWatchStopEndsPendingSend(t *testing.T) {
	in := apiwatch.NewFakeWithChanSize(1, false)
	fw := filterWatch(in, func(ev apiwatch.Event) (apiwatch.Event, bool) { return ev, true })
	in.Add(obj("a", "u1", "1")) // taken by the loop, which then waits for a reader
	fw.Stop()
	deadline := time.Now().Add(10 * time.Second)
	for loopRunning() {
		if time.Now().After(deadline) {
			t.Fatal("the filter's goroutine still runs after Stop")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func loopRunning() bool {
	buf := make([]byte, 1<<20)
	return strings.Contains(string(buf[:runtime.Stack(buf, true)]), "(*filteredWatch).loop")
}
