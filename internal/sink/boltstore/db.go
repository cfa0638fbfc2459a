// Package boltstore keeps the documents and the reverse lookups of every
// projection of a process in one embedded bbolt file, so that a single
// machine runs without Redis: DB is the file, Docs a projection's doc store
// (sink.DocStore), Refs its reverse lookup (sink.RefIndex).
//
// Format: each projection has buckets of its own under "docs" and "refs".
// A document is the stored value of package sink (see sink.DecodeValue)
// under its id; a tombstone is followed by its deadline, and an index of
// deadlines lets every write transaction sweep some expired records.
//
// Administration: Open creates the file and its directory; bbolt locks the
// file, so one process at a time uses it, and a second Open fails after
// Options.LockTimeout saying so. There is no server and nothing else to
// set up; every write transaction is durable when it returns.
package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/readside/readside/internal/sink"
)

// Options configures Open.
type Options struct {
	// LockTimeout is how long Open waits for another process to release
	// the file before it gives up [1s].
	LockTimeout time.Duration
}

// defaultLockTimeout is the LockTimeout used when none is set: long enough
// for a process that is stopping to let go, short enough to fail fast when
// another one is running.
const defaultLockTimeout = time.Second

// DB is one bbolt file holding the embedded stores of every projection of
// a process: the documents (Docs) and the reverse lookup (Refs) of each
// projection, in buckets of their own. It lets a single machine run without
// Redis.
//
// bbolt locks the file for one process: a second process opening it fails
// (see Open), so the embedded stores belong to the one process that
// runs every projection. DB and the stores it returns are safe for
// concurrent use; bbolt runs one write transaction at a time for the whole
// file, each made durable (fsync) before it returns.
type DB struct {
	db *bolt.DB
}

// Open opens, or creates along with its directory, the bbolt file at
// path. When another process holds the file, it fails after
// o.LockTimeout with an error saying so and wrapping bbolt's ErrTimeout.
func Open(path string, o Options) (*DB, error) {
	timeout := o.LockTimeout
	if timeout <= 0 {
		timeout = defaultLockTimeout
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("sink: bolt: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("sink: bolt %s: another process uses this data directory "+
			"(embedded stores belong to one process: stop the other one or give this one a data directory of its own): %w", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("sink: bolt %s: %w", path, err)
	}
	return &DB{db: db}, nil
}

// Close waits for the transactions under way and closes the file, which
// releases its lock. Every later call of its stores fails.
func (b *DB) Close() error {
	if err := b.db.Close(); err != nil {
		return fmt.Errorf("sink: bolt: close: %w", err)
	}
	return nil
}

// Bucket names. Every projection has a bucket of its own under bucketDocs
// and another under bucketRefs, so any projection name is safe and a
// document store and a reverse lookup of the same name never collide.
var (
	bucketDocs   = []byte("docs")
	bucketRefs   = []byte("refs")
	bucketIDs    = []byte("ids")    // documents: id → value (see appendBoltValue)
	bucketUsers  = []byte("users")  // reverse lookup: entity and id → version (see userKey)
	bucketDeps   = []byte("deps")   // reverse lookup: id → record (see appendDeps)
	bucketExpiry = []byte("expiry") // deadline and id → nothing, oldest first (see sweep)
)

// deadlineLen is the size of a deadline: Unix milliseconds, big-endian, so
// expiry keys sort oldest first.
const deadlineLen = 8

// maxIDLen is the longest id the bolt stores take: an expiry key, a deadline
// and the id, must fit in a bbolt key.
const maxIDLen = bolt.MaxKeySize - deadlineLen

// sweepBatch is the least number of expired records one write transaction
// removes (see sweep).
const sweepBatch = 100

// Docs is the document store of one projection in a DB: the contract of
// redisstore.Store (the write guard, tombstones that expire, Get and
// GetMany) without a server. A value is stored in the layout of
// sink.DecodeValue, which a tombstone follows with its deadline (see
// appendBoltValue). It is safe for concurrent use.
type Docs struct {
	db          *bolt.DB
	projection  string
	ttl         time.Duration
	err         error    // returned by every call: an unusable projection name
	ids, expiry [][]byte // paths of the buckets
}

// Docs returns the document store of projection, whose tombstones expire
// after tombstoneTTL [sink.DefaultTombstoneTTL when 0 or less]. Stores of the
// same projection share their documents.
func (b *DB) Docs(projection string, tombstoneTTL time.Duration) *Docs {
	if tombstoneTTL <= 0 {
		tombstoneTTL = sink.DefaultTombstoneTTL
	}
	p := []byte(projection)
	return &Docs{
		db: b.db, projection: projection, ttl: tombstoneTTL, err: checkProjection(projection),
		ids: [][]byte{bucketDocs, p, bucketIDs}, expiry: [][]byte{bucketDocs, p, bucketExpiry},
	}
}

func checkProjection(name string) error {
	if name == "" || len(name) > bolt.MaxKeySize {
		return fmt.Errorf("sink: bolt: projection name of %d bytes: want 1 to %d", len(name), bolt.MaxKeySize)
	}
	return nil
}

// Write writes docs in one bbolt transaction, each under the write guard: it
// is dropped when what the id holds outranks it (a higher version, or for a
// tombstone a document of the same version; see sink.Doc.Deleted), and
// replaces what is there otherwise, an expired tombstone counting as nothing.
// Items in docs with the same id are applied in order. The transaction also
// removes some expired tombstones (see sweep).
//
// Write returns nil, a *sink.BatchError listing the invalid docs as permanent
// item errors while every other item was written, or another error when the
// call failed as a whole (ctx done, the file closed or failing), and then
// nothing was written.
func (s *Docs) Write(ctx context.Context, docs []sink.Doc) error {
	_, err := s.WriteReport(ctx, docs)
	return err
}

// WriteReport is Write, reporting what the guard did with each doc.
func (s *Docs) WriteReport(ctx context.Context, docs []sink.Doc) ([]sink.Outcome, error) {
	if s.err != nil {
		return nil, s.err
	}
	if len(docs) == 0 {
		return []sink.Outcome{}, nil
	}
	out := make([]sink.Outcome, len(docs))
	now := time.Now()
	deadline := now.Add(s.ttl).UnixMilli()
	var failed sink.Failures
	vals := make([][]byte, len(docs)) // nil for an invalid doc
	valid := 0
	for i := range docs {
		d := &docs[i]
		if err := checkBolt(d); err != nil {
			failed.Add(i, err)
			continue
		}
		vals[i] = appendBoltValue(nil, d, deadline)
		valid++
	}
	for i := range out {
		out[i] = sink.Dropped // until written
	}
	if valid == 0 {
		return out, failed.Err()
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sink: bolt write %s: %w", s.projection, err)
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		ids, exp, err := openSwept(tx, s.ids, s.expiry, now.UnixMilli(), len(docs), boltValueDeadline)
		if err != nil {
			return err
		}
		for i := range docs {
			if vals[i] == nil {
				continue
			}
			d := &docs[i]
			id := []byte(d.ID)
			outcome := sink.Written
			if cur := ids.Get(id); cur != nil {
				// A value that does not decode carries no version to guard:
				// it is overwritten, as Redis does.
				stored, until, err := decodeBoltValue(cur)
				live := err == nil && !expired(until, now.UnixMilli())
				if live && stored.Outranks(d) {
					out[i] = sink.Dropped
					continue
				}
				if live && stored.Deleted && !d.Deleted {
					outcome = sink.Revived
				}
				if until != 0 {
					if err := exp.Delete(expiryKey(until, id)); err != nil {
						return err
					}
				}
			}
			if err := ids.Put(id, vals[i]); err != nil {
				return err
			}
			out[i] = outcome
			if d.Deleted {
				if err := exp.Put(expiryKey(deadline, id), nil); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sink: bolt write %s: %w", s.projection, err)
	}
	return out, failed.Err()
}

// checkBolt is sink.Doc.Check, and the limits of bbolt.
func checkBolt(d *sink.Doc) error {
	if err := d.Check(); err != nil {
		return err
	}
	if len(d.ID) > maxIDLen {
		return &sink.PermanentError{Err: fmt.Errorf("sink: doc %.32q...: id of %d bytes, more than the %d bolt takes", d.ID, len(d.ID), maxIDLen)}
	}
	if !d.Deleted && len(d.Body) > bolt.MaxValueSize-sink.MaxValueOverhead {
		return &sink.PermanentError{Err: fmt.Errorf("sink: doc %q: body of %d bytes, too large for bolt", d.ID, len(d.Body))}
	}
	return nil
}

// Get returns what is stored for id: a document, a tombstone (Deleted set,
// nil Body), or sink.ErrNotFound, which an expired tombstone is too. Body is a
// copy the caller owns.
func (s *Docs) Get(ctx context.Context, id string) (sink.Stored, error) {
	return sink.GetOne(ctx, s, id)
}

// GetMany returns what is stored for ids in one read transaction, in the
// order of ids, with nil where nothing is stored or a tombstone expired.
// Bodies are copies the caller owns. A value that does not decode fails the
// whole call.
func (s *Docs) GetMany(ctx context.Context, ids []string) ([]*sink.Stored, error) {
	if s.err != nil {
		return nil, s.err
	}
	out := make([]*sink.Stored, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sink: bolt get %s: %w", s.projection, err)
	}
	now := time.Now().UnixMilli()
	all := make([]sink.Stored, len(ids))
	err := s.db.View(func(tx *bolt.Tx) error {
		b := bucket(tx, s.ids)
		if b == nil {
			return nil // never written
		}
		for i, id := range ids {
			v := b.Get([]byte(id))
			if v == nil {
				continue
			}
			st, until, err := decodeBoltValue(v)
			if err != nil {
				return fmt.Errorf("%q: %w", id, err)
			}
			if expired(until, now) {
				continue
			}
			st.Body = bytes.Clone(st.Body) // v lives in the file's memory map only while tx does
			all[i] = st
			out[i] = &all[i]
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sink: bolt get %s: %w", s.projection, err)
	}
	return out, nil
}

// appendBoltValue appends the value stored for d to b: the layout of
// sink.DecodeValue, which Redis stores too, and after a tombstone its
// deadline.
func appendBoltValue(b []byte, d *sink.Doc, deadline int64) []byte {
	b = sink.AppendValue(b, d)
	if d.Deleted {
		b = binary.BigEndian.AppendUint64(b, uint64(deadline))
	}
	return b
}

// decodeBoltValue decodes a value of appendBoltValue. until is the deadline
// of a tombstone, 0 for a document. Body aliases v.
func decodeBoltValue(v []byte) (s sink.Stored, until int64, err error) {
	if sink.IsTombstoneValue(v) {
		if len(v) < sink.ValueHeaderLen+deadlineLen {
			return sink.Stored{}, 0, sink.BadValue(v, "tombstone without a deadline")
		}
		until = int64(binary.BigEndian.Uint64(v[len(v)-deadlineLen:]))
		v = v[:len(v)-deadlineLen]
	}
	s, err = sink.DecodeValue(v)
	return s, until, err
}

// boltValueDeadline is the deadline of a value of appendBoltValue, 0 when
// it has none or does not decode.
func boltValueDeadline(v []byte) int64 {
	_, until, err := decodeBoltValue(v)
	if err != nil {
		return 0
	}
	return until
}

// expired reports whether a record with deadline until is gone at now, both
// in Unix milliseconds; 0 is no deadline. It is gone at its deadline, as a
// Redis key is.
func expired(until, now int64) bool { return until != 0 && until <= now }

// expiryKey is the key of id in an expiry bucket: the deadline, then the id.
func expiryKey(until int64, id []byte) []byte {
	k := make([]byte, 0, deadlineLen+len(id))
	k = binary.BigEndian.AppendUint64(k, uint64(until))
	return append(k, id...)
}

// openSwept creates (or opens) the buckets of records with deadlines and of
// their expiry index in a write transaction about to write n records, and
// sweeps as many expired ones first (at least sweepBatch).
func openSwept(tx *bolt.Tx, records, expiry [][]byte, now int64, n int, deadline func(v []byte) int64) (rec, exp *bolt.Bucket, err error) {
	if rec, err = createBuckets(tx, records); err != nil {
		return nil, nil, err
	}
	if exp, err = createBuckets(tx, expiry); err != nil {
		return nil, nil, err
	}
	return rec, exp, sweep(rec, exp, now, max(sweepBatch, n), deadline)
}

// sweep removes from records up to limit records whose deadline has passed
// at now, oldest first, following the index exp (see expiryKey). Every
// write transaction sweeps at least as many as it can create, so expired
// records do not pile up while the store is written, and no goroutine has
// to own a sweeper; a record that expired but is still there reads as
// absent. deadline gives the deadline of a stored record: one that no longer
// matches its index entry was replaced, and stays.
func sweep(records, exp *bolt.Bucket, now int64, limit int, deadline func(v []byte) int64) error {
	var due [][]byte
	c := exp.Cursor()
	for k, _ := c.First(); k != nil && len(due) < limit; k, _ = c.Next() {
		if len(k) < deadlineLen || int64(binary.BigEndian.Uint64(k)) > now {
			break
		}
		due = append(due, bytes.Clone(k)) // deleting while the cursor runs would skip keys
	}
	for _, k := range due {
		id := k[deadlineLen:]
		if v := records.Get(id); v != nil && deadline(v) == int64(binary.BigEndian.Uint64(k)) {
			if err := records.Delete(id); err != nil {
				return err
			}
		}
		if err := exp.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// createBuckets returns the bucket at path, nested from the root, creating
// what is missing.
func createBuckets(tx *bolt.Tx, path [][]byte) (*bolt.Bucket, error) {
	b, err := tx.CreateBucketIfNotExists(path[0])
	for _, name := range path[1:] {
		if err != nil {
			break
		}
		b, err = b.CreateBucketIfNotExists(name)
	}
	if err != nil {
		return nil, fmt.Errorf("bucket %q: %w", path, err)
	}
	return b, nil
}

// bucket returns the bucket at path, nested from the root, or nil when it
// was never created.
func bucket(tx *bolt.Tx, path [][]byte) *bolt.Bucket {
	b := tx.Bucket(path[0])
	for _, name := range path[1:] {
		if b == nil {
			return nil
		}
		b = b.Bucket(name)
	}
	return b
}
