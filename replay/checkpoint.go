package replay

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/readside/readside/internal/sink"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/readside/readside/projections"
)

// Checkpoint is where a run stopped, so that running the same command again
// continues there. It is written every few seconds while the run goes on and
// when it is interrupted, and removed when the run completes.
type Checkpoint struct {
	// Key names the run: the command, the projection and the arguments
	// (see each command for its key). A run with another key starts afresh.
	Key string `json:"key"`
	// RunID is in the Nats-Msg-Id of every event the run re-issues, so the
	// ids a resumed run repeats (those after the last checkpoint) are dropped
	// by JetStream within its duplicate window (2 minutes by default).
	RunID string `json:"runId"`
	// Started is when the run first started; Saved when this was written.
	Started time.Time `json:"started"`
	Saved   time.Time `json:"saved"`
	// Position is where to continue.
	Position Position `json:"position"`
	// Counts are what the run has done so far, over all its processes.
	Counts Counts `json:"counts"`
}

// Position is where a run continues. Each command uses the fields it needs.
type Position struct {
	// Index is how many input ids are done (ids).
	Index int64 `json:"index,omitempty"`
	// Cursor is the page being worked: the list endpoint's cursor, or the
	// store scan's position of the page (sink.ScanPage.At) (all).
	Cursor string `json:"cursor,omitempty"`
	// Skip is how many ids of the page at Cursor are done (all).
	Skip int `json:"skip,omitempty"`
	// Seq is the last stream sequence done (since, dlq).
	Seq uint64 `json:"seq,omitempty"`
	// EndSeq is the last stream sequence of the window, fixed when the run
	// first started: a resumed run reads the same window (since, dlq).
	EndSeq uint64 `json:"endSeq,omitempty"`
	// From is the start of the window (since).
	From time.Time `json:"from,omitzero"`
}

// Checkpoints keeps checkpoints as small JSON files in a directory, one per
// run key. Writes are atomic (a temporary file renamed over the old one), so
// a crash never leaves a torn checkpoint. Safe for use by one run at a time
// per key.
type Checkpoints struct {
	dir string
}

// NewCheckpoints keeps checkpoints in dir, created when first needed.
func NewCheckpoints(dir string) *Checkpoints { return &Checkpoints{dir: dir} }

// Dir is the directory the checkpoints are kept in.
func (c *Checkpoints) Dir() string { return c.dir }

// DefaultStateDir is where the replay tool keeps its checkpoints:
// $XDG_STATE_HOME/readside, or ~/.local/state/readside.
func DefaultStateDir() (string, error) {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "readside"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("replay: no state directory: set XDG_STATE_HOME or HOME, or pass --state-dir: %w", err)
	}
	return filepath.Join(home, ".local", "state", "readside"), nil
}

// path is the file of key: a readable prefix and a hash of the whole key.
func (c *Checkpoints) path(key string) string {
	sum := sha256.Sum256([]byte(key))
	word, _, _ := strings.Cut(key, " ")
	clean := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return -1
	}, word)
	return filepath.Join(c.dir, "replay-"+clean+"-"+hex.EncodeToString(sum[:8])+".json")
}

// Load returns the checkpoint of the run named key, or nil when there is none.
func (c *Checkpoints) Load(key string) (*Checkpoint, error) {
	b, err := os.ReadFile(c.path(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("replay: reading checkpoint: %w", err)
	}
	var cp Checkpoint
	if err := json.Unmarshal(b, &cp); err != nil {
		return nil, fmt.Errorf("replay: checkpoint %s is damaged (%v): remove it, or pass --restart", c.path(key), err)
	}
	if cp.Key != key { // a hash collision, in theory
		return nil, nil
	}
	return &cp, nil
}

// Save writes cp, stamping its Saved time.
func (c *Checkpoints) Save(cp *Checkpoint) error {
	cp.Saved = time.Now().UTC()
	b, err := json.MarshalIndent(cp, "", "  ")
	if err != nil {
		return fmt.Errorf("replay: checkpoint: %w", err)
	}
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return fmt.Errorf("replay: checkpoint directory: %w", err)
	}
	f, err := os.CreateTemp(c.dir, ".checkpoint-*")
	if err != nil {
		return fmt.Errorf("replay: writing checkpoint: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), c.path(cp.Key))
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("replay: writing checkpoint: %w", err)
	}
	return nil
}

// Remove deletes the checkpoint of key; none is fine.
func (c *Checkpoints) Remove(key string) error {
	if err := os.Remove(c.path(key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("replay: removing checkpoint: %w", err)
	}
	return nil
}

// Path is the file the checkpoint of key is kept in.
func (c *Checkpoints) Path(key string) string { return c.path(key) }

// newRunID names a run: short, random, and safe in a Nats-Msg-Id.
func newRunID() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Env is what the replay commands connect to. JetStream is required; Redis,
// Elastic and Transport only for the commands that say so. The zero stream
// names are the projector's defaults.
type Env struct {
	JetStream jetstream.JetStream
	// Stores opens a projection's stores as replay reads them: all --from a
	// store, verify, rebuild and lookup events (since, dlq) use them, and
	// only through the contracts of package sink, so every command works
	// on every backend that keeps the contract it needs. nil: no store.
	Stores func(ctx context.Context, def *projections.Definition) (Stores, error)
	// Transport sends requests to the source APIs (all, from the list
	// endpoint) [the source client's default].
	Transport http.RoundTripper

	Events     string // the events stream [READSIDE_EVENTS]
	Own        string // Readside's own stream, where re-issued events go [READSIDE_OWN]
	DeadLetter string // the dead-letter stream [READSIDE_DLQ]
	DLQPrefix  string // dead-letter subjects are <prefix>.<projection> [readside.dlq]
}

// Stores are what replay reads of one projection's stores: the doc store
// and the search index, each with the name reports give it ("redis",
// "elasticsearch", "embedded-docs", "embedded-search"), and the reverse
// lookups. A store may also keep sink.Scanner, sink.Counter, sink.Sampler,
// sink.Reindexer or sink.Generations, which replay asks for by type
// assertion; a nil store is one the backend does not have.
type Stores struct {
	Docs      sink.Reader
	DocsName  string
	Index     sink.Reader
	IndexName string
	Refs      RefUsers
}

// RefUsers names the documents that use a joined entity (see
// sink.RefIndex.Users).
type RefUsers interface {
	Users(ctx context.Context, source, key string, fn func(ids []string) error) error
}

// OpenStores makes an Env.Stores of open (such as backend.Stores.Read),
// which opens the stores of each definition once (see KeepStores).
func OpenStores(open func(ctx context.Context, def *projections.Definition) (sink.Stores, error)) func(ctx context.Context, def *projections.Definition) (Stores, error) {
	return KeepStores(func(ctx context.Context, def *projections.Definition) (Stores, error) {
		s, err := open(ctx, def)
		if err != nil {
			return Stores{}, err
		}
		return Stores{Docs: s.Docs, DocsName: s.DocsName, Index: s.Index, IndexName: s.IndexName, Refs: s.Refs}, nil
	})
}

// KeepStores makes an Env.Stores that opens the stores of each definition
// once, with open, and keeps them for the run: a run asks for them again
// and again (since: at every event of a joined entity).
func KeepStores(open func(ctx context.Context, def *projections.Definition) (Stores, error)) func(ctx context.Context, def *projections.Definition) (Stores, error) {
	var mu sync.Mutex
	opened := map[*projections.Definition]Stores{}
	return func(ctx context.Context, def *projections.Definition) (Stores, error) {
		mu.Lock()
		defer mu.Unlock()
		if st, ok := opened[def]; ok {
			return st, nil
		}
		st, err := open(ctx, def)
		if err != nil {
			return Stores{}, err
		}
		opened[def] = st
		return st, nil
	}
}

// stores opens def's stores for command, or says why it cannot.
func (e *Env) stores(ctx context.Context, def *projections.Definition, command string) (Stores, error) {
	if e.Stores == nil {
		return Stores{}, fmt.Errorf("replay: %s needs the stores of projection %s, and none are configured", command, def.Name)
	}
	st, err := e.Stores(ctx, def)
	if err != nil {
		return Stores{}, fmt.Errorf("replay: %s: opening the stores of projection %s: %w", command, def.Name, err)
	}
	return st, nil
}

func (e *Env) events() string     { return cmp.Or(e.Events, "READSIDE_EVENTS") }
func (e *Env) own() string        { return cmp.Or(e.Own, "READSIDE_OWN") }
func (e *Env) deadLetter() string { return cmp.Or(e.DeadLetter, "READSIDE_DLQ") }
func (e *Env) dlqPrefix() string  { return cmp.Or(e.DLQPrefix, "readside.dlq") }

// ErrNoStream means a stream the run reads or writes does not exist: the
// projector creates the streams when it starts.
var ErrNoStream = errors.New("stream not found")

// ErrInterrupted means the run stopped before its end (its ctx ended); its
// checkpoint is saved, and running the same command again continues it.
var ErrInterrupted = errors.New("interrupted")

// checkEvents fails clearly when the own stream, where re-issued events go,
// is missing or does not capture the projection's replay subject (the
// projector creates it when it starts).
func (e *Env) checkEvents(ctx context.Context, def *projections.Definition) error {
	s, err := e.stream(ctx, e.own())
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(s.CachedInfo().Config.Subjects, func(f string) bool { return projections.Covers(f, def.ReplaySubject()) }) {
		return fmt.Errorf("replay: stream %s does not capture %s: start the projector with projection %s once (it creates the stream), then replay",
			e.own(), def.ReplaySubject(), def.Name)
	}
	return nil
}

func (e *Env) stream(ctx context.Context, name string) (jetstream.Stream, error) {
	s, err := e.JetStream.Stream(ctx, name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return nil, fmt.Errorf("replay: %w: %s does not exist on this NATS server; the projector creates it when it starts (check --stream, --own-stream and --dlq-stream, and that the projector runs against this NATS)", ErrNoStream, name)
	case errors.Is(err, jetstream.ErrJetStreamNotEnabled):
		return nil, fmt.Errorf("replay: JetStream is not enabled on this NATS server, so stream %s cannot exist: point --nats-url at the projector's NATS", name)
	case err != nil:
		return nil, fmt.Errorf("replay: looking up stream %s: %w", name, err)
	}
	return s, nil
}

// Options tune a run. The zero value re-issues DefaultRate ids per second,
// without checkpoints and without showing progress.
type Options struct {
	// Rate is the most ids re-issued per second [DefaultRate]; negative: no limit.
	Rate float64
	// DryRun counts what the run would do, and publishes, deletes and
	// writes nothing (no checkpoint either; an existing one is honoured).
	DryRun bool
	// Checkpoints keep the run's checkpoint; nil: the run cannot be resumed.
	Checkpoints *Checkpoints
	// Restart ignores an existing checkpoint: the run starts afresh (and
	// replaces it).
	Restart bool
	// Progress shows the run's progress while it runs; nil: nothing.
	Progress Reporter
	// Notes receives a line for what the operator should know as it happens:
	// a resumed checkpoint, where the ids come from, inputs skipped. nil: none.
	Notes io.Writer
	// CheckpointEvery and CheckpointInterval say how often the checkpoint is
	// written: after this many ids or this long, whichever comes first
	// [1000 ids, 5s]. It is written on interruption and on errors too.
	CheckpointEvery    int64
	CheckpointInterval time.Duration
}

// Counts are what a run did, over all its processes when it was resumed.
type Counts struct {
	Reissued   int64 `json:"reissued,omitempty"`   // ids re-issued (stored by JetStream; counted only in a dry run)
	Invalid    int64 `json:"invalid,omitempty"`    // inputs skipped: no valid id (ids, all, since); entries that cannot be re-issued (dlq)
	Duplicates int64 `json:"duplicates,omitempty"` // ids dropped as repeats of earlier ones (ids, since, dlq)
	Tombstones int64 `json:"tombstones,omitempty"` // deleted documents skipped (all, from the stores)
	Events     int64 `json:"events,omitempty"`     // events read (since), entries read (dlq)
	Lookups    int64 `json:"lookups,omitempty"`    // lookup events resolved to the documents that use the entity (since, dlq)
	Deleted    int64 `json:"deleted,omitempty"`    // dead-letter entries deleted (dlq)
	Kept       int64 `json:"kept,omitempty"`       // dead-letter entries kept (dlq)
}

// Problem is one input a run skipped, and why.
type Problem struct {
	Where string // "line 12", "entry 31", "key shop:x y", "event 1042"
	Input string // the input as read (quoted when shown)
	Why   string
}

func (p Problem) String() string {
	if p.Input == "" {
		return fmt.Sprintf("%s: %s", p.Where, p.Why)
	}
	return fmt.Sprintf("%s: %q: %s", p.Where, p.Input, p.Why)
}

// maxProblems is how many problems a Result lists; Counts has them all.
const maxProblems = 100

// Result is what a run did.
type Result struct {
	// Run names the command and projection, e.g. "all shopdisplay".
	Run string
	Counts
	// Before are the counts of earlier processes of a resumed run.
	Before  Counts
	Resumed bool
	// Source says where the ids came from (all).
	Source string
	// Problems are the first inputs skipped (up to 100), in order.
	Problems []Problem
	// Elapsed is how long this process ran.
	Elapsed time.Duration
	DryRun  bool
	// Checkpoint is the checkpoint file, when the run stopped before its end.
	Checkpoint string
}

// Rate is how many ids per second this process re-issued.
func (r *Result) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Reissued-r.Before.Reissued) / r.Elapsed.Seconds()
}

// Summary describes the result in a few lines, for the operator.
func (r *Result) Summary() string {
	var b strings.Builder
	verb := "re-issued"
	if r.DryRun {
		verb = "dry run: would re-issue"
	}
	fmt.Fprintf(&b, "%s: %s %d ids in %s (%.0f ids/s)", r.Run, verb, r.Reissued, r.Elapsed.Round(time.Millisecond), r.Rate())
	if r.Resumed {
		fmt.Fprintf(&b, ", %d of them by the earlier run this one resumed", r.Before.Reissued)
	}
	b.WriteString("\n")
	line := func(n int64, format string) {
		if n > 0 {
			fmt.Fprintf(&b, "  "+format+"\n", n)
		}
	}
	line(r.Invalid, "skipped invalid: %d")
	line(r.Duplicates, "duplicates dropped: %d")
	line(r.Tombstones, "tombstones skipped: %d")
	if strings.HasPrefix(r.Run, "dlq ") {
		line(r.Events, "dead-letter entries read: %d")
	} else {
		line(r.Events, "events read: %d")
	}
	line(r.Lookups, "lookup events resolved to their documents: %d")
	if r.DryRun {
		line(r.Deleted, "dead-letter entries that would be deleted: %d")
	} else {
		line(r.Deleted, "dead-letter entries deleted: %d")
	}
	line(r.Kept, "dead-letter entries kept: %d")
	return b.String()
}

// run is one re-issuing run of a command: it re-issues ids in chunks and
// moves its checkpoint after each chunk JetStream has stored.
type run struct {
	o        Options
	cp       Checkpoint
	before   Counts
	resumed  bool
	start    time.Time
	re       *Reissuer
	m        *Meter
	res      Result
	unsaved  int64
	saved    time.Time
	warned   bool
	stop     chan struct{}
	reported chan struct{}
}

// begin starts the run named key, or resumes it from its checkpoint (whose
// Position is then r.cp.Position and r.resumed is set). unit is what the
// progress counts.
func (e *Env) begin(def *projections.Definition, label, key, unit string, o Options) (*run, error) {
	if o.CheckpointEvery <= 0 {
		o.CheckpointEvery = 1000
	}
	if o.CheckpointInterval <= 0 {
		o.CheckpointInterval = 5 * time.Second
	}
	if o.Notes == nil {
		o.Notes = io.Discard
	}
	r := &run{o: o, start: time.Now(), saved: time.Now()}
	if o.Checkpoints != nil && !o.Restart {
		cp, err := o.Checkpoints.Load(key)
		if err != nil {
			return nil, err
		}
		if cp != nil {
			r.cp, r.before, r.resumed = *cp, cp.Counts, true
		}
	}
	if !r.resumed {
		r.cp = Checkpoint{Key: key, RunID: newRunID(), Started: time.Now().UTC()}
	}
	rate := o.Rate
	if o.DryRun {
		rate = -1 // nothing is published: no reason to wait
	}
	if def != nil {
		r.re = NewReissuer(e.JetStream, def, ReissueOptions{Rate: rate, DryRun: o.DryRun, RunID: r.cp.RunID})
	}
	before := r.before.Reissued
	if unit == "entries" {
		before = r.before.Events
	}
	r.m = newMeter(label, unit, before)
	r.res = Result{Run: label, Before: r.before, Resumed: r.resumed, DryRun: o.DryRun}
	if r.resumed {
		fmt.Fprintf(o.Notes, "resuming the run started %s (checkpoint saved %s, %s): %d ids already re-issued; add --restart to start over\n",
			r.cp.Started.Local().Format(time.DateTime), r.cp.Saved.Local().Format(time.DateTime), o.Checkpoints.Path(key), r.before.Reissued)
	}
	return r, nil
}

// show starts showing progress, with the total when it is known (< 0: not).
func (r *run) show(total int64) {
	r.m.setTotal(total)
	r.stop, r.reported = make(chan struct{}), make(chan struct{})
	if r.o.Progress == nil {
		close(r.reported)
		return
	}
	go func() {
		defer close(r.reported)
		r.o.Progress.Report(r.m, r.stop)
	}()
}

// chunk is how many ids are re-issued between two moves of the position:
// about a quarter of a second's worth, so progress and checkpoints follow
// closely.
func (r *run) chunk() int {
	if r.o.Rate < 0 || r.o.DryRun {
		return 512
	}
	rate := r.o.Rate
	if rate == 0 {
		rate = DefaultRate
	}
	return min(max(int(rate/4), 1), 512)
}

// reissue re-issues ids in chunks; once the first n are stored, the
// position is at(n). countIDs adds them to the progress.
func (r *run) reissue(ctx context.Context, ids []string, countIDs bool, at func(n int) Position) error {
	step := r.chunk()
	for i := 0; i < len(ids); i += step {
		j := min(i+step, len(ids))
		if err := r.re.Reissue(ctx, ids[i:j]); err != nil {
			return err
		}
		r.cp.Counts.Reissued += int64(j - i)
		if countIDs {
			r.m.add(int64(j - i))
		}
		r.moved(at(j), int64(j-i))
	}
	return nil
}

// moved records that the run reached pos, n ids after the last move, and
// writes the checkpoint when it is due.
func (r *run) moved(pos Position, n int64) {
	r.cp.Position = pos
	r.unsaved += n
	if r.unsaved >= r.o.CheckpointEvery || time.Since(r.saved) >= r.o.CheckpointInterval {
		r.save()
	}
}

// save writes the checkpoint (not in a dry run). A failure is reported once
// and does not stop the run: the re-issues are what matters.
func (r *run) save() {
	r.unsaved, r.saved = 0, time.Now()
	if r.o.DryRun || r.o.Checkpoints == nil {
		return
	}
	if err := r.o.Checkpoints.Save(&r.cp); err != nil && !r.warned {
		r.warned = true
		fmt.Fprintf(r.o.Notes, "warning: %v (the run goes on, but cannot be resumed from here)\n", err)
	}
}

// problem records a skipped input.
func (r *run) problem(p Problem) {
	if len(r.res.Problems) < maxProblems {
		r.res.Problems = append(r.res.Problems, p)
	}
}

// end finishes the run: on success it removes the checkpoint, otherwise it
// saves it, so the same command continues. An ended ctx is ErrInterrupted.
func (r *run) end(ctx context.Context, err error) (*Result, error) {
	if r.stop != nil {
		close(r.stop)
		<-r.reported
	}
	r.res.Counts = r.cp.Counts
	r.res.Elapsed = time.Since(r.start)
	key := r.cp.Key
	if err == nil {
		if !r.o.DryRun && r.o.Checkpoints != nil {
			if rerr := r.o.Checkpoints.Remove(key); rerr != nil {
				fmt.Fprintf(r.o.Notes, "warning: %v\n", rerr)
			}
		}
		return &r.res, nil
	}
	r.save()
	if !r.o.DryRun && r.o.Checkpoints != nil && !r.warned {
		r.res.Checkpoint = r.o.Checkpoints.Path(key)
	}
	if cause := interruption(ctx, err); cause != nil {
		return &r.res, fmt.Errorf("replay: %w after %d ids: %w", ErrInterrupted, r.res.Reissued, cause)
	}
	return &r.res, err
}

// interruption is why err means ctx ended (or was about to reach its
// deadline), or nil when err is another failure.
func interruption(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return cerr
	}
	if _, ok := ctx.Deadline(); ok && errors.Is(err, context.DeadlineExceeded) {
		return context.DeadlineExceeded
	}
	return nil
}
