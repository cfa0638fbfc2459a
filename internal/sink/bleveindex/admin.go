package bleveindex

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/blevesearch/bleve/v2"

	"github.com/readside/readside/internal/sink"
)

// What an Index offers operators' tools besides reads and writes (see
// sink.Scanner, sink.Counter, sink.Reindexer).
var (
	_ sink.Scanner   = (*Index)(nil)
	_ sink.Counter   = (*Index)(nil)
	_ sink.Reindexer = (*Index)(nil)
)

// bleveScanPage is the number of documents of a page of Scan.
const bleveScanPage = 500

// bleveIDField is the field in which bleve indexes every document's id.
const bleveIDField = "_id"

// Scan walks every document of the index in id (byte) order, live ones in
// IDs and tombstones in Deleted, bleveScanPage a page: it reads the
// dictionary of ids from the id after the previous page's last one, and
// each id's stored value to tell the two apart, in a snapshot of its own
// for each page, so fn runs outside any snapshot and a long scan keeps no
// old segment on disk. A position is the hex of the last id of the previous
// page, valid whatever is written in between (and across a Reindex). When
// the index holds nothing after from, fn is not called.
func (b *Index) Scan(ctx context.Context, from string, fn func(sink.ScanPage) error) error {
	after, err := hex.DecodeString(from)
	if err != nil {
		return fmt.Errorf("sink: bleve %s: scan: %q (the hex of an id): %w", b.name, from, sink.ErrBadPosition)
	}
	started := from != ""
	at := from
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		page, last, more, err := b.scanPage(ctx, after, started)
		if err != nil {
			return fmt.Errorf("sink: bleve %s: scan: %w", b.name, err)
		}
		if last == "" {
			return nil // nothing after from
		}
		page.At = at
		if more {
			page.Next = hex.EncodeToString([]byte(last))
		}
		if err := fn(page); err != nil {
			return err
		}
		if !more {
			return nil
		}
		after, started, at = []byte(last), true, page.Next
	}
}

// scanPage reads up to bleveScanPage documents after the id after (from
// the first one unless started). last is the last id of the page, "" when
// there was none; more reports whether another id follows.
func (b *Index) scanPage(ctx context.Context, after []byte, started bool) (page sink.ScanPage, last string, more bool, err error) {
	done, err := b.open()
	if err != nil {
		return page, "", false, err
	}
	defer done()
	idx, release := b.current()
	defer release()
	r, err := b.reader(idx)
	if err != nil {
		return page, "", false, err
	}
	defer r.Close()
	var start []byte
	if started {
		start = append(after, 0) // the least id after it: the range includes its start
	}
	// Every id bleve ever took is in the dictionary, even one whose
	// document was replaced or merged away, as long as a segment holds it;
	// Write never deletes a document (a tombstone replaces it), so every id
	// there has one.
	dict, err := r.FieldDictRange(bleveIDField, start, nil)
	if err != nil {
		return page, "", false, err
	}
	defer dict.Close()
	n := 0
	for {
		e, err := dict.Next()
		if err != nil {
			return page, "", false, err
		}
		if e == nil {
			return page, last, false, nil
		}
		if n == bleveScanPage {
			return page, last, true, nil
		}
		if n%100 == 99 {
			if err := ctx.Err(); err != nil {
				return page, "", false, err
			}
		}
		value, err := storedValue(r, e.Term)
		if err != nil {
			return page, "", false, err
		}
		if value == nil {
			continue // bleve's own documents, such as a nested one: not ours
		}
		s, err := sink.DecodeValue(value)
		if err != nil {
			return page, "", false, fmt.Errorf("document %q: %w", e.Term, err)
		}
		if s.Deleted {
			page.Deleted = append(page.Deleted, e.Term)
		} else {
			page.IDs = append(page.IDs, e.Term)
		}
		last = e.Term
		n++
	}
}

// Count counts the live documents (tombstones left out) with a search that
// collects no hit.
func (b *Index) Count(ctx context.Context) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	done, err := b.open()
	if err != nil {
		return 0, err
	}
	defer done()
	idx, release := b.current()
	defer release()
	res, err := idx.SearchInContext(ctx, bleve.NewSearchRequestOptions(live(), 0, 0, false))
	if err != nil {
		return 0, fmt.Errorf("sink: bleve %s: count: %w", b.name, err)
	}
	return int64(res.Total), nil
}

// Reindex writes every document and tombstone again into a fresh index
// with the fields Index was opened with, as Open does when the fields
// change, while the index serves: the copy is built beside the index's
// directory ("<dir>.reindex") from a snapshot; Writes wait for the Reindex
// to end (they are not lost: each is written, to the new index, once it
// has its turn), while reads and searches go on in the old index until the
// directories are swapped, which they wait for. After the swap, every call
// uses the new index. It returns the documents copied, tombstones included.
//
// When ctx is done before the swap, or the copy fails, Reindex removes
// what it built and the old index stays in use as it was. A process that
// dies midway leaves at most directories that the next Open removes or
// puts back (see recoverSwap); the old index is complete until the swap, the
// new one once it is in place. A swap that fails (a rename refused) puts
// the old index back and opens it again; should even that fail, every
// later call fails until the index is opened anew. Close waits for a
// Reindex under way.
func (b *Index) Reindex(ctx context.Context) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	done, err := b.open()
	if err != nil {
		return 0, err
	}
	defer done()
	select { // writers wait from now on, so the copy misses none
	case b.writer <- struct{}{}:
	case <-ctx.Done():
		return 0, fmt.Errorf("sink: bleve %s: re-index: %w", b.name, ctx.Err())
	}
	defer func() { <-b.writer }()
	start := time.Now()
	// Holding the writer token, b.idx is for this call alone to replace.
	n, dropped, err := b.buildFresh(ctx, b.idx)
	if err != nil {
		return 0, fmt.Errorf("sink: bleve %s: re-index: %w", b.name, err)
	}
	b.gen.Lock() // waits for the reads under way
	idx, err := swapIn(b.idx, b.dir)
	if idx != nil {
		b.idx = idx
	} else {
		b.idxLost.Store(true)
	}
	b.gen.Unlock()
	if err != nil {
		if idx == nil {
			err = errors.Join(err, errIndexLost)
		}
		return 0, fmt.Errorf("sink: bleve %s: re-index: %w", b.name, err)
	}
	dropOld(b.dir, b.log) // reads go on meanwhile
	logReindexed(b.log, n, dropped, start)
	return int64(n), nil
}
