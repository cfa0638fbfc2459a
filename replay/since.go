package replay

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/internal/sink/redisstore"
	"github.com/readside/readside/projections"
)

// SinceForms describes the accepted forms of a window's start, for errors and help.
const SinceForms = `a duration back from now (90s, 45m, 2h, 1h30m, 3d) or an RFC 3339 time (2026-11-21T10:00:00Z, 2026-11-21T11:00:00+01:00)`

var days = regexp.MustCompile(`^(\d+)d(.*)$`)

// ParseSince reads the start of a window: a duration back from now (Go
// syntax, plus whole days: "3d", "1d12h") or an RFC 3339 time. A time in
// the future is an error.
func ParseSince(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		if t.After(now) {
			return time.Time{}, fmt.Errorf("replay: %s is in the future: no event is that recent", s)
		}
		return t, nil
	}
	var d time.Duration
	var err error
	if m := days.FindStringSubmatch(s); m != nil {
		n, _ := strconv.Atoi(m[1])
		d = time.Duration(n) * 24 * time.Hour
		if m[2] != "" {
			var rest time.Duration
			rest, err = time.ParseDuration(m[2])
			d += rest
		}
	} else {
		d, err = time.ParseDuration(s)
	}
	if err != nil || s == "" {
		return time.Time{}, fmt.Errorf("replay: %q is not a time: use %s", s, SinceForms)
	}
	if d <= 0 {
		return time.Time{}, fmt.Errorf("replay: %q is not a time: a duration back from now must be positive (use %s)", s, SinceForms)
	}
	return now.Add(-d), nil
}

// maxBatch bounds the messages handled between two moves of a position.
const maxBatch = 512

// readStream calls fn with the messages of stream on subjects, in stream
// order, in batches, from the sequence after afterSeq (when set) or else
// from the time from, up to endSeq: through an ordered consumer, which
// needs no durable state and leaves nothing behind. fn may be slow; the
// consumer keeps its place.
func (e *Env) readStream(ctx context.Context, stream string, subjects []string, afterSeq uint64, from time.Time, endSeq uint64, fn func([]jetstream.Msg) error) error {
	start := afterSeq + 1
	if afterSeq == 0 && !from.IsZero() {
		// Not DeliverByStartTime: with several filter subjects, nats-server
		// (v2.15.2) starts such a consumer too late and skips messages
		// (nats-io/nats-server#6076 again). The time is resolved to a
		// sequence without a filter instead.
		seq, ok, err := e.seqAt(ctx, stream, from)
		if err != nil || !ok {
			return err
		}
		start = seq
	}
	if endSeq == 0 || start > endSeq {
		return nil // nothing in the window
	}
	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects: disjoint(subjects), InactiveThreshold: time.Minute,
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: start,
	}
	cons, err := e.JetStream.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return fmt.Errorf("replay: reading %s: %w", stream, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(maxBatch))
	if err != nil {
		return fmt.Errorf("replay: reading %s: %w", stream, err)
	}
	defer it.Stop()
	var last uint64
	batch := make([]jetstream.Msg, 0, maxBatch)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := fn(batch)
		batch = batch[:0]
		return err
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		wait := 200 * time.Millisecond
		if len(batch) == 0 {
			wait = time.Second
		}
		msg, err := it.Next(jetstream.NextMaxWait(wait))
		if errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
			if err := flush(); err != nil {
				return err
			}
			// Nothing came: done when the server has nothing more to give.
			info, err := cons.Info(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("replay: reading %s: %w", stream, err)
			}
			if info.NumPending == 0 && info.Delivered.Stream <= last {
				return nil
			}
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("replay: reading %s: %w", stream, err)
		}
		md, err := msg.Metadata()
		if err != nil {
			return fmt.Errorf("replay: reading %s: %w", stream, err)
		}
		last = md.Sequence.Stream
		if last > endSeq {
			return flush()
		}
		batch = append(batch, msg)
		if last == endSeq || md.NumPending == 0 {
			return flush()
		}
		if len(batch) == maxBatch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
}

// seqAt is the sequence of the first message of stream stored at or after
// t; ok is false when there is none.
func (e *Env) seqAt(ctx context.Context, stream string, t time.Time) (seq uint64, ok bool, err error) {
	s, err := e.stream(ctx, stream)
	if err != nil {
		return 0, false, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, false, fmt.Errorf("replay: stream %s: %w", stream, err)
	}
	if info.State.Msgs == 0 || info.State.LastTime.Before(t) {
		return 0, false, nil
	}
	if !info.State.FirstTime.Before(t) {
		return info.State.FirstSeq, true, nil
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &t, HeadersOnly: true,
	})
	if err != nil {
		return 0, false, fmt.Errorf("replay: finding %s in %s: %w", t.Format(time.RFC3339), stream, err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		return 0, false, fmt.Errorf("replay: finding %s in %s: %w", t.Format(time.RFC3339), stream, err)
	}
	md, err := msg.Metadata()
	if err != nil {
		return 0, false, err
	}
	return md.Sequence.Stream, true, nil
}

// disjoint drops the filters another filter of the list covers: a
// consumer's filters must not overlap.
func disjoint(filters []string) []string {
	var out []string
	for i, f := range filters {
		covered := slices.ContainsFunc(filters, func(g string) bool { return g != f && projections.Covers(g, f) }) ||
			slices.Contains(filters[:i], f)
		if !covered {
			out = append(out, f)
		}
	}
	return out
}

// lastSeq is the last sequence of a stream now.
func (e *Env) lastSeq(ctx context.Context, stream string) (uint64, error) {
	s, err := e.stream(ctx, stream)
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("replay: stream %s: %w", stream, err)
	}
	return info.State.LastSeq, nil
}

// users resolves a lookup event to the documents that use its entity,
// through the reverse lookups the projector keeps in Redis.
func (e *Env) users(ctx context.Context, def *projections.Definition, ev projections.Event) ([]string, error) {
	if e.Redis == nil {
		return nil, fmt.Errorf("replay: lookup events (%s %s changed) need Redis, where the projector records which documents use it", ev.Lookup, ev.ID)
	}
	var out []string
	refs := redisstore.NewRefs(e.Redis, sink.RefsPrefix(def.Name), 0)
	err := refs.Users(ctx, ev.Lookup, ev.ID, func(ids []string) error {
		out = append(out, ids...)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	return out, nil
}

// Since re-issues the ids of def's events stored in the events stream since
// the time window names (see ParseSince): read in stream order through an
// ordered consumer filtered to the projection's trigger subjects, up to the
// stream's last sequence when the run first started (later events are the
// projector's to handle), each id once.
//
// A lookup event ("owner 7 changed") is resolved to the documents that use
// that entity now, through the reverse lookups in Redis — the same ids the
// projector's fan-out would re-project — and those are re-issued (counted in
// Lookups). An event that carries no valid id is skipped and listed.
//
// The run is keyed by the projection and window as written ("2h" stays
// "2h"): a resumed run keeps the window's start and end from its checkpoint,
// and continues after the last sequence whose ids were stored. Ids are
// de-duplicated in memory within one process.
func (e *Env) Since(ctx context.Context, def *projections.Definition, window string, o Options) (*Result, error) {
	from, err := ParseSince(window, time.Now())
	if err != nil {
		return nil, err
	}
	if err := e.checkEvents(ctx, def); err != nil {
		return nil, err
	}
	r, err := e.begin(def, "since "+def.Name, "since "+def.Name+" "+e.events()+" "+window, "ids", o)
	if err != nil {
		return nil, err
	}
	pos := r.cp.Position
	if r.resumed {
		fmt.Fprintf(r.o.Notes, "continuing the window from %s after sequence %d, up to sequence %d\n",
			pos.From.Local().Format(time.DateTime), pos.Seq, pos.EndSeq)
	} else {
		end, err := e.lastSeq(ctx, e.events())
		if err != nil {
			return r.end(ctx, err)
		}
		pos = Position{From: from, EndSeq: end}
		r.cp.Position = pos
		fmt.Fprintf(r.o.Notes, "events of %s on %s since %s, up to sequence %d\n",
			def.Name, strings.Join(triggerSubjects(def), ", "), from.Local().Format(time.RFC3339), end)
	}
	r.show(-1)
	seen := map[string]bool{}
	err = e.readStream(ctx, e.events(), triggerSubjects(def), pos.Seq, pos.From, pos.EndSeq, func(msgs []jetstream.Msg) error {
		var ids []string
		for _, m := range msgs {
			r.cp.Counts.Events++
			ev, err := def.Route(m.Subject(), m.Data())
			if err != nil {
				r.cp.Counts.Invalid++
				md, _ := m.Metadata()
				r.problem(Problem{Where: fmt.Sprintf("event %d (%s)", md.Sequence.Stream, m.Subject()), Why: strings.TrimPrefix(err.Error(), projections.ErrBadEvent.Error()+": ")})
				continue
			}
			found := []string{ev.ID}
			if ev.Lookup != "" {
				if found, err = e.users(ctx, def, ev); err != nil {
					return err
				}
				r.cp.Counts.Lookups++
			}
			for _, id := range found {
				if seen[id] {
					r.cp.Counts.Duplicates++
					continue
				}
				seen[id] = true
				ids = append(ids, id)
			}
		}
		md, err := msgs[len(msgs)-1].Metadata()
		if err != nil {
			return err
		}
		next := Position{From: pos.From, EndSeq: pos.EndSeq, Seq: md.Sequence.Stream}
		at := r.cp.Position
		if err := r.reissue(ctx, ids, true, func(n int) Position {
			if n == len(ids) {
				return next
			}
			return at // the batch is done only when all its ids are
		}); err != nil {
			return err
		}
		if len(ids) == 0 {
			r.moved(next, 0)
		}
		return nil
	})
	return r.end(ctx, err)
}

// triggerSubjects are the subjects of the projection's own events.
func triggerSubjects(def *projections.Definition) []string {
	out := make([]string, len(def.Triggers))
	for i, t := range def.Triggers {
		out[i] = t.Subject
	}
	return out
}
