// Package sink is the contract between the projector, the query API and
// replay on one side and the stores of read-model documents on the other:
// the doc stores, which read by id (Redis in package redisstore, the
// embedded bbolt file in boltstore), the search indices, which list and
// search (Elasticsearch in elasticindex, the embedded bleve index in
// bleveindex), and the reverse lookups of joined entities (redisstore.Refs,
// boltstore.Refs). It holds the interfaces (DocStore, Index, RefIndex,
// Stores), what they exchange (Doc, Stored, Query, Ref), the error protocol
// below, and the stored value codec (AppendValue, DecodeValue) that the doc
// stores and the embedded index share. Each driver owns its
// format and its administration in its own package; package sinktest holds
// the conformance suites every driver passes. Callers that only read or
// write go through these interfaces.
//
// Every store keeps a version guard: every stored document carries the
// version it was built from, and a write older than what is stored is
// dropped atomically by the store itself.
//
// A deletion is written as a tombstone that carries a version too, so a late
// stale write cannot resurrect the entity while a newer one re-creates it.
//
// Writes are idempotent: writing the same batch twice leaves the same state,
// so a caller retries a failed batch (or just its failed items) freely.
// Errors follow one protocol for every store:
//   - nil: every item was written or dropped as stale;
//   - *BatchError: the listed items failed and every other item was written;
//     an item error that IsPermanent can never succeed (dead-letter that item),
//     any other item error is transient (retry that item);
//   - any other error: the whole call failed (a store unreachable): transient,
//     retry the whole batch after a backoff.
package sink

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Doc is one write: a built document or a tombstone.
type Doc struct {
	// ID is the entity id: non-empty valid UTF-8.
	ID string
	// Version is >= 0. The write guard keeps the highest version; an equal
	// version overwrites (a re-fetch of the same version is at least as
	// fresh); an older one is dropped silently. At an equal version a
	// document outranks a tombstone: see Deleted.
	Version int64
	// Body is a flat JSON object, ready to send; ignored when Deleted.
	Body []byte
	// Deleted writes a tombstone: it blocks any later write with a lower
	// version; a write with an equal or higher version replaces it (the entity
	// was re-created). A tombstone replaces only a document of a lower
	// version (or a tombstone of an equal or lower one): a tombstone of
	// version v means "deleted after version v-1", so it never hides a
	// document of version v, which may be the entity re-created. In the order
	// the guard keeps, doc(v-1) < tombstone(v) < doc(v).
	Deleted bool
	// BuiltAt is when the document was built from the sources; Redis keeps
	// it (to millisecond precision) for the query API's freshness headers.
	BuiltAt time.Time
}

// Check reports why d can never be written, as a *PermanentError: every
// store checks each doc of a Write with it and fails that item alone.
func (d *Doc) Check() error {
	var why string
	switch {
	case d.ID == "":
		why = "empty id"
	case !utf8.ValidString(d.ID):
		why = "id is not valid UTF-8"
	case d.Version < 0:
		why = fmt.Sprintf("negative version %d", d.Version)
	case !d.Deleted && len(d.Body) == 0:
		why = "empty body"
	default:
		return nil
	}
	return &PermanentError{Err: fmt.Errorf("sink: doc %q: %s", d.ID, why)}
}

// Stored is what a store holds for one id.
type Stored struct {
	Version int64
	Deleted bool
	// Body is the JSON document as written; nil for a tombstone.
	Body []byte
	// BuiltAt is when the document was built, when the store keeps it
	// (Redis does); zero otherwise.
	BuiltAt time.Time
}

// Outranks reports whether s, what is stored, wins over the write d under
// the guard: a higher version, or the same version when d is a tombstone and
// a document is stored (see Doc.Deleted). Every store keeps this order:
// Redis's guard script, Elasticsearch's version types, and the embedded
// stores with this method.
func (s Stored) Outranks(d *Doc) bool {
	return s.Version > d.Version || (s.Version == d.Version && d.Deleted && !s.Deleted)
}

// Outcome is what the write guard did with one Doc.
type Outcome uint8

const (
	// Written: stored, over nothing, an older document or a tombstone of an
	// equal or lower version (for a tombstone: over anything it outranks).
	Written Outcome = iota
	// Dropped: what is stored outranks the write; it was left as it was.
	Dropped
	// Revived: a document was stored over a tombstone. Either the entity
	// was re-created, or a fetch made before the deletion was written after
	// it: the caller that cannot tell them apart fetches the entity again.
	Revived
)

func (o Outcome) String() string {
	switch o {
	case Written:
		return "written"
	case Dropped:
		return "dropped"
	case Revived:
		return "revived"
	}
	return fmt.Sprintf("Outcome(%d)", uint8(o))
}

// Reporter is a store that says what its guard did with each write. The doc
// stores (Redis, bbolt) are Reporters; the projector asks for it by type
// assertion.
type Reporter interface {
	// WriteReport is Write that also returns one Outcome per doc, in the
	// order of docs, when the call did not fail as a whole. The outcome of an
	// item that failed (see the *BatchError) is Dropped.
	WriteReport(ctx context.Context, docs []Doc) ([]Outcome, error)
}

// DefaultTombstoneTTL is how long the doc stores keep a tombstone, and the
// reverse lookups the record of a deleted document, when no TTL is set.
const DefaultTombstoneTTL = 7 * 24 * time.Hour

// ErrNotFound is returned by Get when nothing is stored for the id. A
// tombstone is not ErrNotFound: Get returns it as a Stored with Deleted set.
var ErrNotFound = errors.New("sink: not found")

// GetOne is Get by way of r's GetMany, for a store whose read of one id is
// no cheaper than its read of many: what GetMany answers for id, or
// ErrNotFound when it answers nil.
func GetOne(ctx context.Context, r interface {
	GetMany(ctx context.Context, ids []string) ([]*Stored, error)
}, id string) (Stored, error) {
	got, err := r.GetMany(ctx, []string{id})
	if err != nil {
		return Stored{}, err
	}
	if got[0] == nil {
		return Stored{}, ErrNotFound
	}
	return *got[0], nil
}

// BatchError reports the items of one Write that failed while the others were
// written. Items maps the index in the docs slice to its error; an error that
// IsPermanent can never succeed, any other is transient.
type BatchError struct {
	Items map[int]error
}

// batchSummaryItems is how many item errors BatchError.Error spells out.
const batchSummaryItems = 3

func (e *BatchError) Error() string {
	idx := e.indices()
	var b strings.Builder
	fmt.Fprintf(&b, "sink: %d items failed", len(idx))
	for n, i := range idx {
		if n == batchSummaryItems {
			fmt.Fprintf(&b, "; and %d more", len(idx)-n)
			break
		}
		sep := "; "
		if n == 0 {
			sep = ": "
		}
		fmt.Fprintf(&b, "%sitem %d: %v", sep, i, e.Items[i])
	}
	return b.String()
}

// Unwrap returns the item errors in the order of their indices.
func (e *BatchError) Unwrap() []error {
	idx := e.indices()
	errs := make([]error, len(idx))
	for n, i := range idx {
		errs[n] = e.Items[i]
	}
	return errs
}

func (e *BatchError) indices() []int {
	idx := make([]int, 0, len(e.Items))
	for i := range e.Items {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	return idx
}

// PermanentError marks an item that can never succeed, such as a document
// Elasticsearch cannot map: dead-letter it alone.
type PermanentError struct {
	Err error
}

func (e *PermanentError) Error() string { return "permanent: " + e.Err.Error() }

func (e *PermanentError) Unwrap() error { return e.Err }

// IsPermanent reports whether retrying can never make err succeed: err is or
// wraps a *PermanentError. A *BatchError is permanent only when every one of
// its items is; otherwise look at its Items one by one.
func IsPermanent(err error) bool {
	switch e := err.(type) {
	case nil:
		return false
	case *PermanentError:
		return true
	case *BatchError:
		for _, ie := range e.Items {
			if !IsPermanent(ie) {
				return false
			}
		}
		return len(e.Items) > 0
	case interface{ Unwrap() error }:
		return IsPermanent(e.Unwrap())
	case interface{ Unwrap() []error }:
		for _, ie := range e.Unwrap() {
			if IsPermanent(ie) {
				return true
			}
		}
	}
	return false
}

// Failures collects the item errors of one Write, by index in its docs, for
// the *BatchError the Write returns. The zero value is empty and ready to
// use; it is not safe for concurrent use.
type Failures map[int]error

// Add records the error of item i, replacing any recorded before.
func (f *Failures) Add(i int, err error) {
	if *f == nil {
		*f = make(Failures)
	}
	(*f)[i] = err
}

// Err is nil when nothing failed, else the *BatchError of the items.
func (f Failures) Err() error {
	if len(f) == 0 {
		return nil
	}
	return &BatchError{Items: f}
}
