package sampleapi

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

// A journal keeps an API's changes in a file of JSON lines: a header naming
// the data (shops and seed), then one line per changed entity with its new
// state. Replaying the lines, the last one of an entity wins, gives the
// changed maps back; the clock is the highest version seen.
type journal struct {
	f *os.File
}

// journalHeader is the first line: the data the changes apply to.
type journalHeader struct {
	Shops int    `json:"shops"`
	Seed  uint64 `json:"seed"`
}

// journalLine is one entity's state after a change.
type journalLine struct {
	Kind    string `json:"kind"`
	ID      int    `json:"id"`
	Rev     int    `json:"rev"`
	Version int64  `json:"version"`
	Deleted bool   `json:"deleted,omitempty"`
}

var kindNames = [...]string{changedShops: "shop", changedOwners: "owner", changedMenus: "menu", changedAds: "ads"}

// Open returns the API of o whose changes are kept in the file at path, so a
// restarted process serves what the last one served: the changes the file
// holds are applied first (a file made for other Shops or Seed is refused,
// with how to start afresh), the file is compacted to one line per changed
// entity, and every later mutation appends its line before it returns (a
// mutation whose line cannot be written fails and changes nothing). Lines
// are not synced to disk one by one: a process killed keeps them, a machine
// that loses power may lose the last ones. A last line cut short by a crash
// is dropped. Close the API when done.
func Open(path string, o Options) (*API, error) {
	a := New(o)
	head := journalHeader{Shops: a.n, Seed: a.seed}
	if err := a.load(path, head); err != nil {
		return nil, err
	}
	// Compact: write the state as it is now, then swap it in atomically.
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("sampleapi: %w", err)
	}
	tmp := path + ".tmp"
	if err := a.writeSnapshot(tmp, head); err != nil {
		os.Remove(tmp)
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, fmt.Errorf("sampleapi: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return nil, fmt.Errorf("sampleapi: %w", err)
	}
	a.journal = &journal{f: f}
	return a, nil
}

// Close closes the API's journal, if it has one. Mutations after Close fail.
func (a *API) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.journal == nil || a.journal.f == nil {
		return nil
	}
	err := a.journal.f.Close()
	a.journal.f = nil
	return err
}

// load applies the changes kept at path, which may not exist yet.
func (a *API) load(path string, want journalHeader) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sampleapi: %w", err)
	}
	if i := bytes.LastIndexByte(b, '\n'); i != len(b)-1 {
		b = b[:i+1] // the last line was cut short: its change was never confirmed
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		if n == 1 {
			var h journalHeader
			if err := json.Unmarshal(sc.Bytes(), &h); err != nil {
				return fmt.Errorf("sampleapi: %s:1: not a journal header: %w", path, err)
			}
			if h != want {
				return fmt.Errorf("sampleapi: %s holds the changes of %d shops with seed %d, not %d shops with seed %d: remove it to start afresh",
					path, h.Shops, h.Seed, want.Shops, want.Seed)
			}
			continue
		}
		var l journalLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return fmt.Errorf("sampleapi: %s:%d: %w", path, n, err)
		}
		kind := slices.Index(kindNames[:], l.Kind)
		if kind < 0 || l.Version <= baseVersion || l.Rev < 0 {
			return fmt.Errorf("sampleapi: %s:%d: not a change: %s", path, n, sc.Bytes())
		}
		a.changed[kind][l.ID] = state{rev: l.Rev, version: l.Version, deleted: l.Deleted}
		a.clock = max(a.clock, l.Version)
	}
	return sc.Err()
}

// writeSnapshot writes the header and one line per changed entity to path.
func (a *API) writeSnapshot(path string, head journalHeader) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("sampleapi: %w", err)
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	enc.Encode(head)
	for kind, m := range a.changed {
		ids := make([]int, 0, len(m))
		for id := range m {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		for _, id := range ids {
			st := m[id]
			enc.Encode(journalLine{Kind: kindNames[kind], ID: id, Rev: st.rev, Version: st.version, Deleted: st.deleted})
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("sampleapi: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sampleapi: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("sampleapi: %w", err)
	}
	return nil
}

// record appends the line of one change; a.mu is held.
func (j *journal) record(kind, id int, st state) error {
	if j.f == nil {
		return errors.New("sampleapi: the API is closed")
	}
	b, _ := json.Marshal(journalLine{Kind: kindNames[kind], ID: id, Rev: st.rev, Version: st.version, Deleted: st.deleted})
	if _, err := j.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("sampleapi: keeping a change: %w", err)
	}
	return nil
}
