package bleveindex

import (
	"bytes"
	"context"
	"fmt"

	"github.com/blevesearch/bleve/v2"
	index "github.com/blevesearch/bleve_index_api"

	"github.com/readside/readside/internal/sink"
)

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
	idx, release := b.current()
	defer release()
	r, err := reader(idx)
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
