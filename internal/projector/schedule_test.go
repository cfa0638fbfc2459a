package projector

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"
)

// ev is a test event: its own stream sequence.
type ev uint64

// fakeTimer is a retry timer the test fires by hand.
type fakeTimer struct {
	d       time.Duration
	f       func()
	stopped bool
}

func (t *fakeTimer) Stop() bool { t.stopped = true; return true }

// schedRun is one schedule under test with the jobs taken and timers set.
type schedRun struct {
	s      *schedule[ev]
	jobs   map[string]job[ev]
	timers []*fakeTimer
	held   int // the last count told to onHeld
}

type step func(t *testing.T, r *schedRun)

// add queues event seq for id; answered: the schedule says to ack it at once.
func add(id string, seq ev, answered bool) step {
	return func(t *testing.T, r *schedRun) {
		if got := r.s.add(id, seq); got != answered {
			t.Errorf("add(%s, %d) = %v, want %v", id, seq, got, answered)
		}
	}
}

// take takes a batch; want is its ids and their events, as "id:seq,seq".
func take(want ...string) step {
	return func(t *testing.T, r *schedRun) {
		var got []string
		for _, j := range r.s.tryTake() {
			r.jobs[j.id] = j
			got = append(got, jobString(j.id, j.msgs))
		}
		if !slices.Equal(got, want) {
			t.Errorf("take = %v, want %v", got, want)
		}
	}
}

// finish ends id's flight as settled, written with answers (0: not written);
// want is the waiting events the schedule says to ack with it.
func finish(id string, answers uint64, want ...ev) step {
	return func(t *testing.T, r *schedRun) {
		if got := r.s.finish(r.jobs[id], answers); !slices.Equal(got, want) {
			t.Errorf("finish(%s) acks %v, want %v", id, got, want)
		}
	}
}

// absorb adds to id's flight the waiting events its fetch at answers covers.
func absorb(id string, answers uint64, want string) step {
	return func(t *testing.T, r *schedRun) {
		j := r.jobs[id]
		j.msgs = r.s.absorb(id, answers, j.msgs)
		r.jobs[id] = j
		if got := jobString(id, j.msgs); got != want {
			t.Errorf("absorb = %s, want %s", got, want)
		}
	}
}

func retry(id string) step {
	return func(t *testing.T, r *schedRun) { r.s.retry(r.jobs[id], 0) }
}

// retryHinted is retry with a source's Retry-After hint.
func retryHinted(id string, hint time.Duration) step {
	return func(t *testing.T, r *schedRun) { r.s.retry(r.jobs[id], hint) }
}

func recheck(id string) step {
	return func(t *testing.T, r *schedRun) { r.s.recheck(r.jobs[id]) }
}

// fire runs the n-th retry timer set, after checking its delay.
func fire(n int, delay time.Duration) step {
	return func(t *testing.T, r *schedRun) {
		if n >= len(r.timers) {
			t.Fatalf("timer %d not set (%d timers)", n, len(r.timers))
		}
		if tm := r.timers[n]; tm.d != delay {
			t.Errorf("timer %d delay %v, want %v", n, tm.d, delay)
		}
		r.timers[n].f()
	}
}

// timers checks how many retry timers were set.
func timers(n int) step {
	return func(t *testing.T, r *schedRun) {
		if len(r.timers) != n {
			t.Errorf("%d timers set, want %d", len(r.timers), n)
		}
	}
}

// held checks the held count, as told to onHeld and as room sees it.
func held(n int) step {
	return func(t *testing.T, r *schedRun) {
		if r.held != n || r.s.room() != r.s.maxHeld-n {
			t.Errorf("held %d (room %d), want %d (room %d)", r.held, r.s.room(), n, r.s.maxHeld-n)
		}
	}
}

// stop shuts the schedule down, once no worker runs; want is the events to nak.
func stop(want ...ev) step {
	return func(t *testing.T, r *schedRun) {
		got := r.s.stop()
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("stop naks %v, want %v", got, want)
		}
		for i, tm := range r.timers {
			if !tm.stopped {
				t.Errorf("timer %d not stopped", i)
			}
		}
	}
}

func jobString(id string, msgs []ev) string {
	s := id + ":"
	for i, m := range msgs {
		if i > 0 {
			s += ","
		}
		s += strconv.FormatUint(uint64(m), 10)
	}
	return s
}

func TestSchedule(t *testing.T) {
	for _, tc := range []struct {
		name  string
		batch int
		steps []step
	}{
		{"duplicates coalesce into one ready id", 10, []step{
			add("a", 1, false), add("b", 2, false), add("a", 3, false), held(3),
			take("a:1,3", "b:2"), take(),
		}},
		{"take honours the batch size", 2, []step{
			add("a", 1, false), add("b", 2, false), add("c", 3, false),
			take("a:1", "b:2"), take("c:3"),
		}},
		{"success releases the held messages", 10, []step{
			add("a", 1, false), take("a:1"), finish("a", 5), held(0), take(),
		}},
		{"an event during flight makes the id ready again", 10, []step{
			add("a", 1, false), take("a:1"), add("a", 7, false), take(),
			finish("a", 5), held(1), take("a:7"),
		}},
		{"a dirty id is ready again after a dead-letter", 10, []step{
			add("a", 1, false), take("a:1"), add("a", 2, false),
			finish("a", 0), take("a:2"),
		}},
		{"events the written fetch answers are acked with it", 10, []step{
			add("a", 1, false), take("a:1"), add("a", 4, false), add("a", 9, false),
			finish("a", 5, 4), held(1), take("a:9"),
		}},
		{"an event covered by the head is acked on arrival", 10, []step{
			add("a", 1, false), take("a:1"), finish("a", 5),
			add("a", 3, true), add("a", 5, true), held(0), take(),
			add("a", 6, false), take("a:6"),
		}},
		{"no ack on arrival while the id is waiting or in flight", 10, []step{
			add("a", 1, false), take("a:1"), finish("a", 5),
			add("a", 0, false), add("a", 2, false), held(2), take("a:0,2"),
		}},
		{"an unwritten flight answers nothing", 10, []step{
			add("a", 1, false), take("a:1"), finish("a", 0),
			add("a", 1, false), take("a:1"),
		}},
		{"absorb takes the waiting events the fetch answers", 10, []step{
			add("a", 1, false), take("a:1"), add("a", 3, false), add("a", 8, false),
			absorb("a", 5, "a:1,3"), finish("a", 5), held(1), take("a:8"),
		}},
		{"a transient failure is retried after a backoff", 10, []step{
			add("a", 1, false), take("a:1"), retry("a"), held(1), take(), timers(1),
			fire(0, 1*time.Second), take("a:1"), retry("a"), fire(1, 2*time.Second), take("a:1"),
			finish("a", 5), take(), held(0),
		}},
		{"a retry waits at least a source's Retry-After hint", 10, []step{
			add("a", 1, false), take("a:1"), retryHinted("a", 5*time.Second), take(),
			fire(0, 5*time.Second), take("a:1"), retryHinted("a", time.Second), fire(1, 2*time.Second), take("a:1"),
		}},
		{"a retry keeps the events that came meanwhile, oldest first", 10, []step{
			add("a", 1, false), take("a:1"), add("a", 2, false), retry("a"), take(),
			fire(0, time.Second), take("a:1,2"),
		}},
		{"a retry timer firing while the id is in flight does nothing", 10, []step{
			add("a", 1, false), take("a:1"), retry("a"), fire(0, time.Second), take("a:1"),
			fire(0, time.Second), take(), finish("a", 5), take(),
		}},
		{"a recheck is ready again at once, without backoff", 10, []step{
			add("a", 1, false), take("a:1"), recheck("a"), timers(0), held(1), take("a:1"),
			finish("a", 5), held(0),
		}},
		{"room counts every held message", 10, []step{
			add("a", 1, false), add("a", 2, false), add("b", 3, false), held(3),
			take("a:1,2", "b:3"), held(3), add("b", 4, false), held(4),
			finish("a", 0), held(2), retry("b"), held(2),
		}},
		{"stop returns every waiting message to nak", 10, []step{
			add("a", 1, false), add("b", 2, false), take("a:1", "b:2"), retry("a"),
			add("c", 3, false), add("b", 4, false),
			stop(1, 3, 4), take(),
		}},
		{"after stop a retry sets no timer", 10, []step{
			add("a", 1, false), take("a:1"), stop(), retry("a"), timers(0), take(),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &schedRun{jobs: map[string]job[ev]{}}
			r.s = newSchedule(tc.batch, 100, func(m ev) uint64 { return uint64(m) },
				func(n int) time.Duration { return time.Duration(n) * time.Second })
			r.s.after = func(d time.Duration, f func()) stopper {
				tm := &fakeTimer{d: d, f: f}
				r.timers = append(r.timers, tm)
				return tm
			}
			r.s.onHeld = func(n int) { r.held = n }
			for _, st := range tc.steps {
				st(t, r)
			}
		})
	}
}

// Once the projector shuts down, take hands out nothing more, however many
// ids are ready: they are Nak'ed back to JetStream instead of holding up the
// exit while the workers drain the whole queue.
func TestTakeAfterShutdownTakesNothing(t *testing.T) {
	s := newSchedule(2, 100, func(m ev) uint64 { return uint64(m) },
		func(n int) time.Duration { return time.Second })
	for i := range 10 {
		s.add(strconv.Itoa(i), ev(i+1))
	}
	ctx, cancel := context.WithCancel(context.Background())
	if jobs := s.take(ctx); len(jobs) != 2 {
		t.Fatalf("before shutdown: take = %d jobs, want 2", len(jobs))
	}
	cancel()
	if jobs := s.take(ctx); jobs != nil {
		t.Errorf("after shutdown: take = %d jobs, want none (8 ids still ready)", len(jobs))
	}
}
