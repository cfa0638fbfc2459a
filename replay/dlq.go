package replay

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/readside/readside/internal/stream"
	"github.com/readside/readside/projections"
)

// DLQOptions choose what DLQ does with the dead-letter entries.
type DLQOptions struct {
	// Reason keeps only the entries whose reason contains it (ignoring case).
	Reason string
	// Purge deletes the entries that cannot be re-issued (no valid id) too;
	// without it they are kept, and listed.
	Purge bool
}

// entry is one dead-letter entry.
type entry struct {
	seq        uint64
	projection string
	reason     string
	subject    string // the original event's
	id         string // Readside-Id, when the projector could read one
	body       []byte
	at         time.Time
}

func readEntry(m jetstream.Msg) entry {
	h := m.Headers()
	md, _ := m.Metadata()
	e := entry{
		projection: h.Get(stream.HeaderProjection),
		reason:     h.Get(stream.HeaderReason),
		subject:    h.Get(stream.HeaderSubject),
		id:         h.Get(stream.HeaderID),
		body:       m.Data(),
	}
	if md != nil {
		e.seq, e.at = md.Sequence.Stream, md.Timestamp
	}
	if t, err := time.Parse(time.RFC3339Nano, h.Get(stream.HeaderTime)); err == nil {
		e.at = t
	}
	if e.projection == "" {
		e.projection = m.Subject()[strings.LastIndexByte(m.Subject(), '.')+1:]
	}
	return e
}

// targets are the ids to re-issue for an entry: the documents that use the
// entity of a lookup event; else its Readside-Id; else the id its original
// subject and body carry. why says why there are none.
func (e *Env) targets(ctx context.Context, def *projections.Definition, en entry) (ids []string, lookup bool, why string, err error) {
	var ev projections.Event
	var routeErr error = fmt.Errorf("the entry names no original subject (%s)", stream.HeaderSubject)
	if en.subject != "" {
		ev, routeErr = def.Route(en.subject, en.body)
	}
	if routeErr == nil && ev.Lookup != "" {
		ids, err := e.users(ctx, def, ev)
		return ids, true, "", err
	}
	if en.id != "" {
		if err := projections.ValidateID(en.id); err == nil {
			return []string{en.id}, false, "", nil
		}
	}
	if routeErr == nil {
		return []string{ev.ID}, false, "", nil
	}
	return nil, false, strings.TrimPrefix(routeErr.Error(), projections.ErrBadEvent.Error()+": "), nil
}

// DLQ re-issues the dead-letter entries of def (subject
// <prefix>.<projection> of the dead-letter stream), up to the last one
// stored when the run first started, and deletes each entry from the
// dead-letter stream once JetStream has stored its re-issue. An entry is
// re-issued by its Readside-Id, or else by routing its original subject
// and body; a lookup event is resolved to the documents that use its entity
// (as in Since). An entry that yields no valid id is kept and listed in the
// Result ("cannot re-issue: <why>"), unless d.Purge deletes it.
//
// Re-issued events that fail again are dead-lettered again by the projector,
// as new entries after the run's window: a run never loops.
//
// The run is keyed by the projection and d; its position is the last entry
// done. Progress counts entries.
func (e *Env) DLQ(ctx context.Context, def *projections.Definition, d DLQOptions, o Options) (*Result, error) {
	if err := e.checkEvents(ctx, def); err != nil {
		return nil, err
	}
	dlq, err := e.stream(ctx, e.deadLetter())
	if err != nil {
		return nil, err
	}
	subject := e.dlqPrefix() + "." + def.Name
	key := fmt.Sprintf("dlq %s %s reason=%q purge=%t", def.Name, e.deadLetter(), d.Reason, d.Purge)
	r, err := e.begin(def, "dlq "+def.Name, key, "entries", o)
	if err != nil {
		return nil, err
	}
	pos := r.cp.Position
	if r.resumed {
		fmt.Fprintf(r.o.Notes, "continuing after entry %d, up to entry %d\n", pos.Seq, pos.EndSeq)
	} else {
		info, err := dlq.Info(ctx)
		if err != nil {
			return r.end(ctx, fmt.Errorf("replay: stream %s: %w", e.deadLetter(), err))
		}
		pos = Position{EndSeq: info.State.LastSeq}
		r.cp.Position = pos
	}
	total := int64(-1) // unknown with a reason filter
	if info, err := dlq.Info(ctx, jetstream.WithSubjectFilter(subject)); err == nil && d.Reason == "" {
		total = r.before.Events + int64(info.State.Subjects[subject])
	}
	r.show(total)
	reason := strings.ToLower(d.Reason)
	err = e.readStream(ctx, e.deadLetter(), []string{subject}, pos.Seq, time.Time{}, pos.EndSeq, func(msgs []jetstream.Msg) error {
		var ids []string
		var done []uint64 // entries to delete once ids are stored
		seen := map[string]bool{}
		matched := 0
		for _, m := range msgs {
			en := readEntry(m)
			if reason != "" && !strings.Contains(strings.ToLower(en.reason), reason) {
				continue
			}
			matched++
			r.cp.Counts.Events++
			found, lookup, why, err := e.targets(ctx, def, en)
			if err != nil {
				return err
			}
			if lookup {
				r.cp.Counts.Lookups++
			}
			if why != "" {
				r.cp.Counts.Invalid++
				p := Problem{Where: fmt.Sprintf("entry %d (%s)", en.seq, en.subject), Why: "cannot re-issue: " + why}
				r.problem(p)
				if d.Purge {
					done = append(done, en.seq)
				} else {
					r.cp.Counts.Kept++
				}
				continue
			}
			done = append(done, en.seq)
			for _, id := range found {
				if seen[id] {
					r.cp.Counts.Duplicates++
					continue
				}
				seen[id] = true
				ids = append(ids, id)
			}
		}
		at := r.cp.Position
		if err := r.reissue(ctx, ids, false, func(int) Position { return at }); err != nil {
			return err
		}
		if !r.o.DryRun {
			if err := deleteEntries(ctx, dlq, done); err != nil {
				return err
			}
		}
		r.cp.Counts.Deleted += int64(len(done))
		md, err := msgs[len(msgs)-1].Metadata()
		if err != nil {
			return err
		}
		r.m.add(int64(matched))
		r.moved(Position{EndSeq: pos.EndSeq, Seq: md.Sequence.Stream}, int64(matched))
		return nil
	})
	return r.end(ctx, err)
}

// deleteEntries deletes dead-letter entries by sequence, a few at once. An
// entry already gone (another run deleted it) is fine.
func deleteEntries(ctx context.Context, s jetstream.Stream, seqs []uint64) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for _, seq := range seqs {
		g.Go(func() error {
			err := s.DeleteMsg(gctx, seq)
			if err != nil && !isMsgNotFound(err) {
				return fmt.Errorf("replay: deleting dead-letter entry %d: %w", seq, err)
			}
			return nil
		})
	}
	return g.Wait()
}

func isMsgNotFound(err error) bool {
	return strings.Contains(err.Error(), "no message found") || strings.Contains(err.Error(), "message not found")
}

// DLQGroup is the dead-letter entries of one projection with one reason.
type DLQGroup struct {
	Projection string
	// Reason is the entries' reason with the entry's id replaced by {id}, so
	// that "GET /shops/42: status 400" and "GET /shops/43: status 400" are one group.
	Reason      string
	Count       int
	First, Last time.Time
	// Examples are up to three ids of entries in the group, or, for entries
	// without one, their original subject.
	Examples []string
}

// maxExamples is how many examples a DLQGroup keeps.
const maxExamples = 3

// ListDLQ reads the dead-letter entries of projection (every projection when
// it is "") and groups them by projection and reason: how many, the first
// and last time, a few example ids. Groups are ordered by projection, then
// by count, largest first. It changes nothing.
func (e *Env) ListDLQ(ctx context.Context, projection string) ([]DLQGroup, error) {
	subject := e.dlqPrefix() + ".>"
	if projection != "" {
		subject = e.dlqPrefix() + "." + projection
	}
	end, err := e.lastSeq(ctx, e.deadLetter())
	if err != nil {
		return nil, err
	}
	groups := map[[2]string]*DLQGroup{}
	err = e.readStream(ctx, e.deadLetter(), []string{subject}, 0, time.Time{}, end, func(msgs []jetstream.Msg) error {
		for _, m := range msgs {
			en := readEntry(m)
			reason := stream.NormalizeReason(en.reason, en.id)
			g := groups[[2]string{en.projection, reason}]
			if g == nil {
				g = &DLQGroup{Projection: en.projection, Reason: reason, First: en.at, Last: en.at}
				groups[[2]string{en.projection, reason}] = g
			}
			g.Count++
			if en.at.Before(g.First) {
				g.First = en.at
			}
			if en.at.After(g.Last) {
				g.Last = en.at
			}
			example := en.id
			if example == "" {
				example = "subject " + en.subject
			}
			if len(g.Examples) < maxExamples && !slices.Contains(g.Examples, example) {
				g.Examples = append(g.Examples, example)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]DLQGroup, 0, len(groups))
	for _, g := range groups {
		out = append(out, *g)
	}
	slices.SortFunc(out, func(a, b DLQGroup) int {
		return cmp.Or(strings.Compare(a.Projection, b.Projection), b.Count-a.Count, strings.Compare(a.Reason, b.Reason))
	})
	return out, nil
}

// WriteDLQGroups writes groups for an operator:
//
//	shopdisplay: 6 entries
//	    5  source shop: source: GET http://shops/shops/{id}: status 400: "bad id"
//	       first 2026-11-22 10:00:01, last 2026-11-22 10:04:13; e.g. 1005, 1010, 1015
func WriteDLQGroups(w io.Writer, groups []DLQGroup) {
	if len(groups) == 0 {
		fmt.Fprintln(w, "the dead-letter queue is empty")
		return
	}
	for i := 0; i < len(groups); {
		p := groups[i].Projection
		j, n := i, 0
		for ; j < len(groups) && groups[j].Projection == p; j++ {
			n += groups[j].Count
		}
		fmt.Fprintf(w, "%s: %d entries\n", p, n)
		for _, g := range groups[i:j] {
			fmt.Fprintf(w, "  %5d  %s\n", g.Count, g.Reason)
			fmt.Fprintf(w, "         first %s, last %s; e.g. %s\n", g.First.Local().Format(time.DateTime),
				g.Last.Local().Format(time.DateTime), strings.Join(g.Examples, ", "))
		}
		i = j
	}
}
