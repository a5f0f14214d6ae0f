package engine

import (
	"sync"

	apiwatch "k8s.io/apimachinery/pkg/watch"
)

// filterWatch passes the events of w through f, as apimachinery's
// watch.Filter does, except that Stop also ends a send nobody waits for any
// more: a stopped informer's watch must not leave a goroutine blocked on
// its result channel.
func filterWatch(w apiwatch.Interface, f func(apiwatch.Event) (apiwatch.Event, bool)) apiwatch.Interface {
	fw := &filteredWatch{incoming: w, result: make(chan apiwatch.Event), stop: make(chan struct{})}
	go fw.loop(f)
	return fw
}

type filteredWatch struct {
	incoming apiwatch.Interface
	result   chan apiwatch.Event
	stop     chan struct{}
	once     sync.Once
}

func (fw *filteredWatch) ResultChan() <-chan apiwatch.Event { return fw.result }

func (fw *filteredWatch) Stop() {
	fw.once.Do(func() {
		close(fw.stop)
		fw.incoming.Stop()
	})
}

func (fw *filteredWatch) loop(f func(apiwatch.Event) (apiwatch.Event, bool)) {
	defer close(fw.result)
	for ev := range fw.incoming.ResultChan() {
		ev, keep := f(ev)
		if !keep {
			continue
		}
		select {
		case fw.result <- ev:
		case <-fw.stop:
			return
		}
	}
}
