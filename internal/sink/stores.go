package sink

import "context"

// DocStore is the doc store contract, kept by redisstore.Store and
// boltstore.Docs: the write guard (see Doc) and reads by id. GetMany answers
// in the order of ids, nil where nothing is stored.
type DocStore interface {
	Write(ctx context.Context, docs []Doc) error
	Get(ctx context.Context, id string) (Stored, error)
	GetMany(ctx context.Context, ids []string) ([]*Stored, error)
}

// Index is the search index contract, kept by elasticindex.Index and
// bleveindex.Index: the write guard, reads by id, and list and search (see
// Query).
type Index interface {
	Write(ctx context.Context, docs []Doc) error
	Get(ctx context.Context, id string) (Stored, error)
	Searcher
}

// RefIndex is the reverse lookup of joined entities, kept by redisstore.Refs
// and boltstore.Refs (see redisstore.Refs for the contract).
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
