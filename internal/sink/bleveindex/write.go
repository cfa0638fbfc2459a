package bleveindex

import (
	"context"
	"fmt"
	"slices"

	"github.com/blevesearch/bleve/v2/document"
	index "github.com/blevesearch/bleve_index_api"

	"github.com/readside/readside/internal/sink"
)

// bleveWrite is one Write waiting to be written, and its outcome.
type bleveWrite struct {
	docs []sink.Doc
	err  error
	done chan struct{} // closed when err is set
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
	// Wait for the writer's turn, or for a writer to take w along, or for
	// ctx to end (a Reindex holds the turn for all of its copy).
	select {
	case <-w.done:
		return w.err
	case b.writer <- struct{}{}:
	case <-ctx.Done():
		b.queued.Lock()
		i := slices.Index(b.waiting, w)
		if i >= 0 {
			b.waiting = slices.Delete(b.waiting, i, i+1)
		}
		b.queued.Unlock()
		if i >= 0 {
			return ctx.Err()
		}
		<-w.done // a writer took it along already: its outcome stands
		return w.err
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
	r, err := b.reader(b.idx)
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
