package bleveindex

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"github.com/blevesearch/bleve/v2"
	"github.com/blevesearch/bleve/v2/index/scorch"

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
// a fresh index with b's mapping beside b's directory, swaps the
// directories and opens the result.
func (b *Index) reindex(old bleve.Index) (bleve.Index, error) {
	dir, log := b.dir, b.log
	start := time.Now()
	n, dropped, err := b.buildFresh(context.Background(), old)
	if err != nil {
		return old, fmt.Errorf("re-index: %w", err)
	}
	idx, err := swapIn(old, dir)
	if err != nil {
		return idx, fmt.Errorf("re-index: %w", err)
	}
	dropOld(dir, log)
	logReindexed(log, n, dropped, start)
	return idx, nil
}

// buildFresh copies every document and tombstone of old into a fresh index
// with b's mapping and fields' signature beside b's directory
// ("<dir>.reindex"), closed once complete, and reports how many, and how
// many values it left out. When it fails (ctx done too), it removes what it
// built; old is left as it was.
func (b *Index) buildFresh(ctx context.Context, old bleve.Index) (n, dropped int, err error) {
	tmp := b.dir + ".reindex"
	fresh, err := bleve.NewUsing(tmp, b.mapping, scorch.Name, bleve.Config.DefaultKVStore, bleveConfig())
	if err != nil {
		os.RemoveAll(tmp)
		return 0, 0, fmt.Errorf("create %s: %w", tmp, err)
	}
	n, dropped, err = b.copyDocs(ctx, old, fresh)
	if err == nil {
		err = fresh.SetInternal(bleveSignatureKey, b.sig) // last: an index without it is re-indexed again
	}
	if cerr := fresh.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = ctx.Err() // the copy may have ended just as ctx did
	}
	if err != nil {
		os.RemoveAll(tmp)
		return 0, 0, err
	}
	return n, dropped, nil
}

// swapIn closes old, puts the index buildFresh built in dir's place and
// opens it, leaving the old one in "<dir>.old" for dropOld. When a step
// fails after old is closed, the directories are put back as they were
// (see recoverSwap) and old is opened again: it returns that with the
// error, or nil when even that fails. A crash midway is undone by the next
// open's recoverSwap.
func swapIn(old bleve.Index, dir string) (bleve.Index, error) {
	if err := old.Close(); err != nil {
		return reopen(dir, fmt.Errorf("close the old index: %w", err))
	}
	if err := os.Rename(dir, dir+".old"); err != nil {
		return reopen(dir, err)
	}
	if err := os.Rename(dir+".reindex", dir); err != nil {
		return reopen(dir, err)
	}
	idx, err := bleve.OpenUsing(dir, bleveConfig())
	if err != nil {
		return nil, fmt.Errorf("open the new index: %w", err)
	}
	return idx, nil
}

// dropOld removes the old index a swap left in "<dir>.old", after the swap:
// the new index serves meanwhile (a crash before it is done leaves the
// directory for the next open's recoverSwap).
func dropOld(dir string, log *slog.Logger) {
	if err := os.RemoveAll(dir + ".old"); err != nil {
		log.Warn("embedded search index: re-indexed, but the old index stays behind", "err", err)
	}
}

// reopen puts back the index a swap cut short by failed and opens it.
func reopen(dir string, failed error) (bleve.Index, error) {
	if err := recoverSwap(dir); err != nil {
		return nil, errors.Join(failed, err)
	}
	idx, err := bleve.OpenUsing(dir, bleveConfig())
	if err != nil {
		return nil, errors.Join(failed, fmt.Errorf("open the old index again: %w", err))
	}
	return idx, failed
}

// logReindexed logs a re-index of n documents that began at start.
func logReindexed(log *slog.Logger, n, dropped int, start time.Time) {
	if dropped > 0 {
		log.Warn("embedded search index: values that do not fit their field's new type were left out of the index", "values", dropped)
	}
	log.Info("embedded search index: re-indexed", "docs", n, "took", time.Since(start).Round(time.Millisecond))
}

// copyDocs writes every document and tombstone of from into to, with to's
// fields, and reports how many, and how many values it left out. It stops
// when ctx is done.
func (b *Index) copyDocs(ctx context.Context, from, to bleve.Index) (n, dropped int, err error) {
	r, err := b.reader(from)
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
		if err := ctx.Err(); err != nil {
			return n, dropped, err
		}
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
