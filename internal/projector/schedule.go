package projector

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// schedule holds the events a Projector has pulled and not yet settled, by
// entity id, and decides which ids a worker takes next: the queue step of
// the delivery path (queue → attempt → settle).
//
// An id is in one of three places: pending (events waiting, possibly behind
// a retry timer), in flight (a worker has it), or nowhere. Events for an id
// coalesce: however many arrive before a worker takes it, one fetch answers
// them all. An event for an id in flight leaves it dirty: it is made ready
// again when the flight ends, unless that fetch answered the event too.
//
// The schedule never talks to JetStream: its methods return the messages
// whose fate is decided (to ack, or to nak on shutdown) and the caller
// settles them. It works on any message type M with a stream sequence (see
// seq), so it is tested without servers. All methods are safe for
// concurrent use.
type schedule[M any] struct {
	batch   int                                 // ids per take
	maxHeld int                                 // messages held before room reports none
	seq     func(M) uint64                      // the message's stream sequence; 0: unknown
	backoff func(tries int) time.Duration       // delay before the tries-th retry
	after   func(time.Duration, func()) stopper // runs f after d (time.AfterFunc)
	onHeld  func(n int)                         // told the held count when it changes; may be nil

	mu       sync.Mutex
	answered map[string]uint64    // id → the head when its last written fetch started (see maxAnswered)
	ready    []string             // ids with pending messages, not in flight and not waiting to retry
	pending  map[string]*entry[M] // id → messages not yet being processed
	inflight map[string][]M       // ids a worker is processing, with their messages
	held     int                  // messages in pending and in flight
	timers   map[string]stopper   // ids waiting to retry
	wake     chan struct{}        // a worker may find ready ids
	roomC    chan struct{}        // the puller may find room
	stopped  bool
}

// stopper is a timer that can be stopped (*time.Timer).
type stopper interface{ Stop() bool }

// entry is the messages held for one id, how often it failed in a row, and
// how often in a row it was fetched again to recheck a race.
type entry[M any] struct {
	msgs     []M
	tries    int
	rechecks int
}

// job is one id a worker took, with the messages it answers.
type job[M any] struct {
	id       string
	msgs     []M
	tries    int
	rechecks int
}

func newSchedule[M any](batch, maxHeld int, seq func(M) uint64, backoff func(int) time.Duration) *schedule[M] {
	return &schedule[M]{
		batch: batch, maxHeld: maxHeld, seq: seq, backoff: backoff,
		after:    func(d time.Duration, f func()) stopper { return time.AfterFunc(d, f) },
		answered: map[string]uint64{},
		pending:  map[string]*entry[M]{},
		inflight: map[string][]M{},
		timers:   map[string]stopper{},
		wake:     make(chan struct{}, 1),
		roomC:    make(chan struct{}, 1),
	}
}

// seqOf is a JetStream message's stream sequence, 0 when its metadata cannot
// be read.
func seqOf(m jetstream.Msg) uint64 {
	md, err := m.Metadata()
	if err != nil {
		return 0
	}
	return md.Sequence.Stream
}

// add queues m, an event for id. It returns true, without holding m, when
// m was stored before the id's last written fetch started and nothing for
// the id is waiting or in flight: that fetch answers it, so the caller acks
// it at once (coalesced).
func (s *schedule[M]) add(id string, m M) (answered bool) {
	seq := s.seq(m)
	s.mu.Lock()
	defer s.mu.Unlock()
	_, busy := s.inflight[id]
	if _, waiting := s.pending[id]; !waiting && !busy && seq != 0 && seq <= s.answered[id] {
		// A burst of events for one id, pulled after its fetch.
		return true
	}
	s.held++
	s.heldChanged()
	if e, ok := s.pending[id]; ok {
		e.msgs = append(e.msgs, m)
		return false
	}
	s.pending[id] = &entry[M]{msgs: []M{m}}
	if !busy { // in flight: dirty, queued again when the flight ends (unless its fetch answers it)
		s.ready = append(s.ready, id)
		signal(s.wake)
	}
	return false
}

// room is how many more messages may be held.
func (s *schedule[M]) room() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxHeld - s.held
}

// roomFreed is signalled when messages stop being held.
func (s *schedule[M]) roomFreed() <-chan struct{} { return s.roomC }

// take waits for ready ids and marks up to batch of them in flight. It
// returns nil when ctx ends.
func (s *schedule[M]) take(ctx context.Context) []job[M] {
	for {
		// Shut down, nothing more is taken, however much is ready: what is
		// held goes back to JetStream rather than holding up the exit.
		if ctx.Err() != nil {
			return nil
		}
		if jobs := s.tryTake(); jobs != nil {
			return jobs
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
		}
	}
}

// tryTake is take without waiting: nil when no id is ready.
func (s *schedule[M]) tryTake() []job[M] {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.ready) == 0 {
		return nil
	}
	n := min(len(s.ready), s.batch)
	jobs := make([]job[M], n)
	for i, id := range s.ready[:n] {
		e := s.pending[id]
		delete(s.pending, id)
		s.inflight[id] = e.msgs
		jobs[i] = job[M]{id: id, msgs: e.msgs, tries: e.tries, rechecks: e.rechecks}
	}
	s.ready = append(s.ready[:0], s.ready[n:]...)
	if len(s.ready) > 0 {
		signal(s.wake)
	}
	return jobs
}

// absorb moves into the flight of id the events that arrived for it while
// it was fetched but were stored before the fetch started (their sequence is
// at most answers): the fetch already answers them, so they are settled with
// it. It returns msgs with them added.
func (s *schedule[M]) absorb(id string, answers uint64, msgs []M) []M {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.pending[id]; e != nil {
		keep := e.msgs[:0]
		for _, m := range e.msgs {
			if q := s.seq(m); q != 0 && q <= answers {
				msgs = append(msgs, m)
			} else {
				keep = append(keep, m)
			}
		}
		if e.msgs = keep; len(keep) == 0 {
			delete(s.pending, id)
		}
	}
	s.inflight[id] = msgs // kept alive with the rest
	return msgs
}

// finish ends a flight whose messages the caller settles (acked, or
// dead-lettered): they are no longer held and the id's failures are
// forgotten. answers, when not 0, is the head the id's written fetch started
// at: later events stored before it are answered too, and finish returns the
// ones already waiting, for the caller to ack (coalesced). Other events that
// arrived meanwhile (the id is dirty) make it ready again.
func (s *schedule[M]) finish(j job[M], answers uint64) (answered []M) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.inflight, j.id)
	e := s.pending[j.id]
	s.held -= len(j.msgs)
	if answers != 0 {
		if len(s.answered) >= maxAnswered {
			clear(s.answered)
		}
		s.answered[j.id] = max(s.answered[j.id], answers)
		if e != nil {
			keep := e.msgs[:0]
			for _, m := range e.msgs {
				if q := s.seq(m); q != 0 && q <= answers {
					answered = append(answered, m)
					s.held--
				} else {
					keep = append(keep, m)
				}
			}
			if e.msgs = keep; len(keep) == 0 {
				delete(s.pending, j.id)
				e = nil
			}
		}
	}
	s.heldChanged()
	signal(s.roomC)
	if e != nil && !s.stopped {
		s.ready = append(s.ready, j.id)
		signal(s.wake)
	}
	return answered
}

// retry ends a flight that failed for a dependency: its messages wait, still
// held, with any that arrived meanwhile, and the id is made ready again
// after a backoff, or after atLeast when that is longer (a source's
// Retry-After hint).
func (s *schedule[M]) retry(j job[M], atLeast time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.putBackLocked(j)
	e.tries = j.tries + 1
	if s.stopped {
		return
	}
	id := j.id
	s.timers[id] = s.after(max(s.backoff(e.tries), atLeast), func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.timers, id)
		_, busy := s.inflight[id]
		if _, ok := s.pending[id]; ok && !busy && !s.stopped {
			s.ready = append(s.ready, id)
			signal(s.wake)
		}
	})
}

// putBackLocked ends j's flight without settling its messages: they wait
// again, ahead of any that arrived meanwhile, in the id's pending entry,
// which it returns.
func (s *schedule[M]) putBackLocked(j job[M]) *entry[M] {
	delete(s.inflight, j.id)
	e := s.pending[j.id]
	if e == nil {
		e = &entry[M]{}
		s.pending[j.id] = e
	}
	e.msgs = append(j.msgs, e.msgs...)
	return e
}

// recheck ends a flight without settling its messages and makes the id
// ready again at once, to be fetched again.
func (s *schedule[M]) recheck(j job[M]) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.putBackLocked(j)
	e.rechecks = j.rechecks + 1
	if !s.stopped {
		s.ready = append(s.ready, j.id)
		signal(s.wake)
	}
}

// heldMsgs is every message held, waiting or in flight (to keep alive).
func (s *schedule[M]) heldMsgs() []M {
	s.mu.Lock()
	defer s.mu.Unlock()
	var msgs []M
	for _, e := range s.pending { // waiting, possibly behind a retry
		msgs = append(msgs, e.msgs...)
	}
	for _, in := range s.inflight { // a batch may wait on a slow store
		msgs = append(msgs, in...)
	}
	return msgs
}

// stop ends the schedule on shutdown, once no worker runs: retry timers stop,
// nothing is made ready again, and it returns every message still waiting,
// for the caller to nak.
func (s *schedule[M]) stop() []M {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	for _, t := range s.timers {
		t.Stop()
	}
	var msgs []M
	for _, e := range s.pending {
		msgs = append(msgs, e.msgs...)
	}
	s.pending = map[string]*entry[M]{}
	s.ready = nil
	s.held = 0
	return msgs
}

func (s *schedule[M]) heldChanged() {
	if s.onHeld != nil {
		s.onHeld(s.held)
	}
}
