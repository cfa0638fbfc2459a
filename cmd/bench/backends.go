package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/readside/readside/internal/backend"
	"github.com/readside/readside/internal/projector"
	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/projections"
)

// storeSet is where a scenario keeps its documents: on the servers (Redis
// and Elasticsearch) or embedded in this process (bbolt and bleve, under a
// data directory of the scenario's own).
type storeSet string

const (
	servers  storeSet = "servers"
	embedded storeSet = "embedded"
)

// parseBackends is the store sets of -backends, in the order a round runs
// them: the servers first, so that an embedded row can be compared with the
// servers row measured just before it.
func parseBackends(v string) ([]storeSet, error) {
	switch v {
	case "servers":
		return []storeSet{servers}, nil
	case "embedded":
		return []storeSet{embedded}, nil
	case "both":
		return []storeSet{servers, embedded}, nil
	}
	return nil, fmt.Errorf("-backends: %q is none of servers, embedded, both", v)
}

// stores names the two stores, as a row does: "Redis ‖ Elasticsearch".
func (s storeSet) stores() string {
	if s == embedded {
		return "bbolt ‖ bleve"
	}
	return "Redis ‖ Elasticsearch"
}

// calls names the calls that timings.docs and timings.index time on s.
func (s storeSet) calls() (docs, index string) {
	if s == embedded {
		return "bbolt Write", "bleve Write"
	}
	return "Redis pipeline", "Elasticsearch _bulk"
}

// rowSuffix ends the name of a projector row on s. It is empty on the
// servers, whose rows keep the names they have always had.
func (s storeSet) rowSuffix() string {
	if s == embedded {
		return ", embedded stores"
	}
	return ""
}

// ceilingRef names the store-bound ceiling of a projector row on s, the
// slower of the consume baseline (such as "1a") and 1b on the same stores.
func (s storeSet) ceilingRef(consume string) string {
	if s == embedded {
		return "min(" + consume + ", 1b embedded)"
	}
	return "min(" + consume + ", 1b)"
}

// openStores gives p its stores on set, which closeProjection closes. On the
// servers they are the bench's clients, and closeProjection deletes p's keys
// and index; embedded, they are kept in a fresh directory under -embedded-dir
// that closing deletes, and their writes are timed in b.times (the server
// clients time theirs with a hook and a transport).
func (b *bench) openStores(p *projection, set storeSet) error {
	if set == servers {
		p.stores = &backend.Stores{Redis: b.stores.Redis, Elastic: b.stores.Elastic}
		return nil
	}
	dir, err := os.MkdirTemp(b.s.embeddedDir, "readside-bench-embedded-")
	if err != nil {
		return fmt.Errorf("embedded stores: %w", err)
	}
	e := backend.NewEmbedded(dir, b.log)
	p.stores = timedStores{next: &backend.Stores{Embedded: e, Log: b.log}, docs: &b.times.docs, index: &b.times.index}
	p.closeStores = func() error { return errors.Join(e.Close(), os.RemoveAll(dir)) }
	return nil
}

// timedStores opens a projection's stores as next does, and times every
// Write of the doc store and of the index, as the projector calls them.
type timedStores struct {
	next        projector.StoreOpener
	docs, index *timer
}

func (t timedStores) For(ctx context.Context, def *projections.Definition) (sink.Stores, error) {
	st, err := t.next.For(ctx, def)
	if err != nil {
		return st, err
	}
	st.Docs = timedDocs{DocStore: st.Docs, t: t.docs}
	st.Index = timedIndex{Index: st.Index, t: t.index}
	return st, nil
}

type timedDocs struct {
	sink.DocStore
	t *timer
}

func (d timedDocs) Write(ctx context.Context, docs []sink.Doc) error {
	defer d.t.since(time.Now())
	return d.DocStore.Write(ctx, docs)
}

type timedIndex struct {
	sink.Index
	t *timer
}

func (i timedIndex) Write(ctx context.Context, docs []sink.Doc) error {
	defer i.t.since(time.Now())
	return i.Index.Write(ctx, docs)
}
