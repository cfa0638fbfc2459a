package bleveindex

import (
	"context"
	"fmt"

	"github.com/blevesearch/bleve/v2"
	index "github.com/blevesearch/bleve_index_api"

	"github.com/readside/readside/internal/sink"
)

// reader opens a snapshot of idx; the caller closes it. It fails once a
// Reindex lost the index (see Index.idxLost): scorch gives a closed index's
// reader, which panics when read.
func (b *Index) reader(idx bleve.Index) (index.IndexReader, error) {
	if b.idxLost.Load() {
		return nil, errIndexLost
	}
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
			value = f.Value() // scorch's Document made it a copy of its own already
		}
	})
	return value, nil
}

// Get returns what is stored for id: a document, a tombstone (Deleted set,
// nil Body), or sink.ErrNotFound. Body aliases no buffer of the index.
func (b *Index) Get(ctx context.Context, id string) (sink.Stored, error) {
	return sink.GetOne(ctx, b, id)
}

// Refresh does nothing: a write is searchable as soon as Write returns.
func (b *Index) Refresh(ctx context.Context) error { return nil }

// current returns the index in use and holds off Reindex's swap until
// release is called. A caller holding the writer token has no need of it.
func (b *Index) current() (idx bleve.Index, release func()) {
	b.gen.RLock()
	return b.idx, b.gen.RUnlock
}

// GetMany reads ids, in their order, from one snapshot of the index: nil
// where nothing is stored. Bodies alias no buffer of the index.
func (b *Index) GetMany(ctx context.Context, ids []string) ([]*sink.Stored, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([]*sink.Stored, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	done, err := b.open()
	if err != nil {
		return nil, err
	}
	defer done()
	idx, release := b.current()
	defer release()
	r, err := b.reader(idx)
	if err != nil {
		return nil, fmt.Errorf("sink: bleve %s: get: %w", b.name, err)
	}
	defer r.Close()
	all := make([]sink.Stored, len(ids))
	for i, id := range ids {
		if i%100 == 99 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		value, err := storedValue(r, id)
		if err != nil {
			return nil, fmt.Errorf("sink: bleve %s: get %q: %w", b.name, id, err)
		}
		if value == nil {
			continue
		}
		if all[i], err = sink.DecodeValue(value); err != nil {
			return nil, fmt.Errorf("sink: bleve %s: get %q: %w", b.name, id, err)
		}
		out[i] = &all[i]
	}
	return out, nil
}
