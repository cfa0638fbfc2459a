// Package bleveindex lists and searches a projection's documents in an
// embedded bleve (scorch) index, so that a single machine runs without
// Elasticsearch: Index is the search index (sink.Index) of one projection,
// with the semantics of sink.Query that elasticindex.Index keeps.
//
// Format: one bleve document per id, holding the fields the projection
// indexes (see schema.go and values.go) and, in a stored field, the stored
// value of package sink (see sink.DecodeValue) that Get returns and the
// write guard compares; a tombstone holds that value only.
//
// Administration: Open creates the index in a directory of its own and
// locks "<dir>.lock" for one process. The index keeps the signature of the
// fields it was built for: when a definition changes what is indexed, Open
// re-indexes every document into "<dir>.reindex" and swaps the directories,
// undoing a swap a crash cut short on the next Open. There is nothing else
// to set up.
package bleveindex

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/blevesearch/bleve/v2"
	"github.com/blevesearch/bleve/v2/analysis"
	"github.com/blevesearch/bleve/v2/index/scorch"
	"github.com/blevesearch/bleve/v2/mapping"
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
	// Log receives what Open does on its own, such as a re-index, and
	// what Reindex does. Nil: nothing is logged.
	Log *slog.Logger
}

// Index is the embedded search index of one projection: a bleve (scorch)
// index in a directory of its own, which lets a single machine list and
// search without Elasticsearch. It keeps the semantics of sink.Query that
// elasticindex.Index keeps, and the write guard of every store.
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
// Close. Index is safe for concurrent use: searches and reads run in
// parallel with each other and with one Write at a time (or one Reindex,
// which Writes wait for).
type Index struct {
	// idx is the index in use. Reads take it under gen (see current); a
	// Write, or Reindex, holds the writer token instead: only Reindex
	// replaces idx, under both.
	idx bleve.Index
	gen sync.RWMutex
	// idxLost is set when a Reindex's swap failed and could not open any
	// index again: idx is closed already. Every later call fails (open and
	// reader check it: a closed scorch index gives a reader that panics),
	// and Close must not close it again (scorch panics).
	idxLost atomic.Bool
	lock    *bolt.DB // held open: its file lock keeps other processes out
	name    string
	dir     string       // of the index
	sig     []byte       // the fields' signature (see bleveSignature)
	log     *slog.Logger // what Reindex logs
	schema  *bleveSchema
	mapping mapping.IndexMapping // what documents are built with
	text    analysis.Analyzer    // of sink.Query.Text, as of the text fields

	writer chan struct{} // holds a token while one Write writes: the guard reads, then writes
	life   sync.RWMutex  // Close waits for every call under way
	closed bool          // under life

	queued  sync.Mutex
	waiting []*bleveWrite // Writes waiting for the writer, under queued
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
	sig := bleveSignature(o.Fields)
	b := &Index{lock: lock, name: o.Name, dir: dir, sig: sig, log: log, schema: newBleveSchema(o.Fields), mapping: m,
		text: m.AnalyzerNamed(bleveText), writer: make(chan struct{}, 1)}
	if err := recoverSwap(dir); err != nil {
		lock.Close()
		return nil, fmt.Errorf("sink: bleve %s: %w", o.Name, err)
	}
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
		idx, err = b.reindex(idx)
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

// errBleveClosed is what calls return after Close.
var errBleveClosed = errors.New("sink: bleve: closed")

// errIndexLost is what calls return after a Reindex whose swap could not
// open any index again.
var errIndexLost = errors.New("the index is closed after a failed re-index until it is opened again")

// Close waits for the calls under way, closes the index and releases it to
// other processes; every later call fails. Closing again does nothing.
func (b *Index) Close() error {
	b.life.Lock()
	defer b.life.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	var err error
	if !b.idxLost.Load() {
		err = b.idx.Close()
	}
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
	if b.idxLost.Load() {
		b.life.RUnlock()
		return nil, fmt.Errorf("sink: bleve %s: %w", b.name, errIndexLost)
	}
	return b.life.RUnlock, nil
}
