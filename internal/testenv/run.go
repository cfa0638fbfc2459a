package testenv

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"
)

// stopWait is how long a stop waits for Run to return after its context is cancelled.
const stopWait = 30 * time.Second

// Start calls run in a goroutine of its own until stop is called or the test
// ends, whichever comes first; run is typically a projector's Run method.
// stop cancels run's context and waits up to 30s for it to return; an error
// from run, or run not returning in time, fails the test (t.Errorf, so stop
// may be called from a cleanup). stop is safe to call more than once and from
// any goroutine: the later calls return at once. name labels the failures
// ("projector Run: ...").
//
// Start takes a function rather than building a projector itself because
// package sink's own tests import testenv: testenv cannot import the
// projector, which imports sink.
func Start(t testing.TB, name string, run func(context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("%s Run: %v", name, err)
				}
			case <-time.After(stopWait):
				t.Errorf("%s did not stop within %s", name, stopWait)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// Logger returns a debug-level text logger for what the test runs. Its log is
// kept and printed, headed "<name> log:", only when the test fails; with
// $READSIDE_TEST_LOG set it goes to stderr as it is written instead. It is
// safe for concurrent use.
func Logger(t testing.TB, name string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: slog.LevelDebug}
	if os.Getenv("READSIDE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, opts))
	}
	buf := &Buffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s log:\n%s", name, buf.String())
		}
	})
	return slog.New(slog.NewTextHandler(buf, opts))
}

// Buffer is a bytes.Buffer for output written by several goroutines, such as
// a log or a tool's progress lines: Write and String are safe for concurrent
// use. The zero value is an empty buffer.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what has been written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
