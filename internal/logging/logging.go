// Package logging builds Faro's two output streams on go-hclog: the event
// stream (matched events and plugin records, the product, never dropped) and
// the diagnostic stream (everything else, written asynchronously and dropped
// with a count when it overflows, so that logging never blocks the pipeline).
package logging

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
)

// Options configures New.
type Options struct {
	// Level is debug, info, warn or error (default info). It applies to the
	// diagnostic stream; matched events are always written.
	Level string
	// JSON selects one JSON object per line instead of text.
	JSON bool
	// Events receives matched events; Diagnostics everything else.
	Events, Diagnostics io.Writer
	// Buffer is how many diagnostic lines may wait to be written before
	// new ones are dropped (default 4096).
	Buffer int
}

// Logs is the pair of loggers plus the asynchronous writer behind the
// diagnostic one.
type Logs struct {
	// Events writes matched events synchronously: a slow terminal slows the
	// workers (and so backs up the queue), never the informers.
	Events hclog.Logger
	// Diag is the diagnostic logger.
	Diag hclog.Logger

	async *asyncWriter
	level hclog.Level
}

// ParseLevel maps a config or flag value to an hclog level.
func ParseLevel(s string) (hclog.Level, error) {
	if s == "" {
		return hclog.Info, nil
	}
	l := hclog.LevelFromString(strings.ToLower(s))
	if l == hclog.NoLevel {
		return l, fmt.Errorf("unknown log level %q (debug, info, warn or error)", s)
	}
	return l, nil
}

// New builds the loggers. Run must be started for diagnostics to appear.
func New(opts Options) (*Logs, error) {
	level, err := ParseLevel(opts.Level)
	if err != nil {
		return nil, err
	}
	if opts.Buffer <= 0 {
		opts.Buffer = 4096
	}
	a := &asyncWriter{out: opts.Diagnostics, lines: make(chan []byte, opts.Buffer), json: opts.JSON}
	l := &Logs{async: a, level: level}
	l.Events = hclog.New(&hclog.LoggerOptions{
		Name:       "faro",
		Level:      hclog.Info,
		Output:     opts.Events,
		JSONFormat: opts.JSON,
		Mutex:      &sync.Mutex{},
	})
	l.Diag = hclog.New(&hclog.LoggerOptions{
		Name:       "faro",
		Level:      level,
		Output:     a,
		JSONFormat: opts.JSON,
		// hclog locks around Write; the async writer never blocks in it.
		Mutex: &sync.Mutex{},
	})
	return l, nil
}

// SetLevel changes the diagnostic level at runtime (config reload).
func (l *Logs) SetLevel(level hclog.Level) { l.Diag.SetLevel(level) }

// Dropped returns how many diagnostic lines were dropped on overflow.
func (l *Logs) Dropped() uint64 { return l.async.dropped.Load() }

// Run writes queued diagnostic lines until ctx is done, then flushes what is
// queued and returns.
func (l *Logs) Run(ctx context.Context) {
	l.async.run(ctx)
}

// asyncWriter queues whole lines on a bounded channel. When the channel is
// full the line is dropped and counted; the writer goroutine then leaves one
// warning with the count in the stream for each burst of drops.
type asyncWriter struct {
	out      io.Writer
	lines    chan []byte
	json     bool
	dropped  atomic.Uint64
	reported uint64 // drops already warned about; owned by run
}

func (a *asyncWriter) Write(p []byte) (int, error) {
	line := append([]byte(nil), p...)
	select {
	case a.lines <- line:
	default:
		a.dropped.Add(1)
	}
	return len(p), nil
}

func (a *asyncWriter) run(ctx context.Context) {
	for {
		select {
		case line := <-a.lines:
			a.write(line)
		case <-ctx.Done():
			for {
				select {
				case line := <-a.lines:
					a.write(line)
				default:
					a.warnDropped()
					return
				}
			}
		}
	}
}

func (a *asyncWriter) write(line []byte) {
	_, _ = a.out.Write(line)
	if len(a.lines) == 0 {
		a.warnDropped()
	}
}

func (a *asyncWriter) warnDropped() {
	if d := a.dropped.Load(); d > a.reported {
		msg := fmt.Sprintf("diagnostic log overflow: %d lines dropped (%d in all)", d-a.reported, d)
		if a.json {
			fmt.Fprintf(a.out, "{\"@level\":\"warn\",\"@message\":%q,\"@module\":\"faro\"}\n", msg)
		} else {
			fmt.Fprintf(a.out, "[WARN]  faro: %s\n", msg)
		}
		a.reported = d
	}
}
