package sink

import (
	"context"
	"errors"
	"time"
)

// DocStore is the doc store contract, kept by redisstore.Store and
// boltstore.Docs: the write guard (see Doc) and reads by id. GetMany
// answers in the order of ids, nil where nothing is stored.
type DocStore interface {
	Write(ctx context.Context, docs []Doc) error
	Reader
}

// Index is the search index contract, kept by elasticindex.Index and
// bleveindex.Index: the write guard, reads by id (each document with its
// version, as written; GetMany as DocStore's, reading in real time, not
// only what a refresh made searchable), and list and search (see Query).
type Index interface {
	Write(ctx context.Context, docs []Doc) error
	Reader
	Searcher
}

// Reader reads documents by id, each with its version: what DocStore and
// Index have in common, and what replay's verify compares with fresh builds.
type Reader interface {
	Get(ctx context.Context, id string) (Stored, error)
	GetMany(ctx context.Context, ids []string) ([]*Stored, error)
}

// RefIndex is the reverse lookup of joined entities, kept by redisstore.Refs
// and boltstore.Refs: for every entity, the documents that use it, each with
// the newest version of the document that used it; for every document, the
// version it was last built at and the entities it used (kept for the
// tombstone TTL once the document is deleted).
//
// The projector Adds a ref before it fetches the joined entity, so a change
// of that entity made after the fetch always finds the document. It Commits
// the refs after writing the document, which removes the document from the
// entities it no longer uses — but only where the entity's version of it is
// older than the committing build: the newest build's refs can never be
// removed, by a slower replica or anyone else. Users calls fn with pages of
// the ids that use an entity.
type RefIndex interface {
	Add(ctx context.Context, refs []Ref) error
	Commit(ctx context.Context, built []Built) error
	Users(ctx context.Context, source, key string, fn func(ids []string) error) error
}

// Stores are one projection's stores, each with the name logs and metrics
// give it.
type Stores struct {
	Docs      DocStore
	DocsName  string // "redis" or "embedded-docs"
	Index     Index
	IndexName string // "elasticsearch" or "embedded-search"
	Refs      RefIndex
}

// RefsPrefix is where projection keeps its reverse lookups in Redis.
func RefsPrefix(projection string) string { return "readside:" + projection + ":" }

// The contracts below are what operators' tools (replay: all --from,
// verify, rebuild) need of a store beyond reads and writes. A store
// implements those it can; replay asks for each by type assertion and says
// clearly what a store cannot do.

// Scanner walks every id a store holds for one projection, in pages.
type Scanner interface {
	// Scan calls fn with each page of ids, from position from ("" starts
	// at the beginning), until the last page or until fn returns an error,
	// which Scan returns as it is. Positions are opaque strings a caller
	// may keep (in a checkpoint) and pass to a later Scan of the same store.
	//
	// Writes during a scan: an id stored for the whole scan is in at least
	// one page; an id may be in more than one (a Redis SCAN may repeat), so
	// callers tolerate duplicates. Tombstones are not in IDs but in Deleted.
	//
	// A from that is not a position of a scan of this store is an error
	// wrapping ErrBadPosition.
	Scan(ctx context.Context, from string, fn func(ScanPage) error) error
}

// ErrNotSupported is wrapped by the error of a store reached through
// another process (internal/storeapi) when the store behind it does not
// keep the contract asked for: a caller says what the backend cannot do,
// or takes another way (sample a Scan rather than Sample).
var ErrNotSupported = errors.New("not supported by this store")

// ErrBadPosition is what Scan returns, wrapped, for a from that is not a
// position of a scan of the store: the caller's mistake, not the store's.
var ErrBadPosition = errors.New("not a position of a scan of this store")

// ScanPage is one page of a Scan.
type ScanPage struct {
	IDs     []string // the live documents of the page
	Deleted []string // the tombstones of the page
	// At is the position of this page: a Scan from At starts with it again
	// (as it is by then). Next is the position of the following page; ""
	// after the last one.
	At, Next string
}

// Counter counts a store's live documents (tombstones left out), for
// progress and comparisons. Stores that cannot count cheaply (Redis) do not
// implement it.
type Counter interface {
	Count(ctx context.Context) (int64, error)
}

// Sampler picks up to n ids at random among a store's documents,
// tombstones included, without reading them all. Stores that cannot do
// that cheaply do not implement it: a caller samples a Scan instead.
type Sampler interface {
	Sample(ctx context.Context, n int) ([]string, error)
}

// Reindexer is a search index that rebuilds itself from what it holds (the
// embedded index keeps every document's stored value): Reindex writes every
// document again into a new generation with the current definition's
// mapping and puts it in place in one step; readers see the old generation
// until then. It returns the documents copied (tombstones included).
type Reindexer interface {
	Reindex(ctx context.Context) (int64, error)
}

// Generations is a search index rebuilt from the sources behind its
// readers (Elasticsearch: versioned indices behind an alias). A rebuild
// begins a new generation, which every writer fills as well as the live
// one once it has seen it (within Settle); re-issued events fill it with
// every id; then the new generation takes the readers' place in one step.
// Every method is safe to call again after a failure.
type Generations interface {
	// State lists the generations readers see now (sorted), and the one
	// being built ("" when none). live is empty when the index does not
	// exist yet.
	State(ctx context.Context) (live []string, building string, err error)
	// Next is the name Begin would give a new generation.
	Next(ctx context.Context) (string, error)
	// Begin creates the next generation, empty, with the index's current
	// mapping, and marks it as the one being built, so writers fill it too.
	Begin(ctx context.Context) (string, error)
	// CheckBuilding checks that the generation being built has the index's
	// current mapping (an earlier rebuild may have had another); a conflict
	// is an error that says so.
	CheckBuilding(ctx context.Context) error
	// Settle is how long a writer may take to write a new generation too,
	// after Begin.
	Settle() time.Duration
	// RefreshGenerations makes what was written to gens visible to
	// CountGenerations and Tombstones.
	RefreshGenerations(ctx context.Context, gens []string) error
	// CountGenerations counts the live documents of each of gens.
	CountGenerations(ctx context.Context, gens []string) (map[string]int64, error)
	// Tombstones calls fn with the ids of gen's tombstones, page by page,
	// until the last or until fn returns an error, which it returns.
	Tombstones(ctx context.Context, gen string, fn func(ids []string) error) error
	// Swap makes gen the one generation readers and writers use, and ends
	// the rebuild, in one step; live are the generations it replaces.
	Swap(ctx context.Context, live []string, gen string) error
	// Drop deletes generations no reader uses any more.
	Drop(ctx context.Context, gens []string) error
}
