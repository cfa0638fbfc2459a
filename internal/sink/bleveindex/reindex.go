package bleveindex

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"github.com/blevesearch/bleve/v2"
	"github.com/blevesearch/bleve/v2/index/scorch"
	"github.com/blevesearch/bleve/v2/mapping"

	"github.com/readside/readside/internal/sink"
)

// reindexBatch is how many documents a re-index writes per batch.
const reindexBatch = 1000

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
