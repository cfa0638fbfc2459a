package stream

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/readside/readside/projections"
)

// Freshness of the read model, as JetStream's consumer info tells it: the
// facts behind the lag metrics, the projector's status page and `replay
// status`. Every figure comes from the consumer's leader (the consumer info
// request), never from a replica's own view.

// ConsumerLag is one durable consumer's backlog at one moment.
type ConsumerLag struct {
	Projection string // the projection it feeds
	Kind       string // "live", "reproject", "replay" or "retry"
	Name       string // the durable consumer
	Stream     string // the stream it reads
	At         time.Time
	// Err is why the consumer info could not be read ("" when it was); the
	// figures below are then zero.
	Err string
	// Pending: stored in the stream, matching the consumer, not yet delivered.
	Pending uint64
	// AckPending: delivered, not yet acknowledged.
	AckPending int
	// Redelivered: delivered more than once, not yet acknowledged.
	Redelivered int
	// Acked is the consumer's ack floor (consumer sequence): its increase
	// over time is the rate of settled events.
	Acked uint64
	// Lag is the age of the oldest event not yet acknowledged (pending or
	// ack-pending), from its stream timestamp; 0 when there is none.
	Lag time.Duration
	// Oldest is the stream sequence of that event; 0 when there is none, or
	// when it could not be read (LagErr says why).
	Oldest uint64
	// LagErr is why the oldest unacknowledged event could not be read while
	// the consumer info could; Lag is then 0 and does not mean "fresh".
	LagErr string
}

// Unacked is the number of events the consumer has not acknowledged yet:
// pending and ack-pending.
func (l ConsumerLag) Unacked() uint64 { return l.Pending + uint64(max(l.AckPending, 0)) }

// DeadLetters is one projection's dead-letter backlog.
type DeadLetters struct {
	Projection string
	Messages   uint64
	// Reasons: the most frequent reasons among the newest entries (at most
	// a bounded number read), most frequent first, at most 5.
	Reasons []ReasonCount
	Err     string
	// Read is how many of the newest entries Reasons come from, at most
	// MaxReasonEntries.
	Read int
}

// ReasonCount is how many dead-letter entries gave one reason.
type ReasonCount struct {
	Reason string
	Count  int
}

// MsgGetter reads a stored message; jetstream.Stream has it.
type MsgGetter interface {
	GetMsg(ctx context.Context, seq uint64, opts ...jetstream.GetMsgOpt) (*jetstream.RawStreamMsg, error)
}

// ReadLag reads one durable consumer's backlog: the consumer info, and when
// anything is unacknowledged, the stream timestamp of the oldest such event
// (a stream info request and a message get, see LagOf). Projection and
// Kind are left empty: the caller knows them.
//
// An error reading the consumer info is returned (and set in Err); an error
// reading the oldest event is not: the figures of the consumer info are
// good, and LagErr says why Lag is missing.
func ReadLag(ctx context.Context, js jetstream.JetStream, streamName, durable string) (ConsumerLag, error) {
	c, err := js.Consumer(ctx, streamName, durable)
	if err != nil {
		return ConsumerLag{Name: durable, Stream: streamName, At: time.Now(), Err: err.Error()}, err
	}
	info := c.CachedInfo()
	var st MsgGetter
	if info.NumPending > 0 || info.NumAckPending > 0 {
		s, err := js.Stream(ctx, streamName)
		if err != nil {
			l := LagOf(ctx, nil, info)
			l.LagErr = fmt.Sprintf("stream %s: %v", streamName, err)
			return l, nil
		}
		st = s
	}
	return LagOf(ctx, st, info), nil
}

// LagOf is ReadLag from a consumer info already read: when anything is
// unacknowledged it reads, from st (the consumer's stream), the oldest event
// after the ack floor that matches the consumer's filter subjects. The ack
// floor is the stream sequence before which every matching event is
// acknowledged (or terminated), so that event is the oldest one pending or
// ack-pending. It is found with a get of the next message by subject
// (usually one request, see oldest), which skips the messages deleted from
// the stream and works whether or not the stream allows direct gets (with
// them a follower may answer: an event's timestamp is the same on every
// replica). st may be nil when nothing is unacknowledged.
//
// Lag is measured from the server's clock: the consumer info's timestamp
// (when the server gathered it) less the event's stream timestamp; a server
// too old to send the former falls back to the local clock.
func LagOf(ctx context.Context, st MsgGetter, info *jetstream.ConsumerInfo) ConsumerLag {
	l := ConsumerLag{
		Name: info.Name, Stream: info.Stream, At: info.TimeStamp,
		Pending: info.NumPending, AckPending: info.NumAckPending, Redelivered: info.NumRedelivered,
		Acked: info.AckFloor.Consumer,
	}
	if l.At.IsZero() {
		l.At = time.Now()
	}
	if l.Unacked() == 0 {
		return l
	}
	if st == nil {
		l.LagErr = "no stream to read the oldest event from"
		return l
	}
	msg, err := oldest(ctx, st, info.AckFloor.Stream+1, filterSubjects(info.Config))
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		// Acknowledged since the consumer info was read, or removed from
		// the stream (its age limit, or deleted): nothing is waiting.
	case err != nil:
		l.LagErr = fmt.Sprintf("reading the oldest unacknowledged event of %s on %s: %v", info.Name, info.Stream, err)
	default:
		l.Oldest = msg.Sequence
		l.Lag = max(l.At.Sub(msg.Time), 0)
	}
	return l
}

func filterSubjects(cfg jetstream.ConsumerConfig) []string {
	if len(cfg.FilterSubjects) > 0 {
		return cfg.FilterSubjects
	}
	if cfg.FilterSubject != "" {
		return []string{cfg.FilterSubject}
	}
	return []string{">"}
}

// oldest returns the first message at or after seq on any of subjects;
// jetstream.ErrMsgNotFound when there is none. With several subjects it
// first asks for the first message under the narrowest filter covering them
// all (a trigger's subjects usually share a prefix): when that one matches
// a subject, or there is none, one request answers. Otherwise (another
// subject under the cover came first) it asks for each subject's first, at
// once, and takes the earliest.
func oldest(ctx context.Context, st MsgGetter, seq uint64, subjects []string) (*jetstream.RawStreamMsg, error) {
	if len(subjects) > 1 {
		if c := coverOf(subjects); c != ">" {
			m, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(c))
			if err != nil {
				return nil, err // jetstream.ErrMsgNotFound: none under any subject
			}
			if slices.ContainsFunc(subjects, func(s string) bool { return projections.Covers(s, m.Subject) }) {
				return m, nil
			}
		}
	}
	msgs := make([]*jetstream.RawStreamMsg, len(subjects))
	var g errgroup.Group
	for i, subject := range subjects {
		g.Go(func() error {
			m, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				return nil
			}
			msgs[i] = m
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var first *jetstream.RawStreamMsg
	for _, m := range msgs {
		if m != nil && (first == nil || m.Sequence < first.Sequence) {
			first = m
		}
	}
	if first == nil {
		return nil, jetstream.ErrMsgNotFound
	}
	return first, nil
}

// coverOf is the narrowest subject filter of the form tokens, '*'s and a
// final '>' that matches every subject the filters match: "a.b.*" and
// "a.c.d" give "a.*.*", "a.b" and "a.b.c" give "a.>".
func coverOf(filters []string) string {
	toks := make([][]string, len(filters))
	for i, f := range filters {
		toks[i] = strings.Split(f, ".")
	}
	var out []string
	for i := 0; ; i++ {
		ended, wild := 0, false
		for _, t := range toks {
			if i >= len(t) {
				ended++
			} else if t[i] == ">" {
				wild = true
			}
		}
		switch {
		case ended == len(toks):
			return strings.Join(out, ".")
		case ended > 0:
			// Some end here, others go on: only '>' one token before
			// covers both.
			out = out[:max(i-1, 0)]
			return strings.Join(append(out, ">"), ".")
		case wild:
			return strings.Join(append(out, ">"), ".")
		}
		tok := toks[0][i]
		for _, t := range toks[1:] {
			if t[i] != tok {
				tok = "*"
			}
		}
		out = append(out, tok)
	}
}

// MaxReasonEntries is how many of a projection's newest dead-letter entries
// ReadDeadLetters reads for their reasons.
const MaxReasonEntries = 200

// maxReasons is how many reasons DeadLetters keeps.
const maxReasons = 5

// CountDeadLetters counts the dead-letter entries of every projection, by
// projection, with one stream info request filtered to the dead-letter
// subjects: the stream's leader answers from its index of subjects, so no
// consumer is created and nothing is read. A projection without entries is
// absent.
func (s *Setup) CountDeadLetters(ctx context.Context) (map[string]uint64, error) {
	prefix := s.cfg.DLQPrefix + "."
	info, err := s.dlqInfo(ctx, prefix+">")
	if err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	for subject, n := range info.State.Subjects {
		if p, ok := strings.CutPrefix(subject, prefix); ok {
			out[p] += n
		}
	}
	return out, nil
}

func (s *Setup) dlqInfo(ctx context.Context, subject string) (*jetstream.StreamInfo, error) {
	// The stream's handle is looked up once (a stream-info request), then
	// each call is one filtered info request: the monitor calls this every
	// round.
	s.mu.Lock()
	st := s.dlq
	s.mu.Unlock()
	if st == nil {
		var err error
		if st, err = s.js.Stream(ctx, s.cfg.DeadLetter); err != nil {
			return nil, fmt.Errorf("stream: dead-letter stream %s: %w", s.cfg.DeadLetter, err)
		}
		s.mu.Lock()
		s.dlq = st
		s.mu.Unlock()
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			s.mu.Lock()
			s.dlq = nil // deleted: look it up again, as it is made anew
			s.mu.Unlock()
		}
		return nil, fmt.Errorf("stream: dead-letter stream %s: %w", s.cfg.DeadLetter, err)
	}
	return info, nil
}

// ReadDeadLetters counts the dead-letter entries of a projection (as
// CountDeadLetters does) and reads the newest of them, at most
// MaxReasonEntries, for their most frequent reasons, grouped by
// NormalizeReason. The newest entries are found by sequence: the entries of
// all projections share the stream, so the start is estimated from the
// projection's share of the sequence range, corrected once from what the
// server says is left after it, and at most 4×MaxReasonEntries entries are
// read through an ordered consumer, deleted after (or else removed by
// JetStream after 30 s idle).
// On error, the returned DeadLetters has Err set and whatever was learnt.
func (s *Setup) ReadDeadLetters(ctx context.Context, projection string) (DeadLetters, error) {
	d := DeadLetters{Projection: projection}
	fail := func(err error) (DeadLetters, error) {
		d.Err = err.Error()
		return d, err
	}
	subject := s.DeadLetterSubject(projection)
	info, err := s.dlqInfo(ctx, subject)
	if err != nil {
		return fail(err)
	}
	d.Messages = info.State.Subjects[subject]
	if d.Messages == 0 {
		return d, nil
	}
	first, last := info.State.FirstSeq, info.State.LastSeq
	start := first
	if d.Messages > MaxReasonEntries {
		start = startFor(first, last, last-first+1, d.Messages)
	}
	counts := map[string]int{}
	for attempt := 0; ; attempt++ {
		entries, left, err := s.readEntries(ctx, subject, start)
		if err != nil {
			return fail(err)
		}
		if attempt == 0 && len(entries) > 0 && (left > 4*MaxReasonEntries || left < MaxReasonEntries && start > first) {
			// The share was not even: estimate again from the entries
			// left after the first one read.
			from := entries[0].seq
			start = startFor(first, last, last-from+1, left)
			continue
		}
		entries = entries[max(len(entries)-MaxReasonEntries, 0):]
		for _, e := range entries {
			counts[e.reason]++
		}
		d.Read = len(entries)
		break
	}
	for r, n := range counts {
		d.Reasons = append(d.Reasons, ReasonCount{Reason: r, Count: n})
	}
	slices.SortFunc(d.Reasons, func(a, b ReasonCount) int {
		return cmp.Or(b.Count-a.Count, strings.Compare(a.Reason, b.Reason))
	})
	d.Reasons = d.Reasons[:min(len(d.Reasons), maxReasons)]
	return d, nil
}

// startFor is the sequence from which about 5/4 × MaxReasonEntries entries
// should follow, when n entries are spread over the last span sequences up
// to last; never before first.
func startFor(first, last, span, n uint64) uint64 {
	if n == 0 {
		return first
	}
	back := min(last-first+1, span*MaxReasonEntries*5/4/n+1)
	return max(last+1-back, first)
}

type deadEntry struct {
	seq    uint64
	reason string
}

// readEntries reads at most 4×MaxReasonEntries entries of subject from
// sequence start, in order, and how many matching entries the server had
// from the first one read on (that one included).
func (s *Setup) readEntries(ctx context.Context, subject string, start uint64) ([]deadEntry, uint64, error) {
	c, err := s.js.OrderedConsumer(ctx, s.cfg.DeadLetter, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject}, DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: max(start, 1),
		InactiveThreshold: 30 * time.Second,
	})
	if err != nil {
		return nil, 0, fmt.Errorf("stream: reading %s: %w", subject, err)
	}
	batch, err := c.FetchNoWait(4 * MaxReasonEntries)
	if err != nil {
		return nil, 0, fmt.Errorf("stream: reading %s: %w", subject, err)
	}
	defer func() {
		// Gone at once rather than after InactiveThreshold: every replica
		// of the projector reads the reasons when the count changes. A
		// failure leaves it to the threshold.
		if info := c.CachedInfo(); info != nil {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			_ = s.js.DeleteConsumer(dctx, s.cfg.DeadLetter, info.Name)
		}
	}()
	var out []deadEntry
	var left uint64
	for m := range batch.Messages() {
		md, err := m.Metadata()
		if err != nil {
			continue
		}
		if len(out) == 0 {
			left = md.NumPending + 1
		}
		h := m.Headers()
		out = append(out, deadEntry{seq: md.Sequence.Stream, reason: NormalizeReason(h.Get(HeaderReason), h.Get(HeaderID))})
	}
	if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
		return nil, 0, fmt.Errorf("stream: reading %s: %w", subject, err)
	}
	return out, left, nil
}

// NormalizeReason replaces the entry's id in its reason, as it is and as
// escaped in a URL, with {id}, so that "GET /shops/42: status 400" and
// "GET /shops/43: status 400" group as one reason.
func NormalizeReason(reason, id string) string {
	if id == "" {
		return reason
	}
	for _, form := range []string{url.PathEscape(id), url.QueryEscape(id), strconv.Quote(id), id} {
		if form == strconv.Quote(id) {
			reason = strings.ReplaceAll(reason, form, `"{id}"`)
			continue
		}
		reason = replaceToken(reason, form)
	}
	return reason
}

// replaceToken replaces id where it stands alone: not inside a longer run of
// letters and digits (so id 4 does not turn status 400 into status {id}00).
func replaceToken(s, id string) string {
	if id == "" {
		return s
	}
	var b strings.Builder
	from := 0 // s[:from] is written
	for at := 0; ; {
		i := strings.Index(s[at:], id)
		if i < 0 {
			b.WriteString(s[from:])
			return b.String()
		}
		i += at
		j := i + len(id)
		if (i == 0 || !isWord(s[i-1])) && (j == len(s) || !isWord(s[j])) {
			b.WriteString(s[from:i])
			b.WriteString("{id}")
			from, at = j, j
			continue
		}
		at = i + 1
	}
}

func isWord(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == '-'
}
