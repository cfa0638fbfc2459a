package bleveindex

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/blevesearch/bleve/v2"
	"github.com/blevesearch/bleve/v2/analysis"
	"github.com/blevesearch/bleve/v2/document"
	"github.com/blevesearch/bleve/v2/geo"
	"github.com/blevesearch/bleve/v2/index/scorch"
	"github.com/blevesearch/bleve/v2/mapping"
	"github.com/blevesearch/bleve/v2/numeric"
	"github.com/blevesearch/bleve/v2/search"
	"github.com/blevesearch/bleve/v2/search/query"
	"github.com/blevesearch/bleve/v2/search/searcher"
	index "github.com/blevesearch/bleve_index_api"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/projections"
)

// Options configures Open.
type Options struct {
	// Name is the projection's name, for messages and logs.
	Name string
	// Fields are the projection's fields: they decide what is indexed and
	// how, as projections.Definition.Mapping does for Elasticsearch.
	Fields []projections.Field
	// Log receives what Open does on its own, such as a re-index. Nil:
	// nothing is logged.
	Log *slog.Logger
}

// Bleve is the embedded search index of one projection: a bleve (scorch)
// index in a directory of its own, which lets a single machine list and
// search without Elasticsearch. It keeps the semantics of sink.Query that
// Elastic keeps, and the write guard of every store.
//
// Each id is one bleve document that holds, besides its indexed fields, a
// stored field with what Get returns (version, build time and body, in the
// layout of sink.DecodeValue). A tombstone is a document with that stored
// field only: searches keep to documents marked live, so it is never listed,
// and it keeps its version for the guard. Since the guard's state and the
// indexed fields are the same document, one bleve batch changes both at once:
// scorch applies a batch atomically and makes it durable before Batch
// returns.
//
// bleve's own key/value storage (SetInternal) would be atomic with a batch
// too, but scorch copies all of it in memory and rewrites all of it to disk
// on every batch, so writing n documents there costs O(n²) (20,000 in
// batches of 100: 45 s, against 1 s without). It only keeps the signature
// of the fields.
//
// One process at a time uses the index: Open locks "<dir>.lock" until
// Close. Bleve is safe for concurrent use: searches and reads run in
// parallel with each other and with one Write at a time.
type Index struct {
	idx     bleve.Index
	lock    *bolt.DB // held open: its file lock keeps other processes out
	name    string
	schema  *bleveSchema
	mapping mapping.IndexMapping // what documents are built with
	text    analysis.Analyzer    // of sink.Query.Text, as of the text fields

	writer chan struct{} // holds a token while one Write writes: the guard reads, then writes
	life   sync.RWMutex  // Close waits for every call under way
	closed bool          // under life

	queued  sync.Mutex
	waiting []*bleveWrite // Writes waiting for the writer, under queued
}

// bleveWrite is one Write waiting to be written, and its outcome.
type bleveWrite struct {
	docs []sink.Doc
	err  error
	done chan struct{} // closed when err is set
}

var _ sink.Index = (*Index)(nil)

// bleveSignatureKey is where the index keeps bleveSignature of the fields it
// was built for.
var bleveSignatureKey = []byte("readside/fields")

// bleveConfig is the scorch configuration: should another process hold the
// index despite the lock, wait at most a second for it.
func bleveConfig() map[string]any { return map[string]any{"bolt_timeout": "1s"} }

// bleveLockTimeout is how long Open waits for another process to
// release the index.
const bleveLockTimeout = time.Second

// reindexBatch is how many documents a re-index writes per batch.
const reindexBatch = 1000

// Open opens the index in dir, or creates it (and dir's parents) when
// dir is absent or empty; a non-empty dir that holds no bleve index is
// refused. A new index is built beside dir ("<dir>.reindex") and moved in
// once complete, so a creation cut short leaves nothing in dir.
//
// An index keeps the signature of the fields it was built for. When the
// fields differ in what is indexed (a field added, removed, retyped, or made
// searchable, filterable or sortable), Open re-indexes every document
// it holds into a fresh index beside dir ("<dir>.reindex"), then swaps the
// directories ("<dir>.old" for a moment), logging what it did; values that
// no longer fit their field are left out of the index, not the documents. A
// swap cut short by a crash is undone on the next open, which re-indexes
// again. When another process holds the index, Open fails after a
// second, saying so.
func Open(dir string, o Options) (*Index, error) {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir = filepath.Clean(dir)
	log = log.With("projection", o.Name, "index", dir)
	m, err := bleveMapping(o.Fields)
	if err != nil {
		return nil, fmt.Errorf("sink: bleve %s: mapping: %w", o.Name, err)
	}
	lock, err := lockBleve(dir)
	if err != nil {
		return nil, fmt.Errorf("sink: bleve %s: %w", o.Name, err)
	}
	b := &Index{lock: lock, name: o.Name, schema: newBleveSchema(o.Fields), mapping: m, text: m.AnalyzerNamed(bleveText),
		writer: make(chan struct{}, 1)}
	if err := recoverSwap(dir); err != nil {
		lock.Close()
		return nil, fmt.Errorf("sink: bleve %s: %w", o.Name, err)
	}
	sig := bleveSignature(o.Fields)
	idx, err := openBleveIndex(dir, m, sig)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("sink: bleve %s: %w", o.Name, err)
	}
	had, err := idx.GetInternal(bleveSignatureKey)
	switch {
	case err != nil:
		err = fmt.Errorf("read the fields' signature: %w", err)
	case !bytes.Equal(had, sig):
		log.Info("embedded search index: the projection's fields changed; re-indexing", "was", string(had), "now", string(sig))
		idx, err = b.reindex(idx, dir, m, sig, log)
	}
	if err != nil {
		if idx != nil {
			idx.Close()
		}
		lock.Close()
		return nil, fmt.Errorf("sink: bleve %s: %s: %w", o.Name, dir, err)
	}
	b.idx = idx
	return b, nil
}

// lockBleve creates dir's parents and locks "<dir>.lock" for this process:
// the lock guards the directories a re-index swaps, not only the index.
func lockBleve(dir string) (*bolt.DB, error) {
	if err := os.MkdirAll(filepath.Dir(dir), 0o750); err != nil {
		return nil, err
	}
	path := dir + ".lock"
	lock, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: bleveLockTimeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("%s: another process uses this index "+
			"(embedded stores belong to one process: stop the other one or give this one a data directory of its own): %w", dir, err)
	}
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return lock, nil
}

// openBleveIndex opens the index in dir, or creates it with m and the
// fields' signature sig.
func openBleveIndex(dir string, m mapping.IndexMapping, sig []byte) (idx bleve.Index, err error) {
	_, err = os.Stat(filepath.Join(dir, "index_meta.json"))
	switch {
	case err == nil:
		idx, err = bleve.OpenUsing(dir, bleveConfig())
	case errors.Is(err, fs.ErrNotExist):
		if entries, rerr := os.ReadDir(dir); rerr == nil && len(entries) > 0 {
			return nil, fmt.Errorf("%s holds no bleve index (no index_meta.json): move it away or choose another directory", dir)
		}
		if err = os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		idx, err = createBleveIndex(dir, m, sig)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	return idx, nil
}

// createBleveIndex creates an empty index with m and signature sig in dir,
// which does not exist. bleve writes index_meta.json first and the mapping
// last, and never opens an index that lacks its mapping; so the index is
// built beside dir and moved in once complete, and a creation cut short (a
// crash, a full disk) leaves only "<dir>.reindex", which the next open
// removes (see recoverSwap).
func createBleveIndex(dir string, m mapping.IndexMapping, sig []byte) (bleve.Index, error) {
	tmp := dir + ".reindex"
	fresh, err := bleve.NewUsing(tmp, m, scorch.Name, bleve.Config.DefaultKVStore, bleveConfig())
	if err == nil {
		err = fresh.SetInternal(bleveSignatureKey, sig)
		if cerr := fresh.Close(); err == nil {
			err = cerr
		}
	}
	if err == nil {
		err = os.Rename(tmp, dir)
	}
	if err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("create: %w", err)
	}
	return bleve.OpenUsing(dir, bleveConfig())
}

// recoverSwap finishes what a re-index cut short: when it stopped between
// moving dir away and moving the fresh index in, the old index goes back
// (Open re-indexes it again); leftovers, and an index whose creation
// was cut short, are removed.
func recoverSwap(dir string) error {
	old, fresh := dir+".old", dir+".reindex"
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if _, err := os.Stat(old); err == nil {
			if err := os.Rename(old, dir); err != nil {
				return fmt.Errorf("put back %s after an interrupted re-index: %w", dir, err)
			}
		}
	}
	for _, p := range []string{old, fresh} {
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("remove what an interrupted re-index left: %w", err)
		}
	}
	return nil
}

// reindex copies every document and tombstone of old, which it closes, into
// a fresh index with m beside dir, swaps the directories and opens the
// result.
func (b *Index) reindex(old bleve.Index, dir string, m mapping.IndexMapping, sig []byte, log *slog.Logger) (bleve.Index, error) {
	start := time.Now()
	tmp := dir + ".reindex"
	fresh, err := bleve.NewUsing(tmp, m, scorch.Name, bleve.Config.DefaultKVStore, bleveConfig())
	if err != nil {
		return old, fmt.Errorf("re-index: create %s: %w", tmp, err)
	}
	n, dropped, err := b.copyDocs(old, fresh)
	if err == nil {
		err = fresh.SetInternal(bleveSignatureKey, sig) // last: an index without it is re-indexed again
	}
	if cerr := fresh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.RemoveAll(tmp)
		return old, fmt.Errorf("re-index: %w", err)
	}
	if err := old.Close(); err != nil {
		return nil, fmt.Errorf("re-index: close the old index: %w", err)
	}
	if err := os.Rename(dir, dir+".old"); err != nil {
		return nil, fmt.Errorf("re-index: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, fmt.Errorf("re-index: %w (the next open puts the old index back)", err)
	}
	if err := os.RemoveAll(dir + ".old"); err != nil {
		log.Warn("embedded search index: re-indexed, but the old index stays behind", "err", err)
	}
	if dropped > 0 {
		log.Warn("embedded search index: values that do not fit their field's new type were left out of the index", "values", dropped)
	}
	log.Info("embedded search index: re-indexed", "docs", n, "took", time.Since(start).Round(time.Millisecond))
	idx, err := bleve.OpenUsing(dir, bleveConfig())
	if err != nil {
		return nil, fmt.Errorf("re-index: open the new index: %w", err)
	}
	return idx, nil
}

// copyDocs writes every document and tombstone of from into to, with to's
// fields, and reports how many, and how many values it left out.
func (b *Index) copyDocs(from, to bleve.Index) (n, dropped int, err error) {
	r, err := reader(from)
	if err != nil {
		return 0, 0, err
	}
	defer r.Close()
	all, err := r.DocIDReaderAll()
	if err != nil {
		return 0, 0, err
	}
	defer all.Close()
	batch := to.NewBatch()
	for {
		iid, err := all.Next()
		if err != nil {
			return n, dropped, err
		}
		if iid == nil {
			break
		}
		id, err := r.ExternalID(iid)
		if err != nil {
			return n, dropped, err
		}
		value, err := storedValue(r, id)
		if err != nil {
			return n, dropped, err
		}
		if value == nil {
			continue // bleve's own documents, such as a nested one: not ours
		}
		s, err := sink.DecodeValue(value)
		if err != nil {
			return n, dropped, fmt.Errorf("document %q: %w", id, err)
		}
		doc, left, err := b.document(id, value, s.Deleted, s.Body, true)
		if err != nil {
			return n, dropped, fmt.Errorf("document %q: %w", id, err)
		}
		if err := batch.IndexAdvanced(doc); err != nil {
			return n, dropped, fmt.Errorf("document %q: %w", id, err)
		}
		n, dropped = n+1, dropped+left
		if batch.Size() >= reindexBatch {
			if err := to.Batch(batch); err != nil {
				return n, dropped, err
			}
			batch.Reset()
		}
	}
	if batch.Size() > 0 {
		err = to.Batch(batch)
	}
	return n, dropped, err
}

// errBleveClosed is what calls return after Close.
var errBleveClosed = errors.New("sink: bleve: closed")

// Close waits for the calls under way, closes the index and releases it to
// other processes; every later call fails. Closing again does nothing.
func (b *Index) Close() error {
	b.life.Lock()
	defer b.life.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	err := b.idx.Close()
	if lerr := b.lock.Close(); err == nil {
		err = lerr
	}
	if err != nil {
		return fmt.Errorf("sink: bleve %s: close: %w", b.name, err)
	}
	return nil
}

// open holds off Close until the returned func is called; it fails once
// closed.
func (b *Index) open() (done func(), err error) {
	b.life.RLock()
	if b.closed {
		b.life.RUnlock()
		return nil, fmt.Errorf("sink: bleve %s: %w", b.name, errBleveClosed)
	}
	return b.life.RUnlock, nil
}

// Write applies docs in one bleve batch, under the write guard: a doc older
// than the stored version of its id is dropped; an equal or newer one, or a
// tombstone, replaces it. Items with the same id are applied in order. A
// tombstone takes the document out of every search and keeps its version.
// The batch is durable when Write returns.
//
// Writes that come while another is being written wait, and the next of
// them writes all that waited in one bleve batch (a group commit): each
// batch costs bleve a segment, its files and their fsyncs, whatever its
// size, so the projector's concurrent batches share that cost.
//
// Write returns nil; a *sink.BatchError whose items are permanent (an invalid
// doc, a body that is not a JSON object, or a value that does not fit its
// field's type, which Elasticsearch refuses too) while every other item was
// written; or another error when the call failed as a whole (ctx done, the
// index closed or failing), and nothing was written.
func (b *Index) Write(ctx context.Context, docs []sink.Doc) error {
	if len(docs) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	done, err := b.open()
	if err != nil {
		return err
	}
	defer done()
	w := &bleveWrite{docs: docs, done: make(chan struct{})}
	b.queued.Lock()
	b.waiting = append(b.waiting, w)
	b.queued.Unlock()
	// Wait for the writer's turn, or for a writer to take w along.
	select {
	case <-w.done:
		return w.err
	case b.writer <- struct{}{}:
	}
	defer func() { <-b.writer }()
	select {
	case <-w.done: // taken along while the turn came
		return w.err
	default:
	}
	b.queued.Lock()
	ws := b.waiting // w among them: it was queued before the turn was taken
	b.waiting = nil
	b.queued.Unlock()
	b.writeAll(ws)
	return w.err
}

// writeAll writes ws in one bleve batch, in order, and settles each.
func (b *Index) writeAll(ws []*bleveWrite) {
	settle := func(err error) {
		for _, w := range ws {
			if w.err == nil {
				w.err = err
			}
			close(w.done)
		}
	}
	r, err := reader(b.idx)
	if err != nil {
		settle(fmt.Errorf("sink: bleve %s: write: %w", b.name, err))
		return
	}
	defer r.Close()
	failed := make([]sink.Failures, len(ws))
	batch := b.idx.NewBatch()
	written := map[string]sink.Stored{} // the version and kind this batch writes, by id
	for k, w := range ws {
		for i := range w.docs {
			d := &w.docs[i]
			if err := d.Check(); err != nil {
				failed[k].Add(i, err)
				continue
			}
			cur, ok := written[d.ID]
			if !ok {
				value, err := storedValue(r, d.ID)
				if err != nil {
					settle(fmt.Errorf("sink: bleve %s: write: %w", b.name, err))
					return
				}
				if s, err := sink.DecodeValue(value); value != nil && err == nil {
					cur, ok = sink.Stored{Version: s.Version, Deleted: s.Deleted}, true
				} // a value that does not decode is overwritten, as in Redis
			}
			if ok && cur.Outranks(d) {
				continue // stale
			}
			doc, _, err := b.document(d.ID, sink.AppendValue(nil, d), d.Deleted, d.Body, false)
			if err == nil {
				err = batch.IndexAdvanced(doc)
			}
			if err != nil {
				failed[k].Add(i, &sink.PermanentError{Err: fmt.Errorf("sink: bleve %s: doc %q: %w", b.name, d.ID, err)})
				continue
			}
			written[d.ID] = sink.Stored{Version: d.Version, Deleted: d.Deleted}
		}
	}
	if batch.Size() > 0 {
		if err := b.idx.Batch(batch); err != nil {
			settle(fmt.Errorf("sink: bleve %s: write: %w", b.name, err))
			return
		}
	}
	for k, w := range ws {
		w.err = failed[k].Err()
	}
	settle(nil)
}

// document is the bleve document of id: value stored for Get, and unless
// deleted, the indexed fields of body and the live mark. It reports how many
// values it left out when lenient (see bleveSchema.data).
func (b *Index) document(id string, value []byte, deleted bool, body []byte, lenient bool) (*document.Document, int, error) {
	doc := document.NewDocument(id)
	dropped := 0
	if !deleted {
		data, n, err := b.schema.data(body, lenient)
		switch {
		case err != nil && lenient:
			dropped++ // accepted once: keep the document, searchable by nothing but the list
		case err != nil:
			return nil, 0, err
		default:
			dropped = n
			if err := b.mapping.MapDocument(doc, data); err != nil {
				return nil, 0, err
			}
		}
		doc.AddField(document.NewBooleanFieldWithIndexingOptions(bleveLive, nil, true, index.IndexField))
	}
	doc.AddField(document.NewTextFieldWithIndexingOptions(bleveValue, nil, value, index.StoreField))
	return doc, dropped, nil
}

// reader opens a snapshot of idx; the caller closes it.
func reader(idx bleve.Index) (index.IndexReader, error) {
	adv, err := idx.Advanced()
	if err != nil {
		return nil, err
	}
	return adv.Reader()
}

// storedValue returns what the document id stores for Get, nil when there
// is no such document.
func storedValue(r index.IndexReader, id string) ([]byte, error) {
	doc, err := r.Document(id)
	if err != nil || doc == nil {
		return nil, err
	}
	var value []byte
	doc.VisitFields(func(f index.Field) {
		if f.Name() == bleveValue {
			value = bytes.Clone(f.Value())
		}
	})
	return value, nil
}

// Get returns what is stored for id: a document, a tombstone (Deleted set,
// nil Body), or sink.ErrNotFound. Body aliases no buffer of the index.
func (b *Index) Get(ctx context.Context, id string) (sink.Stored, error) {
	if err := ctx.Err(); err != nil {
		return sink.Stored{}, err
	}
	done, err := b.open()
	if err != nil {
		return sink.Stored{}, err
	}
	defer done()
	r, err := reader(b.idx)
	if err != nil {
		return sink.Stored{}, fmt.Errorf("sink: bleve %s: get %q: %w", b.name, id, err)
	}
	defer r.Close()
	value, err := storedValue(r, id)
	if err != nil {
		return sink.Stored{}, fmt.Errorf("sink: bleve %s: get %q: %w", b.name, id, err)
	}
	if value == nil {
		return sink.Stored{}, sink.ErrNotFound
	}
	s, err := sink.DecodeValue(value)
	if err != nil {
		return sink.Stored{}, fmt.Errorf("sink: bleve %s: get %q: %w", b.name, id, err)
	}
	return s, nil
}

// Refresh does nothing: a write is searchable as soon as Write returns.
func (b *Index) Refresh(ctx context.Context) error { return nil }

// Search answers one page of q (see sink.Query for the semantics), searching
// in parallel with writes. Elasticsearch's behaviour is kept where bleve
// differs: text is analysed without stop words; a text field's filters and
// sorts use its whole value; a date bound rounds its missing parts as
// Elasticsearch does; distances are Elasticsearch's (haversine on a sphere of
// the Earth's mean radius) for both Within and the distance sort, over every
// point of a document; a list sorts by its smallest value ascending, its
// largest descending.
//
// sink.Page.After holds the last hit's sort values, base64-encoded (bleve's
// are bytes); a query with a malformed After, or one the index cannot answer
// (an unknown field, a filter or sort the field does not allow, a value of
// the wrong type, Near missing for Within or the distance sort), wraps
// sink.ErrBadQuery. Any other error is the index failing, or ctx done: a
// search gives up soon after ctx is done, since bleve checks ctx as it
// collects hits, and what it does before, building the searchers, takes work
// bounded by the index, not by the filters' values (see trieRange).
func (b *Index) Search(ctx context.Context, q sink.Query) (sink.Page, error) {
	if err := ctx.Err(); err != nil {
		return sink.Page{}, err
	}
	done, err := b.open()
	if err != nil {
		return sink.Page{}, err
	}
	defer done()
	req, err := b.request(q)
	if err != nil {
		return sink.Page{}, fmt.Errorf("sink: bleve %s: %w", b.name, err)
	}
	if req == nil {
		return sink.Page{IDs: []string{}}, nil
	}
	res, err := b.idx.SearchInContext(ctx, req)
	if err != nil {
		return sink.Page{}, fmt.Errorf("sink: bleve %s: search: %w", b.name, err)
	}
	p := sink.Page{IDs: make([]string, 0, len(res.Hits))}
	for _, h := range res.Hits {
		p.IDs = append(p.IDs, h.ID)
	}
	if n := len(res.Hits); n > 0 {
		p.After = encodeAfter(req.Sort, res.Hits[n-1])
	}
	return p, nil
}

// badQuery is a sink.ErrBadQuery with why.
func badQuery(format string, args ...any) error {
	return fmt.Errorf("%w: %s", sink.ErrBadQuery, fmt.Sprintf(format, args...))
}

// request is the bleve request of q; nil when q.Text has no word, which
// matches nothing (as in Elasticsearch).
func (b *Index) request(q sink.Query) (*bleve.SearchRequest, error) {
	if q.Limit <= 0 {
		return nil, badQuery("limit %d: must be positive", q.Limit)
	}
	if q.Near != nil && (b.schema.geo == "" || math.Abs(q.Near.Lat) > 90 || math.Abs(q.Near.Lon) > 180) {
		if b.schema.geo == "" {
			return nil, badQuery("near: the projection has no geo_point field")
		}
		return nil, badQuery("near %g,%g: not a point on Earth", q.Near.Lat, q.Near.Lon)
	}
	filters := []query.Query{live()}
	for _, f := range q.Filters {
		fq, err := b.filter(f)
		if err != nil {
			return nil, err
		}
		filters = append(filters, fq)
	}
	switch {
	case q.Within < 0 || math.IsNaN(q.Within) || math.IsInf(q.Within, 0):
		return nil, badQuery("within %g: not a distance", q.Within)
	case q.Within > 0 && q.Near == nil:
		return nil, badQuery("within needs near")
	case q.Within > 0:
		filters = append(filters, &withinQuery{field: b.schema.geo, at: *q.Near, metres: q.Within, array: b.schema.geoArray})
	}
	order, scored, err := b.sortOrder(q)
	if err != nil {
		return nil, err
	}
	var after []string
	if q.After != nil {
		if after, err = decodeAfter(order, q.After); err != nil {
			return nil, err
		}
	}
	// Filters never score, as in Elasticsearch's filter context: with text,
	// they narrow its matches; without, they are the query when nothing is
	// scored, and filter a constant score otherwise.
	var bq query.Query = query.NewConjunctionQuery(filters)
	switch {
	case q.Text != "":
		if len(b.schema.searchable) == 0 {
			return nil, badQuery("text: the projection has no searchable field")
		}
		words := b.words(q.Text)
		if len(words) == 0 {
			return nil, nil
		}
		must := query.NewBooleanQuery([]query.Query{textQuery(words, b.schema.searchable)}, nil, nil)
		must.AddFilter(bq)
		bq = must
	case scored:
		all := query.NewBooleanQuery(nil, nil, nil)
		all.AddFilter(bq)
		bq = all
	}
	req := bleve.NewSearchRequestOptions(bq, q.Limit, 0, false)
	req.SortByCustom(order)
	req.SearchAfter = after
	if !scored {
		req.Score = bleve.ScoreNone
	}
	return req, nil
}

// live keeps documents, leaving tombstones out.
func live() query.Query {
	q := query.NewBoolFieldQuery(true)
	q.SetField(bleveLive)
	return q
}

// words are the terms of text, analysed as the text fields are.
func (b *Index) words(text string) []string {
	tokens := b.text.Analyze([]byte(text))
	words := make([]string, 0, len(tokens))
	for _, t := range tokens {
		words = append(words, string(t.Term))
	}
	return words
}

// textQuery is Elasticsearch's bool_prefix multi_match with operator "and":
// in some field, every word but the last as a term, and the last as a
// prefix.
func textQuery(words []string, fields []string) query.Query {
	alts := make([]query.Query, 0, len(fields))
	for _, f := range fields {
		all := make([]query.Query, 0, len(words))
		for i, w := range words {
			if i == len(words)-1 {
				p := query.NewPrefixQuery(w)
				p.SetField(f)
				all = append(all, p)
			} else {
				t := query.NewTermQuery(w)
				t.SetField(f)
				all = append(all, t)
			}
		}
		if len(all) == 1 {
			alts = append(alts, all[0])
		} else {
			alts = append(alts, query.NewConjunctionQuery(all))
		}
	}
	if len(alts) == 1 {
		return alts[0]
	}
	return query.NewDisjunctionQuery(alts)
}

// ranged reports whether a field of type t takes range filters.
func ranged(t projections.FieldType) bool {
	return t == projections.Integer || t == projections.Float || t == projections.Date
}

// filter is the query of one Filter: the field equals one of the values,
// or compares with the first.
func (b *Index) filter(f sink.Filter) (query.Query, error) {
	fd, ok := b.schema.fields[f.Field]
	switch {
	case !ok:
		return nil, badQuery("filter on %q: no such field", f.Field)
	case !fd.Filter || fd.Type == projections.Object || fd.Type == projections.GeoPoint:
		return nil, badQuery("filter on %q: the field is not filterable", f.Field)
	case len(f.Values) == 0:
		return nil, badQuery("filter on %q: no value", f.Field)
	}
	switch f.Op {
	case "":
	case "gte", "gt", "lte", "lt":
		if !ranged(fd.Type) {
			return nil, badQuery("filter %s.%s: ranges apply to integer, float and date fields", f.Field, f.Op)
		}
	default:
		return nil, badQuery("filter %s.%s: unknown operator", f.Field, f.Op)
	}
	field := f.Field
	if fd.Type == projections.Text {
		field += rawSuffix
	}
	values := f.Values
	if f.Op != "" {
		values = values[:1]
	}
	alts := make([]query.Query, 0, len(values))
	for _, v := range values {
		var fq query.Query
		switch fd.Type {
		case projections.Keyword, projections.Text:
			s, ok := v.(string)
			if !ok {
				return nil, badQuery("filter on %q: %v is not a string", f.Field, v)
			}
			t := query.NewTermQuery(s)
			t.SetField(field)
			fq = t
		case projections.Boolean:
			x, ok := v.(bool)
			if !ok {
				return nil, badQuery("filter on %q: %v is not true or false", f.Field, v)
			}
			t := query.NewBoolFieldQuery(x)
			t.SetField(field)
			fq = t
		case projections.Integer:
			_, text := v.(string) // a document may hold "12"; a filter holds numbers
			n, ok := intOf(v)
			if !ok || text {
				return nil, badQuery("filter on %q: %v is not an integer", f.Field, v)
			}
			fq = intRange(bleveIntPrefix+f.Field, f.Op, n)
		case projections.Float:
			x, ok := sink.FilterNumber(v)
			if !ok {
				return nil, badQuery("filter on %q: %v is not a number", f.Field, v)
			}
			fq = numberRange(field, f.Op, x)
		case projections.Date:
			s, ok := v.(string)
			if !ok {
				return nil, badQuery("filter on %q: %v is not a date", f.Field, v)
			}
			first, last, err := dateSpan(s)
			if err != nil {
				return nil, badQuery("filter on %q: %v", f.Field, err)
			}
			fq = dateRange(field, f.Op, first, last)
		}
		alts = append(alts, fq)
	}
	if len(alts) == 1 {
		return alts[0], nil
	}
	return query.NewDisjunctionQuery(alts), nil
}

// numberRange compares a numeric field with x: equality for op "". Both
// zeros are one value, as numbers compare: bleve orders -0 just before +0,
// and Elasticsearch reads a document's -0 as 0 but its -0.0 as -0.0, so
// only a filter that counts them as one keeps the engines alike (see
// bothZeros).
func numberRange(field, op string, x float64) query.Query {
	low, high := numeric.Float64ToInt64(x), numeric.Float64ToInt64(x)
	if x == 0 {
		low, high = numeric.Float64ToInt64(math.Copysign(0, -1)), numeric.Float64ToInt64(0)
	}
	// x is finite, so high+1 and low-1 stay within int64; the open ends
	// hold only infinities and NaNs besides, which are never indexed.
	switch op {
	case "":
		return &trieRange{field: field, min: low, max: high}
	case "gte":
		return &trieRange{field: field, min: low, max: math.MaxInt64}
	case "gt":
		return &trieRange{field: field, min: high + 1, max: math.MaxInt64}
	case "lte":
		return &trieRange{field: field, min: math.MinInt64, max: high}
	default: // "lt"
		return &trieRange{field: field, min: math.MinInt64, max: low - 1}
	}
}

// intRange compares an integer field's exact copy (see intTerm) with n:
// equality for op "".
func intRange(field, op string, n int64) query.Query {
	if op == "" {
		t := query.NewTermQuery(intTerm(n))
		t.SetField(field)
		return t
	}
	yes, no := true, false
	var q *query.TermRangeQuery
	switch op {
	case "gte":
		q = query.NewTermRangeInclusiveQuery(intTerm(n), "", &yes, nil)
	case "gt":
		q = query.NewTermRangeInclusiveQuery(intTerm(n), "", &no, nil)
	case "lte":
		q = query.NewTermRangeInclusiveQuery("", intTerm(n), nil, &yes)
	default: // "lt"
		q = query.NewTermRangeInclusiveQuery("", intTerm(n), nil, &no)
	}
	q.SetField(field)
	return q
}

// dateRange compares a date field with the span first..last of a filter's
// value (see dateSpan): within it for op "".
func dateRange(field, op string, first, last time.Time) query.Query {
	var from, to *time.Time
	fromIn, toIn := true, true
	switch op {
	case "":
		from, to = &first, &last
	case "gte":
		from = &first
	case "gt":
		from, fromIn = &last, false
	case "lte":
		to = &last
	default: // "lt"
		to, toIn = &first, false
	}
	// Bounds beyond the dates bleve indexes (docDate leaves those out) are
	// open, or match nothing. Open means every int64 of nanoseconds: the
	// dates bleve indexes span them all. An exclusive bound on the last
	// nanosecond matches nothing, and does not wrap.
	r := &trieRange{field: field, min: math.MinInt64, max: math.MaxInt64}
	if from != nil {
		if from.After(bleveMaxTime) || (!fromIn && from.Equal(bleveMaxTime)) {
			return query.NewMatchNoneQuery()
		}
		if !from.Before(bleveMinTime) {
			r.min = from.UnixNano()
			if !fromIn {
				r.min++
			}
		}
	}
	if to != nil {
		if to.Before(bleveMinTime) || (!toIn && to.Equal(bleveMinTime)) {
			return query.NewMatchNoneQuery()
		}
		if !to.After(bleveMaxTime) {
			r.max = to.UnixNano()
			if !toIn {
				r.max--
			}
		}
	}
	return r
}

// trieRange keeps documents with a value of a numeric or date field in
// min..max (inclusive), both in bleve's int64 order of numbers
// (numeric.Float64ToInt64) or dates (Unix nanoseconds).
//
// It stands in for bleve's NumericRangeQuery, whose searcher can take
// hours: it covers the range with blocks of the trie bleve indexes (a value
// shifted right by 0, 4, ..., 60 bits) as it should, but lists the terms
// of a block by adding one to the last byte of a term, with carry. A term
// holds 7 bits a byte, so between two neighbouring values whose 7-bit
// digits roll over (0x7f 0x7f ... to 0x00 0x00 ...), it steps through
// every byte string in between, 2^(8k) of them for k bytes rolling over:
// about 3.6e16 dictionary lookups for lte -MaxFloat64 (the open lower end,
// -Inf, and -MaxFloat64 are neighbours across such a roll-over), and as
// many as 2e9 for the span of a second such as 2059-01-19T23:56:07Z. It
// checks no context meanwhile, and leaves the search's goroutine busy
// after the caller gives up.
//
// trieRange lists the same blocks value by value instead, so one range is
// at most 16 levels of 30 terms, each looked up once in the dictionary:
// bounded work for any bounds.
type trieRange struct {
	field    string
	min, max int64
}

// trieStep is the precision step bleve indexes numbers and dates with
// (document.DefaultPrecisionStep, document.DefaultDateTimePrecisionStep).
const trieStep = 4

func (q *trieRange) Searcher(ctx context.Context, r index.IndexReader, m mapping.IndexMapping, o search.SearcherOptions) (search.Searcher, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	keep := func([]byte) bool { return true } // a term searcher finds nothing for a term not indexed
	if rc, ok := r.(index.IndexReaderContains); ok {
		dict, err := rc.FieldDictContains(q.field)
		if err != nil {
			return nil, err
		}
		if d, ok := dict.(index.FieldDict); ok {
			defer d.Close()
		}
		keep = func(term []byte) bool {
			found, err := dict.Contains(term)
			return err == nil && found
		}
	}
	var terms [][]byte
	trieBlocks(q.min, q.max, func(v int64, shift uint) {
		if t := numeric.MustNewPrefixCodedInt64(v, shift); keep(t) {
			terms = append(terms, t)
		}
	})
	// Even without terms, a multi-term searcher rather than a match-none one,
	// as bleve's numeric range searcher does.
	return searcher.NewMultiTermSearcherBytes(ctx, r, terms, q.field, 1, o, true)
}

// trieBlocks calls block for each block of the trie that covers min..max
// (inclusive) exactly, finest first: a block is the values v..v+2^shift-1,
// v a multiple of 2^shift, and is indexed as one term. It works on values
// with their sign bit flipped, where the order of int64s is the order of
// uint64s, as bleve's terms do.
func trieBlocks(min, max int64, block func(v int64, shift uint)) {
	if min > max {
		return
	}
	const sign = 1 << 63
	lo, hi := uint64(min)^sign, uint64(max)^sign // lo..hi in units of 2^shift
	const mask = 1<<trieStep - 1
	emit := func(from, to uint64, shift uint) {
		for u := from; ; u++ {
			block(int64(u<<shift^sign), shift)
			if u == to {
				return
			}
		}
	}
	for shift := uint(0); ; shift += trieStep {
		loBlock, hiBlock := lo>>trieStep, hi>>trieStep // in units of 2^(shift+trieStep)
		if loBlock == hiBlock || shift+trieStep >= 64 {
			emit(lo, hi, shift)
			return
		}
		// The values that do not fill a block of the next level: at most
		// 15 at either end; hiBlock > loBlock >= 0, so neither wraps.
		if lo&mask != 0 {
			emit(lo, lo|mask, shift)
			loBlock++
		}
		if hi&mask != mask {
			emit(hi&^mask, hi, shift)
			hiBlock--
		}
		if loBlock > hiBlock {
			return
		}
		lo, hi = loBlock, hiBlock
	}
}

// sortOrder is q's sort, then the id ascending; scored reports whether it
// needs scores.
func (b *Index) sortOrder(q sink.Query) (order search.SortOrder, scored bool, err error) {
	order = make(search.SortOrder, 0, len(q.Sort)+1)
	for _, k := range q.Sort {
		switch k.Field {
		case sink.SortDistance:
			if q.Near == nil {
				return nil, false, badQuery("sort by distance needs near")
			}
			order = append(order, &geoSort{field: b.schema.geo, at: *q.Near, desc: k.Desc})
		case sink.SortRelevance:
			order = append(order, &search.SortScore{Desc: k.Desc})
			scored = true
		default:
			f, ok := b.schema.fields[k.Field]
			if !ok || !f.Sort || f.Type == projections.Object || f.Type == projections.GeoPoint {
				return nil, false, badQuery("sort by %q: not a sortable field", k.Field)
			}
			sf := &search.SortField{Field: k.Field, Desc: k.Desc, Missing: search.SortFieldMissingLast,
				Type: search.SortFieldAsString, Mode: search.SortFieldMin}
			if k.Desc {
				sf.Mode = search.SortFieldMax
			}
			switch f.Type {
			case projections.Text:
				sf.Field += rawSuffix
			case projections.Integer:
				sf.Field = bleveIntPrefix + k.Field // exact, in byte order
			case projections.Float, projections.Date:
				// Auto keeps the full-precision term of a number, and
				// leaves SearchAfter's values as they are (AsNumber would
				// parse them as decimals).
				sf.Type = search.SortFieldAuto
			}
			order = append(order, sf)
		}
	}
	return append(order, &search.SortDocID{}), scored, nil
}

// encodeAfter is the sink.Page.After of hit: its sort values as SearchAfter
// takes them (a score as a decimal), base64-encoded so that the bytes of
// bleve's numbers survive JSON.
func encodeAfter(order search.SortOrder, hit *search.DocumentMatch) []any {
	after := make([]any, len(order))
	for i, s := range order {
		v := hit.Sort[i]
		if _, ok := s.(*search.SortScore); ok {
			v = strconv.FormatFloat(hit.Score, 'g', -1, 64)
		}
		after[i] = base64.RawURLEncoding.EncodeToString([]byte(v))
	}
	return after
}

// decodeAfter reads a sink.Page.After of a query with this order back into
// SearchAfter values, checking that each can be one.
func decodeAfter(order search.SortOrder, after []any) ([]string, error) {
	if len(after) != len(order) {
		return nil, badQuery("malformed After: %d values for %d sort keys", len(after), len(order))
	}
	out := make([]string, len(after))
	for i, a := range after {
		s, ok := a.(string)
		if !ok {
			return nil, badQuery("malformed After: value %d is not a string", i)
		}
		raw, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			return nil, badQuery("malformed After: value %d: %v", i, err)
		}
		v := string(raw)
		switch o := order[i].(type) {
		case *search.SortScore:
			x, err := strconv.ParseFloat(v, 64)
			ok = err == nil && !math.IsNaN(x)
		case *geoSort:
			ok = prefixCoded(v)
		case *search.SortField:
			if o.Type == search.SortFieldAuto {
				ok = prefixCoded(v) || v == search.HighTerm || v == search.LowTerm
			} else {
				ok = utf8.ValidString(v)
			}
		default:
			ok = utf8.ValidString(v)
		}
		if !ok {
			return nil, badQuery("malformed After: value %d does not fit its sort key", i)
		}
		out[i] = v
	}
	return out, nil
}

// prefixCoded reports whether v is a full-precision bleve number.
func prefixCoded(v string) bool {
	valid, shift := numeric.ValidPrefixCodedTerm(v)
	return valid && shift == 0
}

// earthRadius is the Earth's mean radius in metres, which Elasticsearch's
// distances use.
const earthRadius = 6371008.7714

// arcDistance is the haversine distance in metres, as Elasticsearch's
// default (arc) distance computes it.
func arcDistance(a sink.LatLon, lat, lon float64) float64 {
	rad := math.Pi / 180
	h1 := 1 - math.Cos((a.Lat-lat)*rad)
	h2 := 1 - math.Cos((a.Lon-lon)*rad)
	h := h1 + math.Cos(a.Lat*rad)*math.Cos(lat*rad)*h2
	return earthRadius * 2 * math.Asin(math.Min(1, math.Sqrt(h*0.5)))
}

// geoTerm reads a point from a geo_point field's term: only its
// full-precision term holds one.
func geoTerm(term []byte) (lat, lon float64, ok bool) {
	if valid, shift := numeric.ValidPrefixCodedTermBytes(term); !valid || shift != 0 {
		return 0, 0, false
	}
	h, err := numeric.PrefixCoded(term).Int64()
	if err != nil {
		return 0, 0, false
	}
	return geo.MortonUnhashLat(uint64(h)), geo.MortonUnhashLon(uint64(h)), true
}

// geoSort orders by the distance from a point in metres: by a document's
// nearest point ascending, its farthest descending, documents without one
// last either way. Unlike bleve's SortGeoDistance, its values go back into
// SearchAfter as they came out: bleve reads those of its own type as
// decimal numbers, which cannot stand for a missing point.
type geoSort struct {
	field string
	at    sink.LatLon
	desc  bool
	terms [][]byte
	buf   []byte
}

// noPoint is the sort value of a document without a point: infinitely far,
// as Elasticsearch sorts it, so last nearest first and first farthest first.
var noPoint = string(numeric.MustNewPrefixCodedInt64(math.MaxInt64, 0))

func (s *geoSort) UpdateVisitor(field string, term []byte) {
	if field == s.field {
		s.terms = append(s.terms, term)
	}
}

func (s *geoSort) Value(*search.DocumentMatch) string {
	best, found := 0.0, false
	for _, t := range s.terms {
		lat, lon, ok := geoTerm(t)
		if !ok {
			continue
		}
		d := arcDistance(s.at, lat, lon)
		if !found || (d < best) != s.desc {
			best, found = d, true
		}
	}
	s.terms = s.terms[:0]
	if !found {
		return noPoint
	}
	s.buf = numeric.MustNewPrefixCodedInt64Prealloc(numeric.Float64ToInt64(best), 0, s.buf)
	return string(s.buf)
}

func (s *geoSort) DecodeValue(v string) string { return v }
func (s *geoSort) Descending() bool            { return s.desc }
func (s *geoSort) RequiresDocID() bool         { return false }
func (s *geoSort) RequiresScoring() bool       { return false }
func (s *geoSort) RequiresFields() []string    { return []string{s.field} }
func (s *geoSort) Reverse()                    { s.desc = !s.desc }

func (s *geoSort) Copy() search.SearchSort {
	c := *s
	c.terms, c.buf = nil, nil
	return &c
}

// withinQuery keeps documents with a point of field at most metres from
// at, by Elasticsearch's distance.
type withinQuery struct {
	field  string
	at     sink.LatLon
	metres float64
	array  bool // the field may hold several points
}

// Searcher finds candidates with bleve's distance searcher, asked a little
// wider since its distance is not Elasticsearch's, then checks each. A
// field that may hold several points is checked in every document instead:
// bleve's searcher only looks at one point of each.
func (q *withinQuery) Searcher(ctx context.Context, r index.IndexReader, m mapping.IndexMapping, o search.SearcherOptions) (search.Searcher, error) {
	var candidates search.Searcher
	var err error
	if q.array {
		candidates, err = searcher.NewMatchAllSearcher(ctx, r, 1, o)
	} else {
		candidates, err = searcher.NewGeoPointDistanceSearcher(ctx, r, q.at.Lon, q.at.Lat, q.metres*1.01+1, q.field, 1, o)
	}
	if err != nil {
		return nil, err
	}
	dv, err := r.DocValueReader([]string{q.field})
	if err != nil {
		candidates.Close()
		return nil, err
	}
	within := false
	visit := func(_ string, term []byte) {
		if lat, lon, ok := geoTerm(term); ok && !within {
			within = arcDistance(q.at, lat, lon) <= q.metres
		}
	}
	return searcher.NewFilteringSearcher(ctx, candidates, func(_ *search.SearchContext, d *search.DocumentMatch) bool {
		within = false
		return dv.VisitDocValues(d.IndexInternalID, visit) == nil && within
	}), nil
}
