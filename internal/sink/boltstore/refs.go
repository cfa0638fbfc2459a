package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/readside/readside/internal/sink"
)

// Refs is the reverse lookup of joined entities of one projection in a DB
// (sink.RefIndex): for every entity the documents that use it, each with
// the newest version of the document that used it; and for every document a
// record of the version it was last built at and the entities it used,
// which expires after the tombstone TTL once the document is deleted.
//
// Each Add and Commit is one write transaction, so the version checks that
// redisstore.Refs does in Lua scripts hold here as well. It is safe for
// concurrent use.
type Refs struct {
	db                  *bolt.DB
	projection          string
	ttl                 time.Duration
	err                 error    // returned by every call: an unusable projection name
	users, deps, expiry [][]byte // paths of the buckets
}

// Refs returns the reverse lookup of projection. The record of a deleted
// document expires after tombstoneTTL [sink.DefaultTombstoneTTL when 0 or
// less].
func (b *DB) Refs(projection string, tombstoneTTL time.Duration) *Refs {
	if tombstoneTTL <= 0 {
		tombstoneTTL = sink.DefaultTombstoneTTL
	}
	p := []byte(projection)
	return &Refs{
		db: b.db, projection: projection, ttl: tombstoneTTL, err: checkProjection(projection),
		users:  [][]byte{bucketRefs, p, bucketUsers},
		deps:   [][]byte{bucketRefs, p, bucketDeps},
		expiry: [][]byte{bucketRefs, p, bucketExpiry},
	}
}

// depsVersionDigits is how many digits of the zero-padded version a record
// of appendDeps holds, as redisstore.Refs writes it before the refs.
const depsVersionDigits = 20

// usersPage is how many ids Users hands over at a time.
const usersPage = 1000

// Add records that each ref's document uses its entity, at the ref's
// version (the version recorded for a document in an entity's set only
// grows). Idempotent. A ref too large for a bbolt key fails the whole call
// with a *sink.PermanentError, before anything is written.
func (r *Refs) Add(ctx context.Context, refs []sink.Ref) error {
	if r.err != nil {
		return r.err
	}
	if len(refs) == 0 {
		return nil
	}
	keys := make([][]byte, len(refs))
	for i, ref := range refs {
		keys[i] = userKey(ref.Source, ref.Key, ref.ID)
		if len(keys[i]) > bolt.MaxKeySize {
			return &sink.PermanentError{Err: fmt.Errorf("sink: bolt refs %s: ref of %d bytes to %.32q: more than bolt takes", r.projection, len(keys[i]), ref.Source)}
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sink: bolt refs %s: recording refs: %w", r.projection, err)
	}
	err := r.db.Update(func(tx *bolt.Tx) error {
		users, err := createBuckets(tx, r.users)
		if err != nil {
			return err
		}
		for i, ref := range refs {
			if cur := users.Get(keys[i]); cur != nil && decodeScore(cur) >= ref.Version {
				continue
			}
			if err := users.Put(keys[i], binary.BigEndian.AppendUint64(nil, uint64(ref.Version))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sink: bolt refs %s: recording refs: %w", r.projection, err)
	}
	return nil
}

// Commit stores the refs of written documents, in one write transaction,
// unless a newer build's are stored, and removes each document from the sets
// of the entities its previous build used and this one does not, where no
// build at least as new has recorded it. The record of a tombstone expires
// after the TTL; an expired record counts as none. An id too large for bbolt
// fails the whole call with a *sink.PermanentError, before anything is
// written.
func (r *Refs) Commit(ctx context.Context, built []sink.Built) error {
	if r.err != nil {
		return r.err
	}
	if len(built) == 0 {
		return nil
	}
	for _, b := range built {
		if len(b.ID) > maxIDLen {
			return &sink.PermanentError{Err: fmt.Errorf("sink: bolt refs %s: id %.32q... of %d bytes, more than the %d bolt takes", r.projection, b.ID, len(b.ID), maxIDLen)}
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sink: bolt refs %s: committing refs: %w", r.projection, err)
	}
	now := time.Now()
	deadline := now.Add(r.ttl).UnixMilli()
	err := r.db.Update(func(tx *bolt.Tx) error {
		users, err := createBuckets(tx, r.users)
		if err != nil {
			return err
		}
		deps, exp, err := openSwept(tx, r.deps, r.expiry, now.UnixMilli(), len(built), depsDeadline)
		if err != nil {
			return err
		}
		for _, b := range built {
			if err := r.commit(users, deps, exp, b, now.UnixMilli(), deadline); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sink: bolt refs %s: committing refs: %w", r.projection, err)
	}
	return nil
}

// commit is Commit for one document, in its transaction.
func (r *Refs) commit(users, deps, exp *bolt.Bucket, b sink.Built, now, deadline int64) error {
	id := []byte(b.ID)
	var old []sink.Ref
	if cur := deps.Get(id); cur != nil {
		until, version, refs, err := decodeDeps(cur)
		if err == nil && !expired(until, now) {
			if version > b.Version {
				return nil // a newer build's refs are stored
			}
			old = sink.DecodeRefs(b.ID, string(refs))
		}
		if until != 0 {
			if err := exp.Delete(expiryKey(until, id)); err != nil {
				return err
			}
		}
	}
	var until int64
	if b.Deleted {
		until = deadline
		if err := exp.Put(expiryKey(until, id), nil); err != nil {
			return err
		}
	}
	if err := deps.Put(id, appendDeps(nil, until, b.Version, b.Refs)); err != nil {
		return err
	}
	for _, ref := range old {
		if slices.ContainsFunc(b.Refs, func(n sink.Ref) bool { return n.Source == ref.Source && n.Key == ref.Key }) {
			continue
		}
		k := userKey(ref.Source, ref.Key, b.ID)
		if cur := users.Get(k); cur != nil && decodeScore(cur) < b.Version {
			if err := users.Delete(k); err != nil {
				return err
			}
		}
	}
	return nil
}

// Users calls fn with the ids of the documents that use entity key of
// source, in pages of up to usersPage ids, in the order of their bytes. Each
// page is read in a read transaction of its own and fn runs after it ends,
// so fn may write to the file and a popular entity never holds a
// transaction open for long. An id in the set throughout is handed over
// exactly once; one added or removed meanwhile may or may not be. An error
// from fn stops Users and is returned as it is.
func (r *Refs) Users(ctx context.Context, source, key string, fn func(ids []string) error) error {
	if r.err != nil {
		return r.err
	}
	prefix := userKey(source, key, "")
	from := prefix // the first key of the next page
	for from != nil {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("sink: bolt refs %s: reading the users of %s %s: %w", r.projection, source, key, err)
		}
		var ids []string
		err := r.db.View(func(tx *bolt.Tx) error {
			users := bucket(tx, r.users)
			if users == nil {
				from = nil
				return nil
			}
			c := users.Cursor()
			k, _ := c.Seek(from)
			for ; k != nil && bytes.HasPrefix(k, prefix) && len(ids) < usersPage; k, _ = c.Next() {
				ids = append(ids, string(k[len(prefix):]))
			}
			from = nil
			if k != nil && bytes.HasPrefix(k, prefix) {
				from = bytes.Clone(k)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("sink: bolt refs %s: reading the users of %s %s: %w", r.projection, source, key, err)
		}
		if len(ids) > 0 {
			if err := fn(ids); err != nil {
				return err
			}
		}
	}
	return nil
}

// userKey is the key of document id in the set of entity key of source: the
// lengths before source and key make the entity a prefix of its own, which
// no other entity's key starts with, whatever bytes the three hold.
func userKey(source, key, id string) []byte {
	k := make([]byte, 0, 2*binary.MaxVarintLen64+len(source)+len(key)+len(id))
	k = binary.AppendUvarint(k, uint64(len(source)))
	k = append(k, source...)
	k = binary.AppendUvarint(k, uint64(len(key)))
	k = append(k, key...)
	return append(k, id...)
}

// decodeScore decodes the version stored for a document in an entity's
// set; 8 bytes, big-endian.
func decodeScore(v []byte) int64 {
	if len(v) != 8 {
		return -1 << 63 // not ours: any version replaces it
	}
	return int64(binary.BigEndian.Uint64(v))
}

// appendDeps appends the record of a document to b: the deadline (0 for
// none), the version in depsVersionDigits digits, then its refs as
// sink.EncodeRefs writes them, as redisstore.Refs stores them after the
// version.
func appendDeps(b []byte, until, version int64, refs []sink.Ref) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(until))
	b = fmt.Appendf(b, "%0*d", depsVersionDigits, version)
	return append(b, sink.EncodeRefs(refs)...)
}

// decodeDeps decodes a record of appendDeps. refs aliases v.
func decodeDeps(v []byte) (until, version int64, refs []byte, err error) {
	if len(v) < deadlineLen+depsVersionDigits {
		return 0, 0, nil, sink.BadValue(v, "refs record too short")
	}
	until = int64(binary.BigEndian.Uint64(v))
	version, err = strconv.ParseInt(string(v[deadlineLen:deadlineLen+depsVersionDigits]), 10, 64)
	if err != nil {
		return until, 0, nil, sink.BadValue(v, "refs record without a version")
	}
	return until, version, v[deadlineLen+depsVersionDigits:], nil
}

// depsDeadline is the deadline of a record of appendDeps, 0 for none.
func depsDeadline(v []byte) int64 {
	if len(v) < deadlineLen {
		return 0
	}
	return int64(binary.BigEndian.Uint64(v))
}
