package sink

import (
	"context"
	"errors"
)

// GetMany reads ids, in their order: nil where nothing is stored.
func (b *Bleve) GetMany(ctx context.Context, ids []string) ([]*Stored, error) {
	out := make([]*Stored, len(ids))
	for i, id := range ids {
		s, err := b.Get(ctx, id)
		switch {
		case errors.Is(err, ErrNotFound):
		case err != nil:
			return nil, err
		default:
			out[i] = &s
		}
	}
	return out, nil
}
