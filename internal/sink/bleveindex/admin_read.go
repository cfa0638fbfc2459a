package bleveindex

import (
	"context"
	"fmt"

	"github.com/blevesearch/bleve/v2"
	"github.com/readside/readside/internal/sink"
)

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
	r, err := reader(idx)
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
