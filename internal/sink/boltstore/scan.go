package boltstore

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/readside/readside/internal/sink"
)

// What Docs offers operators' tools besides reads and writes (see
// sink.Scanner, sink.Counter, sink.Reader).
var (
	_ sink.Scanner = (*Docs)(nil)
	_ sink.Counter = (*Docs)(nil)
	_ sink.Reader  = (*Docs)(nil)
)

// boltScanPage is the number of records of a page of Scan.
const boltScanPage = 500

// Scan walks the projection's ids in key (byte) order, boltScanPage records
// a page, each page in a read transaction of its own, so fn runs outside any
// transaction and a long scan holds no snapshot of the file. A position is
// the hex of the last id of the previous page: a Scan from it starts with
// the first id after that one, so it stays valid whatever is written in
// between. A tombstone that has expired is left out, as Get leaves it out; a
// value that does not decode fails the scan, naming its id. When the store
// holds nothing after from, fn is not called.
func (s *Docs) Scan(ctx context.Context, from string, fn func(sink.ScanPage) error) error {
	if s.err != nil {
		return s.err
	}
	after, err := hex.DecodeString(from)
	if err != nil {
		return fmt.Errorf("sink: bolt scan %s: %q (the hex of an id): %w", s.projection, from, sink.ErrBadPosition)
	}
	started := from != ""
	at := from
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("sink: bolt scan %s: %w", s.projection, err)
		}
		page, last, more, err := s.scanPage(after, started)
		if err != nil {
			return fmt.Errorf("sink: bolt scan %s: %w", s.projection, err)
		}
		if last == nil {
			return nil // nothing after from
		}
		page.At = at
		if more {
			page.Next = hex.EncodeToString(last)
		}
		if err := fn(page); err != nil {
			return err
		}
		if !more {
			return nil
		}
		after, started, at = last, true, page.Next
	}
}

// scanPage reads up to boltScanPage records after the id after (from the first
// one unless started) in one read transaction. last is the last id of the
// page, nil when there was none; more reports whether a record that has not
// expired follows it.
func (s *Docs) scanPage(after []byte, started bool) (page sink.ScanPage, last []byte, more bool, err error) {
	now := time.Now().UnixMilli()
	err = s.db.View(func(tx *bolt.Tx) error {
		b := bucket(tx, s.ids)
		if b == nil {
			return nil // never written
		}
		c := b.Cursor()
		k, v := c.First()
		if started {
			k, v = c.Seek(after)
			if k != nil && bytes.Equal(k, after) {
				k, v = c.Next()
			}
		}
		n := 0
		for ; k != nil; k, v = c.Next() {
			st, until, err := decodeBoltValue(v)
			if err != nil {
				return fmt.Errorf("%q: %w", k, err)
			}
			if expired(until, now) {
				continue
			}
			if n == boltScanPage {
				more = true // k is after the page
				return nil
			}
			if st.Deleted {
				page.Deleted = append(page.Deleted, string(k))
			} else {
				page.IDs = append(page.IDs, string(k))
			}
			last = bytes.Clone(k) // k lives in the file's memory map only while tx does
			n++
		}
		return nil
	})
	return page, last, more, err
}

// Count counts the live documents (neither tombstones nor anything expired)
// by walking every record in one read transaction: a cost in the number of
// records, which the embedded store's sizes (one machine's data) keep small;
// the file keeps no count of its own.
func (s *Docs) Count(ctx context.Context) (int64, error) {
	if s.err != nil {
		return 0, s.err
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("sink: bolt count %s: %w", s.projection, err)
	}
	now := time.Now().UnixMilli()
	var n int64
	err := s.db.View(func(tx *bolt.Tx) error {
		b := bucket(tx, s.ids)
		if b == nil {
			return nil
		}
		seen := 0
		return b.ForEach(func(k, v []byte) error {
			if seen++; seen%4096 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			st, until, err := decodeBoltValue(v)
			if err != nil {
				return fmt.Errorf("%q: %w", k, err)
			}
			if !st.Deleted && !expired(until, now) {
				n++
			}
			return nil
		})
	})
	if err != nil {
		return 0, fmt.Errorf("sink: bolt count %s: %w", s.projection, err)
	}
	return n, nil
}
