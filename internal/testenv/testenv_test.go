package testenv_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/readside/readside/internal/stream"
	"github.com/readside/readside/internal/testenv"
)

// recorder is a testing.TB that keeps what a helper reports and the cleanups
// it registers, so the tests can look at failures without failing.
type recorder struct {
	testing.TB
	failed   bool
	errs     []string
	logs     []string
	cleanups []func()
}

func (r *recorder) Helper()          {}
func (r *recorder) Failed() bool     { return r.failed }
func (r *recorder) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}
func (r *recorder) Logf(format string, args ...any) {
	r.logs = append(r.logs, fmt.Sprintf(format, args...))
}

// cleanup runs the registered cleanups, last first, as testing does.
func (r *recorder) cleanup() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

func TestStartStopsOnceAndReportsRunError(t *testing.T) {
	r := &recorder{TB: t}
	stopped := make(chan struct{})
	stop := testenv.Start(r, "worker", func(ctx context.Context) error {
		<-ctx.Done()
		close(stopped)
		return errors.New("boom")
	})
	select {
	case <-stopped:
		t.Fatal("run returned before stop")
	case <-time.After(20 * time.Millisecond):
	}
	stop()
	stop()
	r.cleanup()
	if want := []string{"worker Run: boom"}; fmt.Sprint(r.errs) != fmt.Sprint(want) {
		t.Errorf("errors %q, want %q", r.errs, want)
	}
}

func TestLoggerPrintsOnlyOnFailure(t *testing.T) {
	t.Setenv("READSIDE_TEST_LOG", "")
	for _, failed := range []bool{false, true} {
		r := &recorder{TB: t, failed: failed}
		testenv.Logger(r, "projector").Debug("fetched", "id", "7")
		r.cleanup()
		switch {
		case !failed && len(r.logs) != 0:
			t.Errorf("passing test: logged %q, want nothing", r.logs)
		case failed && (len(r.logs) != 1 || !strings.HasPrefix(r.logs[0], "projector log:\n") || !strings.Contains(r.logs[0], "msg=fetched id=7")):
			t.Errorf("failing test: logged %q, want the debug line under \"projector log:\"", r.logs)
		}
	}
}

// CleanRedis removes the namespace's documents and reverse lookups, and
// leaves other namespaces' keys alone.
func TestCleanRedis(t *testing.T) {
	ns, other := testenv.Namespace(t), testenv.Namespace(t)
	c := testenv.Redis(t)
	testenv.CleanRedis(t, c, other)
	ctx := context.Background()
	mine := []string{ns + ":1", ns + ":2", "readside:" + ns + ":owner:1"}
	theirs := []string{other + ":1", "readside:" + other + ":owner:1"}
	for _, k := range append(mine, theirs...) {
		if err := c.Set(ctx, k, "x", time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("namespace", func(t *testing.T) { testenv.CleanRedis(t, c, ns) })
	for _, k := range mine {
		if n := c.Exists(ctx, k).Val(); n != 0 {
			t.Errorf("%s is still there", k)
		}
	}
	for _, k := range theirs {
		if n := c.Exists(ctx, k).Val(); n != 1 {
			t.Errorf("%s of another namespace was deleted", k)
		}
	}
}

// jetStreamWithStreams is an embedded JetStream with the default events and
// dead-letter streams, the first capturing "<ns>.>".
func jetStreamWithStreams(t *testing.T) (*nats.Conn, jetstream.JetStream, stream.Config, string) {
	t.Helper()
	ns := testenv.Namespace(t)
	nc, js := testenv.StartJetStream(t).Connect(t)
	s, err := stream.Ensure(context.Background(), js, stream.Config{}, []string{ns + ".>"})
	if err != nil {
		t.Fatal(err)
	}
	return nc, js, s.Config(), ns
}

func TestConsumerStateAndWaitDrained(t *testing.T) {
	_, js, cfg, ns := jetStreamWithStreams(t)
	ctx := context.Background()
	c, err := js.CreateOrUpdateConsumer(ctx, cfg.Events, jetstream.ConsumerConfig{Durable: "d", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"1", "2"} {
		if _, err := js.Publish(ctx, ns+".changed."+id, nil); err != nil {
			t.Fatal(err)
		}
	}
	batch, err := c.Fetch(1, jetstream.FetchMaxWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var held []jetstream.Msg
	for m := range batch.Messages() {
		held = append(held, m)
	}
	if len(held) != 1 {
		t.Fatalf("fetched %d of 2, want 1", len(held))
	}
	// nats-server counts a consumer's pending a moment after the publish
	// is acknowledged: wait for it, with a deadline.
	var p uint64
	var a int
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if p, a = testenv.ConsumerState(t, js, cfg.Events, "d"); p == 1 && a == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d pending, %d ack pending after fetching 1 of 2: want 1 and 1", p, a)
		}
	}
	go func() {
		time.Sleep(100 * time.Millisecond)
		held[0].Ack()
		b, err := c.Fetch(1, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return // WaitDrained fails the test
		}
		for m := range b.Messages() {
			m.Ack()
		}
	}()
	testenv.WaitDrained(t, js, cfg.Events, "d", 10*time.Second)
}

func TestDeadLetters(t *testing.T) {
	nc, js, cfg, _ := jetStreamWithStreams(t)
	if err := testenv.NoDeadLetters(t, js, cfg.DeadLetter); err != nil {
		t.Errorf("empty dead-letter stream: %v", err)
	}
	if dl := testenv.DeadLetters(t, js, cfg.DeadLetter); dl != nil {
		t.Errorf("empty dead-letter stream: %d entries", len(dl))
	}
	for _, reason := range []string{"not valid JSON", "400"} {
		m := nats.NewMsg(cfg.DLQPrefix + ".shops")
		m.Header.Set(stream.HeaderSubject, "shop.changed.7")
		m.Header.Set(stream.HeaderReason, reason)
		if _, err := js.PublishMsg(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	nc.Flush()
	err := testenv.NoDeadLetters(t, js, cfg.DeadLetter)
	if want := "2 events dead-lettered, want none; the first: shop.changed.7: not valid JSON"; err == nil || err.Error() != want {
		t.Errorf("NoDeadLetters = %v, want %q", err, want)
	}
	dl := testenv.DeadLetters(t, js, cfg.DeadLetter)
	if len(dl) != 2 || dl[0].Headers().Get(stream.HeaderReason) != "not valid JSON" || dl[1].Headers().Get(stream.HeaderReason) != "400" {
		t.Errorf("DeadLetters: %d entries, want the 2 in order", len(dl))
	}
}
