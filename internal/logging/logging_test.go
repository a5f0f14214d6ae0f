package logging

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
)

// blockingWriter blocks every Write until released, like a stalled terminal.
type blockingWriter struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	release chan struct{}
}

func (b *blockingWriter) Write(p []byte) (int, error) {
	<-b.release
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *blockingWriter) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestDiagnosticsDropOnOverflowWithOneWarning: with the output stalled,
// diagnostic logging never blocks; lines past the buffer are dropped and
// counted, and one warning with the count follows once output resumes.
func TestDiagnosticsDropOnOverflowWithOneWarning(t *testing.T) {
	for _, json := range []bool{false, true} {
		diag := &blockingWriter{release: make(chan struct{})}
		var events bytes.Buffer
		l, err := New(Options{Level: "info", JSON: json, Events: &events, Diagnostics: diag, Buffer: 10})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { l.Run(ctx); close(done) }()

		for i := range 100 { // returns at once even though nothing is written
			l.Diag.Info("diagnostic", "i", i)
		}
		l.Events.Info("CONFIG [ADDED] v1/configmaps ns/a") // the event stream is synchronous
		if !strings.Contains(events.String(), "CONFIG [ADDED] v1/configmaps ns/a") {
			t.Errorf("matched event not written: %q", events.String())
		}
		// At most the buffer plus the line being written got through.
		if d := l.Dropped(); d < 100-11 {
			t.Errorf("dropped = %d, want at least 89", d)
		}
		close(diag.release)
		cancel()
		<-done
		out := diag.String()
		if n := strings.Count(out, "diagnostic log overflow"); n != 1 {
			t.Errorf("json=%v: %d overflow warnings, want 1:\n%s", json, n, out)
		}
		if json && !strings.Contains(out, `"@level":"warn","@message":"diagnostic log overflow`) {
			t.Errorf("warning is not JSON in JSON mode:\n%s", out)
		}
	}
}

func TestParseLevel(t *testing.T) {
	for _, s := range []string{"debug", "info", "warn", "error", "INFO", ""} {
		if _, err := ParseLevel(s); err != nil {
			t.Errorf("ParseLevel(%q): %v", s, err)
		}
	}
	if _, err := ParseLevel("loud"); err == nil {
		t.Error("ParseLevel(loud) accepted")
	}
}
