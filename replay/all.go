package replay

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/internal/source"
	"github.com/readside/readside/projections"
)

// Origin says where All finds every id of a projection.
type Origin string

// The origins of All.
const (
	// FromAuto is FromList when the definition has a list endpoint, else FromDocs.
	FromAuto Origin = ""
	// FromList pages through the primary source's list endpoint: every
	// entity the source knows, so it also repairs stores that lost documents.
	FromList Origin = "list"
	// FromDocs scans the doc store (sink.Scanner: Redis SCAN MATCH on the
	// key pattern, each node of a Redis Cluster in turn; the embedded docs
	// in id order), skipping tombstones: every document it holds.
	FromDocs Origin = "docs"
	// FromIndex scans the search index (sink.Scanner: Elasticsearch behind
	// the alias, sorted by id; the embedded index in id order), skipping
	// tombstones: every document it holds, as of its last refresh.
	FromIndex Origin = "index"
)

// ParseOrigin reads an origin: "", "auto", "list", "docs" ("redis") or
// "index" ("elasticsearch", "es").
func ParseOrigin(s string) (Origin, error) {
	switch strings.ToLower(s) {
	case "", "auto":
		return FromAuto, nil
	case "list", "source":
		return FromList, nil
	case "docs", "redis":
		return FromDocs, nil
	case "index", "elasticsearch", "es":
		return FromIndex, nil
	}
	return "", fmt.Errorf("replay: %q is not an origin of ids: use auto, list, docs (redis) or index (elasticsearch)", s)
}

// All re-issues every id of def, found at from, at most o.Rate per second.
// The total is not known in advance, except from a store that is a
// sink.Counter (Elasticsearch, the embedded stores). Ids are not
// de-duplicated across pages (a list that changes while it is paged may
// repeat one; re-issuing twice is harmless). The Result's Source says where
// the ids came from, and so does a line in o.Notes as the run starts.
//
// The run is keyed by the projection and the origin; its position is the
// page being worked and how many of its ids are done.
func (e *Env) All(ctx context.Context, def *projections.Definition, from Origin, o Options) (*Result, error) {
	if from == FromAuto {
		from = FromDocs
		if def.Listable() {
			from = FromList
		}
	}
	var walk func(context.Context, *projections.Definition, *run) error
	switch from {
	case FromList:
		if !def.Listable() {
			return nil, fmt.Errorf("replay: projection %s has no list endpoint (sources[0].list in %s): replay all from docs or index instead", def.Name, def.File)
		}
		walk = e.allFromList
	case FromDocs, FromIndex:
		st, err := e.stores(ctx, def, "all --from "+string(from))
		if err != nil {
			return nil, err
		}
		name, store := st.DocsName, any(st.Docs)
		if from == FromIndex {
			name, store = st.IndexName, st.Index
		}
		sc, ok := store.(sink.Scanner)
		if !ok { // nil too
			return nil, fmt.Errorf("replay: all --from %s: the %s store cannot list its ids: replay all from another origin", from, cmp.Or(name, string(from)))
		}
		walk = func(ctx context.Context, def *projections.Definition, r *run) error {
			return r.allFromStore(ctx, name, sc)
		}
	default:
		return nil, fmt.Errorf("replay: unknown origin %q", from)
	}
	if err := e.checkEvents(ctx, def); err != nil {
		return nil, err
	}
	r, err := e.begin(def, "all "+def.Name, "all "+def.Name+" from="+string(from), "ids", o)
	if err != nil {
		return nil, err
	}
	return r.end(ctx, walk(ctx, def, r))
}

// source notes where the ids come from.
func (r *run) source(s string) {
	r.res.Source = s
	fmt.Fprintf(r.o.Notes, "ids from %s\n", s)
}

// validIDs keeps the ids that are valid, recording the others as problems.
func (r *run) validIDs(ids []string, where func(id string) string) []string {
	out := ids[:0:0]
	for _, id := range ids {
		if err := projections.ValidateID(id); err != nil {
			r.cp.Counts.Invalid++
			r.problem(Problem{Where: where(id), Input: id, Why: strings.TrimPrefix(err.Error(), projections.ErrBadEvent.Error()+": ")})
			continue
		}
		out = append(out, id)
	}
	return out
}

// allFromList pages through the list endpoint. The position is the cursor
// of the page being worked and how many of its ids are done.
func (e *Env) allFromList(ctx context.Context, def *projections.Definition, r *run) error {
	first, err := def.ListURL("")
	if err != nil {
		return fmt.Errorf("replay: list endpoint: %w", err)
	}
	r.source(fmt.Sprintf("the list endpoint of source %s (%s)", def.Sources[0].Name, redactedURL(first)))
	c := source.New(source.Options{Transport: e.Transport, Timeout: def.SourceTimeout(0)})
	cursor, skip := r.cp.Position.Cursor, r.cp.Position.Skip
	if r.resumed {
		fmt.Fprintf(r.o.Notes, "continuing at the page with cursor %q, after its first %d ids\n", cursor, skip)
	}
	r.show(-1)
	for page := 1; ; page++ {
		url, err := def.ListURL(cursor)
		if err != nil {
			return fmt.Errorf("replay: list endpoint, cursor %q: %w", cursor, err)
		}
		body, err := c.Get(ctx, url)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("replay: list endpoint, page %d (cursor %q): %w", page, cursor, err)
		}
		ids, next, err := def.ListPage(body)
		if err != nil {
			return fmt.Errorf("replay: list endpoint, page %d (cursor %q): %w", page, cursor, err)
		}
		if next != "" && next == cursor {
			return fmt.Errorf("replay: list endpoint, page %d: the next cursor is the page's own (%q): the endpoint would loop", page, cursor)
		}
		ids = r.validIDs(ids, func(string) string { return fmt.Sprintf("list page %d", page) })
		skip = min(skip, len(ids))
		at := cursor
		if err := r.reissue(ctx, ids[skip:], true, func(n int) Position { return Position{Cursor: at, Skip: skip + n} }); err != nil {
			return err
		}
		if next == "" {
			return nil
		}
		cursor, skip = next, 0
		r.moved(Position{Cursor: cursor}, 0)
	}
}

// redactedURL drops a password from a URL, for notes and errors.
func redactedURL(raw string) string {
	if i := strings.Index(raw, "://"); i >= 0 {
		rest := raw[i+3:]
		if at := strings.IndexByte(rest, '@'); at >= 0 && at < strings.IndexAny(rest+"/", "/?#") {
			if user, _, hasPass := strings.Cut(rest[:at], ":"); hasPass {
				return raw[:i+3] + user + ":xxxxx" + rest[at:]
			}
		}
	}
	return raw
}

// allFromStore scans a store (see sink.Scanner), skipping tombstones. The
// position is the scan's position of the page being worked and how many of
// its ids are done.
func (r *run) allFromStore(ctx context.Context, name string, sc sink.Scanner) error {
	r.source(fmt.Sprintf("the %s store (a scan; tombstones skipped)", name))
	total := int64(-1)
	if c, ok := sc.(sink.Counter); ok {
		n, err := c.Count(ctx)
		switch {
		case err == nil:
			total = n
		case !errors.Is(err, sink.ErrNotSupported):
			return fmt.Errorf("replay: counting %s: %w", name, err)
		}
	}
	pos := r.cp.Position
	if r.resumed {
		fmt.Fprintf(r.o.Notes, "continuing the scan at position %q, after %d ids of its page\n", pos.Cursor, pos.Skip)
	}
	r.show(total)
	var stopped error // re-issuing failed (or ctx ended): not the scan's fault
	err := sc.Scan(ctx, pos.Cursor, func(p sink.ScanPage) error {
		r.cp.Counts.Tombstones += int64(len(p.Deleted))
		ids := r.validIDs(p.IDs, func(string) string { return name })
		skip := 0
		if p.At == pos.Cursor {
			skip = min(pos.Skip, len(ids))
		}
		pos = Position{}
		if stopped = r.reissue(ctx, ids[skip:], true, func(k int) Position { return Position{Cursor: p.At, Skip: skip + k} }); stopped != nil {
			return stopped
		}
		if p.Next != "" {
			r.moved(Position{Cursor: p.Next}, 0)
		}
		return nil
	})
	if err != nil && !errors.Is(err, stopped) && ctx.Err() == nil {
		return fmt.Errorf("replay: scanning %s: %w", name, err)
	}
	return err
}
