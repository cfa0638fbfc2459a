package bleveindex_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/internal/sink/sinktest"
)

// Concurrent Writes are written together (a group commit) without mixing
// their outcomes: the highest version of each id wins whichever batch
// carried it, and each Write's item errors index its own docs.
func TestBleveConcurrentWrites(t *testing.T) {
	t.Parallel()
	b := openBleveShops(t)
	ctx := sinktest.Context(t)
	const writers, rounds, ids = 8, 20, 30
	var wg sync.WaitGroup
	errs := make(chan error, writers*rounds)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				var docs []sink.Doc
				for i := range ids {
					v := int64(r*writers + w) // every (round, writer) a distinct version
					docs = append(docs, sink.Doc{ID: fmt.Sprintf("s%02d", i), Version: v,
						Body: fmt.Appendf(nil, `{"id":"s%02d","name":"w%d r%d"}`, i, w, r)})
				}
				bad := len(docs)
				docs = append(docs, sink.Doc{ID: "", Version: 1, Body: []byte(`{}`)}) // invalid: its own item error
				err := b.Write(ctx, docs)
				var be *sink.BatchError
				if !errors.As(err, &be) || len(be.Items) != 1 || be.Items[bad] == nil || !sink.IsPermanent(be.Items[bad]) {
					errs <- fmt.Errorf("writer %d round %d: %v, want the one invalid doc (item %d) as a permanent item error", w, r, err, bad)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	top := int64(rounds*writers - 1)
	for i := range ids {
		id := fmt.Sprintf("s%02d", i)
		got, err := b.Get(ctx, id)
		if err != nil || got.Version != top {
			t.Errorf("%s: version %d (%v), want %d: the highest version wins", id, got.Version, err, top)
		}
	}
}
