package boltstore_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/internal/sink/boltstore"
	"github.com/readside/readside/internal/sink/sinktest"
)

// openBolt opens a DB in a directory of the test's own, which
// Open has to create, and closes it when the test ends.
func openBolt(t testing.TB) (*boltstore.DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "data", "readside.db")
	b, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, path
}

// Every subtest of a suite gets a projection of its own in one shared file,
// so the suites also show that projections do not see each other.
func TestBoltConformance(t *testing.T) {
	t.Parallel()
	b, _ := openBolt(t)
	sinktest.Run(t, func(t *testing.T) sinktest.Store { return b.Docs(t.Name(), 0) })
}

func TestBoltDocs(t *testing.T) {
	t.Parallel()
	b, _ := openBolt(t)
	sinktest.RunDocs(t, func(t *testing.T) sinktest.DocStore { return b.Docs(t.Name(), 0) })
}

func TestBoltRefs(t *testing.T) {
	t.Parallel()
	b, _ := openBolt(t)
	sinktest.RunRefs(t, func(t *testing.T) sinktest.RefIndex { return b.Refs(t.Name(), 0) })
}

func TestBoltScan(t *testing.T) {
	t.Parallel()
	b, _ := openBolt(t)
	sinktest.RunScan(t, func(t *testing.T) sinktest.ScanStore { return b.Docs(t.Name(), 0) })
}

func TestBoltReader(t *testing.T) {
	t.Parallel()
	b, _ := openBolt(t)
	sinktest.RunReader(t, func(t *testing.T) sinktest.ReaderStore { return b.Docs(t.Name(), 0) })
}

func TestBoltCounter(t *testing.T) {
	t.Parallel()
	b, _ := openBolt(t)
	sinktest.RunCounter(t, func(t *testing.T) sinktest.CounterStore { return b.Docs(t.Name(), 0) })
}

// boltUsers lists, sorted, the documents that use entity key of source.
func boltUsers(t testing.TB, r *boltstore.Refs, source, key string) []string {
	t.Helper()
	var ids []string
	if err := r.Users(sinktest.Context(t), source, key, func(page []string) error { ids = append(ids, page...); return nil }); err != nil {
		t.Fatalf("Users(%q, %q): %v", source, key, err)
	}
	slices.Sort(ids)
	return ids
}

func wantBoltUsers(t testing.TB, r *boltstore.Refs, source, key string, want ...string) {
	t.Helper()
	if got := boltUsers(t, r, source, key); !slices.Equal(got, want) {
		t.Errorf("users of %s %q = %q, want %q", source, key, got, want)
	}
}

func wantStored(t testing.TB, d *boltstore.Docs, id, want string) {
	t.Helper()
	var have string
	switch got, err := d.Get(sinktest.Context(t), id); {
	case errors.Is(err, sink.ErrNotFound):
		have = "not found"
	case err != nil:
		t.Fatalf("Get(%q): %v", id, err)
	case got.Deleted:
		have = "deleted"
	default:
		have = string(got.Body)
	}
	if have != want {
		t.Errorf("Get(%q) = %s, want %s", id, have, want)
	}
}

func TestBoltPersists(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "readside.db")
	ctx := sinktest.Context(t)
	b, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ref := sink.Ref{ID: "a", Source: "owner", Key: "7", Version: 1}
	if err := b.Docs("shops", 0).Write(ctx, []sink.Doc{sinktest.JSONDoc("a", 1), {ID: "b", Version: 2, Deleted: true}}); err != nil {
		t.Fatal(err)
	}
	if err := b.Refs("shops", 0).Add(ctx, []sink.Ref{ref}); err != nil {
		t.Fatal(err)
	}
	if err := b.Refs("shops", 0).Commit(ctx, []sink.Built{{ID: "a", Version: 1, Refs: []sink.Ref{ref}}}); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b, err = boltstore.Open(path, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	docs, refs := b.Docs("shops", 0), b.Refs("shops", 0)
	wantStored(t, docs, "a", string(sinktest.JSONDoc("a", 1).Body))
	wantStored(t, docs, "b", "deleted")
	wantBoltUsers(t, refs, "owner", "7", "a")
	// The stored version and refs still guard.
	if err := docs.Write(ctx, []sink.Doc{{ID: "b", Version: 1, Body: []byte(`{"stale":true}`)}}); err != nil {
		t.Fatal(err)
	}
	wantStored(t, docs, "b", "deleted")
	if err := refs.Commit(ctx, []sink.Built{{ID: "a", Version: 2}}); err != nil {
		t.Fatal(err)
	}
	wantBoltUsers(t, refs, "owner", "7")
}

// TestBoltLocked: a second opener of the file, such as a second process on
// the same data directory, fails fast and says why.
func TestBoltLocked(t *testing.T) {
	t.Parallel()
	first, path := openBolt(t)
	start := time.Now()
	second, err := boltstore.Open(path, boltstore.Options{})
	if err == nil {
		second.Close()
		t.Fatal("a second Open of a file in use succeeded")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the second Open failed after %v, want about a second", took)
	}
	if !strings.Contains(err.Error(), "another process uses this data directory") || !errors.Is(err, berrors.ErrTimeout) {
		t.Errorf("Open of a file in use = %v; want it to say another process uses the data directory, wrapping ErrTimeout", err)
	}

	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := boltstore.Open(path, boltstore.Options{LockTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("Open after the first closed: %v", err)
	}
	again.Close()
}

func TestBoltTombstoneExpires(t *testing.T) {
	t.Parallel()
	b, _ := openBolt(t)
	const ttl = time.Second // long enough for the checks before it passes, on a loaded machine
	docs := b.Docs("shops", ttl)
	ctx := sinktest.Context(t)
	batch := []sink.Doc{{ID: "a", Version: 5, Deleted: true}, {ID: "b", Version: 5, Deleted: true}, sinktest.JSONDoc("doc", 5)}
	for i := range 300 { // more than one write sweeps, so "z299" is still there when written
		batch = append(batch, sink.Doc{ID: fmt.Sprintf("z%03d", i), Version: 5, Deleted: true})
	}
	if err := docs.Write(ctx, batch); err != nil {
		t.Fatal(err)
	}
	// Until the TTL, the tombstone blocks older writes.
	if err := docs.Write(ctx, []sink.Doc{sinktest.JSONDoc("a", 4)}); err != nil {
		t.Fatal(err)
	}
	wantStored(t, docs, "a", "deleted")

	time.Sleep(2 * ttl)
	wantStored(t, docs, "a", "not found")
	if got, err := docs.GetMany(ctx, []string{"a", "doc"}); err != nil || got[0] != nil || got[1] == nil {
		t.Errorf("GetMany after the TTL = %v, %v; want the tombstone gone and the document kept", got, err)
	}
	// Then a write of any version is accepted again, and the document it
	// writes never expires.
	if err := docs.Write(ctx, []sink.Doc{sinktest.JSONDoc("z299", 1)}); err != nil {
		t.Fatal(err)
	}
	if err := docs.Write(ctx, []sink.Doc{sinktest.JSONDoc("b", 1)}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * ttl)
	wantStored(t, docs, "z299", string(sinktest.JSONDoc("z299", 1).Body))
	wantStored(t, docs, "b", string(sinktest.JSONDoc("b", 1).Body))
	wantStored(t, docs, "doc", string(sinktest.JSONDoc("doc", 5).Body))
}

func TestBoltRefsRecordExpires(t *testing.T) {
	t.Parallel()
	b, _ := openBolt(t)
	const ttl = time.Second
	refs := b.Refs("shops", ttl)
	ctx := sinktest.Context(t)
	owner7 := []sink.Ref{{ID: "z", Source: "owner", Key: "7", Version: 1}}
	commit := func(b ...sink.Built) {
		t.Helper()
		if err := refs.Commit(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := refs.Add(ctx, owner7); err != nil {
		t.Fatal(err)
	}
	commit(sink.Built{ID: "z", Version: 1, Refs: owner7})
	deleted := []sink.Built{{ID: "z", Version: 2, Deleted: true}}
	for i := range 300 { // more than one commit sweeps, so the record of "z" is still there below
		deleted = append(deleted, sink.Built{ID: fmt.Sprintf("a%03d", i), Version: 2, Deleted: true})
	}
	commit(deleted...)
	wantBoltUsers(t, refs, "owner", "7")

	time.Sleep(2 * ttl)
	// The record of the deleted document is gone: an older build is stored
	// again, so a newer build without owner 7 takes the document out.
	if err := refs.Add(ctx, owner7); err != nil {
		t.Fatal(err)
	}
	commit(sink.Built{ID: "z", Version: 1, Refs: owner7})
	wantBoltUsers(t, refs, "owner", "7", "z")
	commit(sink.Built{ID: "z", Version: 3})
	wantBoltUsers(t, refs, "owner", "7")
}

// rawBolt runs fn on the file at path, opened with bbolt itself, to look at
// what the store left there.
func rawBolt(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.View(fn); err != nil {
		t.Fatal(err)
	}
}

func keysIn(tx *bolt.Tx, path ...string) []string {
	b := tx.Bucket([]byte(path[0]))
	for _, name := range path[1:] {
		if b == nil {
			return nil
		}
		b = b.Bucket([]byte(name))
	}
	if b == nil {
		return nil
	}
	var keys []string
	_ = b.ForEach(func(k, _ []byte) error { keys = append(keys, string(k)); return nil })
	return keys
}

// TestBoltSweep: expired tombstones and records leave the file as later
// writes come, not only when their ids are written again.
func TestBoltSweep(t *testing.T) {
	t.Parallel()
	b, path := openBolt(t)
	const ttl = 50 * time.Millisecond
	docs, refs := b.Docs("shops", ttl), b.Refs("shops", ttl)
	ctx := sinktest.Context(t)
	var gone []sink.Doc
	var built []sink.Built
	for i := range 250 {
		id := "gone-" + string(rune('a'+i%26)) + strings.Repeat("x", i/26)
		gone = append(gone, sink.Doc{ID: id, Version: 1, Deleted: true})
		built = append(built, sink.Built{ID: id, Version: 1, Deleted: true})
	}
	if err := docs.Write(ctx, gone); err != nil {
		t.Fatal(err)
	}
	if err := refs.Commit(ctx, built); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * ttl)
	// Writes of other ids; a few, since each sweeps a bounded number.
	for range 3 {
		if err := docs.Write(ctx, []sink.Doc{sinktest.JSONDoc("kept", 1)}); err != nil {
			t.Fatal(err)
		}
		if err := refs.Commit(ctx, []sink.Built{{ID: "kept", Version: 1}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	rawBolt(t, path, func(tx *bolt.Tx) error {
		for _, bucket := range [][]string{{"docs", "shops", "ids"}, {"refs", "shops", "deps"}} {
			if got := keysIn(tx, bucket...); !slices.Equal(got, []string{"kept"}) {
				t.Errorf("%s holds %d keys after the sweep (%.3q...), want only kept", strings.Join(bucket, "/"), len(got), got)
			}
		}
		for _, bucket := range [][]string{{"docs", "shops", "expiry"}, {"refs", "shops", "expiry"}} {
			if got := keysIn(tx, bucket...); len(got) != 0 {
				t.Errorf("%s holds %d keys after the sweep, want none", strings.Join(bucket, "/"), len(got))
			}
		}
		return nil
	})
}

// TestBoltLayout pins that a document is stored in the layout Redis stores
// (see DecodeValue), and a tombstone in it followed by its deadline.
func TestBoltLayout(t *testing.T) {
	t.Parallel()
	b, path := openBolt(t)
	ctx := sinktest.Context(t)
	before := time.Now()
	if err := b.Docs("shops", time.Hour).Write(ctx, []sink.Doc{
		{ID: "42", Version: 1234, Body: []byte(`{"name":"x"}`)},
		{ID: "43", Version: 7, Deleted: true, Body: []byte(`{"ignored":true}`)},
	}); err != nil {
		t.Fatal(err)
	}
	b.Close()
	rawBolt(t, path, func(tx *bolt.Tx) error {
		ids := tx.Bucket([]byte("docs")).Bucket([]byte("shops")).Bucket([]byte("ids"))
		if got, want := string(ids.Get([]byte("42"))), `00000000000000001234d{"name":"x"}`; got != want {
			t.Errorf("value of a document = %q, want %q", got, want)
		}
		v := ids.Get([]byte("43"))
		if got, want := string(v[:len(v)-8]), `00000000000000000007t`; got != want {
			t.Errorf("value of a tombstone = %q, want %q and its deadline", got, want)
		}
		var until int64
		for _, c := range v[len(v)-8:] {
			until = until<<8 | int64(c)
		}
		if d := time.UnixMilli(until).Sub(before); d < time.Hour-time.Minute || d > time.Hour+time.Minute {
			t.Errorf("tombstone deadline in %v, want in about an hour", d)
		}
		return nil
	})
}

func TestBoltProjectionsIsolated(t *testing.T) {
	t.Parallel()
	b, _ := openBolt(t)
	ctx := sinktest.Context(t)
	shops, users := b.Docs("shops", 0), b.Docs("users", 0)
	if err := shops.Write(ctx, []sink.Doc{{ID: "1", Version: 5, Body: []byte(`{"shop":1}`)}}); err != nil {
		t.Fatal(err)
	}
	if err := users.Write(ctx, []sink.Doc{{ID: "1", Version: 1, Body: []byte(`{"user":1}`)}, {ID: "2", Version: 9, Deleted: true}}); err != nil {
		t.Fatal(err)
	}
	wantStored(t, shops, "1", `{"shop":1}`)
	wantStored(t, users, "1", `{"user":1}`)
	wantStored(t, shops, "2", "not found")
	wantStored(t, b.Docs("shops", time.Hour), "1", `{"shop":1}`) // the same projection again

	// The reverse lookups of two projections, and of a projection named like
	// a document store, are apart too.
	ref := sink.Ref{ID: "1", Source: "owner", Key: "7"}
	if err := b.Refs("shops", 0).Add(ctx, []sink.Ref{ref}); err != nil {
		t.Fatal(err)
	}
	wantBoltUsers(t, b.Refs("shops", 0), "owner", "7", "1")
	wantBoltUsers(t, b.Refs("users", 0), "owner", "7")
	wantStored(t, shops, "1", `{"shop":1}`)
}

// TestBoltDone: a done ctx fails every call before it reads or writes.
func TestBoltDone(t *testing.T) {
	t.Parallel()
	b, _ := openBolt(t)
	docs, refs := b.Docs("shops", 0), b.Refs("shops", 0)
	ctx, cancel := context.WithCancel(sinktest.Context(t))
	cancel()
	calls := map[string]error{
		"Write":  docs.Write(ctx, []sink.Doc{sinktest.JSONDoc("a", 1)}),
		"Add":    refs.Add(ctx, []sink.Ref{{ID: "a", Source: "owner", Key: "7"}}),
		"Commit": refs.Commit(ctx, []sink.Built{{ID: "a", Version: 1}}),
		"Users":  refs.Users(ctx, "owner", "7", func([]string) error { t.Error("Users called fn"); return nil }),
	}
	_, calls["Get"] = docs.Get(ctx, "a")
	_, calls["GetMany"] = docs.GetMany(ctx, []string{"a"})
	for name, err := range calls {
		if !errors.Is(err, context.Canceled) || sink.IsPermanent(err) {
			t.Errorf("%s with a canceled ctx = %v, want a transient error wrapping context.Canceled", name, err)
		}
	}
	wantStored(t, docs, "a", "not found")
	wantBoltUsers(t, refs, "owner", "7")
}

// TestBoltClosed: calls after Close fail as a whole (transient, like a store
// that is down), without a panic.
func TestBoltClosed(t *testing.T) {
	t.Parallel()
	b, _ := openBolt(t)
	docs, refs := b.Docs("shops", 0), b.Refs("shops", 0)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := sinktest.Context(t)
	var be *sink.BatchError
	if err := docs.Write(ctx, []sink.Doc{sinktest.JSONDoc("a", 1)}); err == nil || errors.As(err, &be) {
		t.Errorf("Write after Close = %v, want an error for the whole call", err)
	}
	if _, err := docs.Get(ctx, "a"); err == nil || errors.Is(err, sink.ErrNotFound) {
		t.Errorf("Get after Close = %v, want an error other than ErrNotFound", err)
	}
	if err := refs.Add(ctx, []sink.Ref{{ID: "a", Source: "owner", Key: "7"}}); err == nil {
		t.Error("Add after Close succeeded")
	}
	if err := refs.Users(ctx, "owner", "7", func([]string) error { return nil }); err == nil {
		t.Error("Users after Close succeeded")
	}
}

// TestBoltLimits: what bbolt cannot hold is a permanent error, of the item
// in a Write; the rest of the batch is written.
func TestBoltLimits(t *testing.T) {
	t.Parallel()
	b, _ := openBolt(t)
	docs, refs := b.Docs("shops", 0), b.Refs("shops", 0)
	ctx := sinktest.Context(t)
	huge := strings.Repeat("x", bolt.MaxKeySize)
	err := docs.Write(ctx, []sink.Doc{sinktest.JSONDoc("ok", 1), sinktest.JSONDoc(huge, 1), {ID: huge, Version: 1, Deleted: true}})
	var be *sink.BatchError
	if !errors.As(err, &be) || len(be.Items) != 2 || !sink.IsPermanent(err) {
		t.Fatalf("Write with an id too long = %v, want a BatchError with items 1 and 2 permanent", err)
	}
	wantStored(t, docs, "ok", string(sinktest.JSONDoc("ok", 1).Body))
	if err := refs.Add(ctx, []sink.Ref{{ID: "a", Source: "owner", Key: huge}}); !sink.IsPermanent(err) {
		t.Errorf("Add of a key too long = %v, want a permanent error", err)
	}
	if err := refs.Commit(ctx, []sink.Built{{ID: huge, Version: 1}}); !sink.IsPermanent(err) {
		t.Errorf("Commit of an id too long = %v, want a permanent error", err)
	}
	// An empty projection name can hold nothing, and says so on every call.
	if err := b.Docs("", 0).Write(ctx, []sink.Doc{sinktest.JSONDoc("a", 1)}); err == nil || !strings.Contains(err.Error(), "projection name") {
		t.Errorf("Write to projection \"\" = %v", err)
	}
	if err := b.Refs("", 0).Add(ctx, []sink.Ref{{ID: "a", Source: "owner", Key: "7"}}); err == nil || !strings.Contains(err.Error(), "projection name") {
		t.Errorf("Add to projection \"\" = %v", err)
	}
}
