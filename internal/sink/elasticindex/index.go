// Package elasticindex lists and searches a projection's documents in
// Elasticsearch: Index is the search index (sink.Index) of one projection,
// behind an alias.
//
// Format: one Elasticsearch document per id, its body as built, indexed with
// the document's version as an external version (the write guard); a
// tombstone is a document {"readside_deleted": true} (DeletedField) that
// searches leave out.
//
// Administration: Ensure creates the first index, "<alias>-v1", with the
// definition's mapping and the alias; CheckMapping adds fields a definition
// gained and reports, as a *MappingConflictError, fields whose mapping
// changed, which only a rebuild rolls out. While a rebuild fills a new index
// behind "<alias>-rebuild" (RebuildSuffix; replay rebuild), every Write also
// goes there.
package elasticindex

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esapi"
	"github.com/tidwall/gjson"

	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/projections"
)

// Options configures an Index.
type Options struct {
	// Alias is the alias reads and writes go through. Required, a valid
	// lower-case index name. Ensure creates the index "<Alias>-v1" behind it.
	Alias string
	// Mapping is the index mapping body, such as {"properties": {...}}. The
	// Index adds the field "readside_deleted": {"type": "boolean"}.
	Mapping map[string]any
	// Settings are optional index settings.
	Settings map[string]any
	// Fields are the definition's fields; Search needs them (which fields
	// are searched, which text field has a keyword copy, the geo_point).
	Fields []projections.Field
}

// DeletedField is the field that marks a tombstone document in
// Elasticsearch. Readers filter out documents where it is true.
const DeletedField = "readside_deleted"

// RebuildSuffix makes the rebuild alias of an alias: "<alias>-rebuild" names
// the new index a rebuild (replay rebuild) fills while the alias still
// serves the old one. Every Write also goes to it while it exists.
const RebuildSuffix = "-rebuild"

// RebuildDiscovery is how long an Index trusts its last answer to "is there a
// rebuild alias?". A rebuild waits twice as long after creating the alias
// before it re-issues anything, so by then every projector writes both
// indices (a write that started with the old answer has had as long again
// to land).
const RebuildDiscovery = 2 * time.Second

// maxIDBytes is the longest _id Elasticsearch accepts.
const maxIDBytes = 512

// Validate reports every problem with o at once.
func (o Options) Validate() error {
	var errs []error
	a := o.Alias
	switch {
	case a == "":
		errs = append(errs, errors.New("sink: elasticsearch alias: empty"))
	case a != strings.ToLower(a):
		errs = append(errs, fmt.Errorf("sink: elasticsearch alias %q: not lower case", a))
	case strings.ContainsAny(a, ` "*\<|,>/?#:`), strings.ContainsAny(a[:1], "-_+."):
		errs = append(errs, fmt.Errorf("sink: elasticsearch alias %q: not a valid index name", a))
	case len(a)+len("-v1") > 255:
		errs = append(errs, fmt.Errorf("sink: elasticsearch alias %q: longer than 252 bytes", a))
	}
	if _, err := json.Marshal(o.Mapping); err != nil {
		errs = append(errs, fmt.Errorf("sink: elasticsearch mapping: %w", err))
	}
	if _, err := json.Marshal(o.Settings); err != nil {
		errs = append(errs, fmt.Errorf("sink: elasticsearch settings: %w", err))
	}
	return errors.Join(errs...)
}

// Index indexes documents through an alias with external versioning
// (version_type=external_gte), which is the write guard. A tombstone is a
// real document {"readside_deleted": true}: a deleted document's version is
// forgotten after index.gc_deletes, a tombstone document's is not.
//
// While a rebuild runs, the alias "<alias>-rebuild" (RebuildSuffix) points
// at the new index, and Write sends every document to both aliases in the
// same bulk request, so the new index misses no live change. Reads, Refresh
// and CheckMapping only ever use the alias itself.
//
// It is safe for concurrent use.
type Index struct {
	c      *elasticsearch.Client
	o      Options
	err    error // from Options.Validate, returned by every call
	fields searchFields

	rebuild     atomic.Pointer[rebuildSeen] // the last answer about the rebuild alias
	rebuildLock chan struct{}               // one lookup at a time
}

// rebuildSeen is whether the rebuild alias existed, and when that was asked.
type rebuildSeen struct {
	exists bool
	at     time.Time
}

// New returns an Index writing through c. When o is invalid, every call
// returns the error that o.Validate reports.
func New(c *elasticsearch.Client, o Options) *Index {
	return &Index{c: c, o: o, err: o.Validate(), fields: newSearchFields(o.Fields), rebuildLock: make(chan struct{}, 1)}
}

// rebuilding reports whether the rebuild alias exists, asking Elasticsearch
// at most once per RebuildDiscovery (HEAD _alias/<alias>-rebuild; 404: no).
// When it cannot tell, it fails: writing only the old index could lose a
// change from the new one.
func (e *Index) rebuilding(ctx context.Context) (bool, error) {
	if s := e.rebuild.Load(); s != nil && time.Since(s.at) < RebuildDiscovery {
		return s.exists, nil
	}
	select {
	case e.rebuildLock <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	defer func() { <-e.rebuildLock }()
	if s := e.rebuild.Load(); s != nil && time.Since(s.at) < RebuildDiscovery {
		return s.exists, nil // another writer asked meanwhile
	}
	asked := time.Now()
	exists, err := e.aliasExists(ctx, e.o.Alias+RebuildSuffix)
	if err != nil {
		return false, err
	}
	e.rebuild.Store(&rebuildSeen{exists: exists, at: asked})
	return exists, nil
}

// Ensure creates the index "<Alias>-v1" with the settings, the mapping and
// the alias (as its write index) in one call, unless the alias exists. It is
// safe when processes race: whoever loses finds the alias in place. It never
// changes an existing index or mapping.
func (e *Index) Ensure(ctx context.Context) error {
	if e.err != nil {
		return e.err
	}
	ok, err := e.aliasExists(ctx, e.o.Alias)
	if err != nil || ok {
		return err
	}
	body, err := e.createBody()
	if err != nil {
		return err
	}
	index := e.o.Alias + "-v1"
	res, err := e.c.Indices.Create(index, e.c.Indices.Create.WithBody(bytes.NewReader(body)),
		e.c.Indices.Create.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("sink: elasticsearch create index %q: %w", index, err)
	}
	b, err := readBody(res)
	if err != nil {
		return fmt.Errorf("sink: elasticsearch create index %q: %w", index, err)
	}
	if !res.IsError() {
		return nil
	}
	if gjson.GetBytes(b, "error.type").Str != "resource_already_exists_exception" {
		return fmt.Errorf("sink: elasticsearch create index %q: %s", index, responseError(res, b))
	}
	// Another process created it, with the alias in the same call.
	if ok, err = e.aliasExists(ctx, e.o.Alias); err != nil || ok {
		return err
	}
	return fmt.Errorf("sink: elasticsearch: index %q exists without the alias %q", index, e.o.Alias)
}

// aliasExists asks Elasticsearch whether alias exists (HEAD _alias; 404: no).
func (e *Index) aliasExists(ctx context.Context, alias string) (bool, error) {
	res, err := e.c.Indices.ExistsAlias([]string{alias}, e.c.Indices.ExistsAlias.WithContext(ctx))
	if err != nil {
		return false, fmt.Errorf("sink: elasticsearch alias %q: %w", alias, err)
	}
	b, err := readBody(res)
	if err != nil {
		return false, fmt.Errorf("sink: elasticsearch alias %q: %w", alias, err)
	}
	switch res.StatusCode {
	case 200:
		return true, nil
	case 404:
		return false, nil
	}
	return false, fmt.Errorf("sink: elasticsearch alias %q: %s", alias, responseError(res, b))
}

// createBody is the create-index body: settings, the mapping with
// DeletedField added (the caller's map is not changed), and the alias.
func (e *Index) createBody() ([]byte, error) {
	mapping := map[string]any{}
	if e.o.Mapping != nil {
		b, err := json.Marshal(e.o.Mapping)
		if err == nil {
			err = json.Unmarshal(b, &mapping) // a deep copy
		}
		if err != nil {
			return nil, fmt.Errorf("sink: elasticsearch mapping: %w", err)
		}
	}
	props, ok := mapping["properties"].(map[string]any)
	if !ok {
		if mapping["properties"] != nil {
			return nil, fmt.Errorf("sink: elasticsearch mapping: properties is not an object")
		}
		props = map[string]any{}
		mapping["properties"] = props
	}
	props[DeletedField] = map[string]any{"type": "boolean"}
	body := map[string]any{
		"mappings": mapping,
		"aliases":  map[string]any{e.o.Alias: map[string]any{"is_write_index": true}},
	}
	if e.o.Settings != nil {
		body["settings"] = e.o.Settings
	}
	return json.Marshal(body)
}

// bufs holds request and response buffers of Write, the hot path.
var bufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledBuf is the largest buffer put back in bufs.
const maxPooledBuf = 8 << 20

func putBuf(b *bytes.Buffer) {
	if b.Cap() <= maxPooledBuf {
		bufs.Put(b)
	}
}

// Write sends docs in one _bulk request through the alias: an "index" action
// per doc with version=Version and version_type=external_gte (external, so
// strictly newer, for a tombstone: see sink.Doc.Deleted), so a stale write is
// refused (409) and counts as done. Items with the same id are
// applied in order. A body with line breaks is compacted, since bulk bodies
// are one line per document; the body is otherwise sent as it is.
//
// While the rebuild alias "<alias>-rebuild" exists (looked up at most once
// per RebuildDiscovery), each doc is a second index action on it, in the same
// request and under the same guard, and the doc's result merges both: it is
// done when both are. A transient failure of the rebuild copy is retried like
// any. A permanent one (the new mapping cannot hold the document) leaves the
// document out of the new index without holding its events back or
// dead-lettering them: the rebuild's count check then refuses the swap. The
// rebuild alias turning out gone (404, as after the rebuild's swap, which
// moves the alias onto the new index in the same step) is no failure: the
// write through the alias reached the index the rebuild filled.
//
// Write returns nil; a *sink.BatchError whose items are transient (429, 5xx, a
// missing alias) or permanent (any other 4xx, such as a mapping error, with
// Elasticsearch's error type and reason; or an invalid doc); or another error
// when the request failed as a whole (unreachable, or an error status such as
// 429 or 5xx for the whole request, or the rebuild alias could not be looked
// up): transient, and some items may have been written, which a retry makes
// good.
func (e *Index) Write(ctx context.Context, docs []sink.Doc) error {
	if e.err != nil {
		return e.err
	}
	if len(docs) == 0 {
		return nil
	}
	dual, err := e.rebuilding(ctx)
	if err != nil {
		return err
	}
	per := 1 // bulk items per doc
	if dual {
		per = 2
	}
	var failed sink.Failures
	req := bufs.Get().(*bytes.Buffer)
	req.Reset()
	defer putBuf(req)
	size := 0
	for i := range docs {
		size += 96 + len(docs[i].ID) + len(docs[i].Body)
	}
	req.Grow(size * per)
	sent := make([]int, 0, len(docs)) // sent[j] is the index in docs of bulk item j
	var num [20]byte
	for i := range docs {
		d := &docs[i]
		err := d.Check()
		if err == nil && len(d.ID) > maxIDBytes {
			err = &sink.PermanentError{Err: fmt.Errorf("sink: doc %q: id longer than %d bytes", d.ID, maxIDBytes)}
		}
		if err != nil {
			failed.Add(i, err)
			continue
		}
		mark := req.Len()
		req.WriteString(`{"index":{"_id":`)
		writeJSONString(req, d.ID)
		req.WriteString(`,"version":`)
		req.Write(strconv.AppendInt(num[:0], d.Version, 10))
		if d.Deleted {
			// Strictly newer: a tombstone never hides a document of its own
			// version, which may be the entity re-created (see
			// sink.Doc.Deleted).
			req.WriteString(`,"version_type":"external"}}` + "\n")
		} else {
			req.WriteString(`,"version_type":"external_gte"}}` + "\n")
		}
		switch {
		case d.Deleted:
			req.WriteString(`{"` + DeletedField + `":true}`)
		case bytes.ContainsAny(d.Body, "\r\n"):
			if err := json.Compact(req, d.Body); err != nil {
				req.Truncate(mark)
				failed.Add(i, &sink.PermanentError{Err: fmt.Errorf("sink: doc %q: body: %w", d.ID, err)})
				continue
			}
		default:
			req.Write(d.Body)
		}
		req.WriteByte('\n')
		sent = append(sent, i)
		if dual { // the same action and body again, for the rebuild alias
			line := req.Bytes()[mark:]
			req.WriteString(`{"index":{"_index":`)
			writeJSONString(req, e.o.Alias+RebuildSuffix)
			req.WriteByte(',')
			req.Write(line[len(`{"index":{`):])
		}
	}
	if len(sent) == 0 {
		return failed.Err()
	}
	bulk := e.c.Bulk
	res, err := bulk(bytes.NewReader(req.Bytes()), bulk.WithContext(ctx), bulk.WithIndex(e.o.Alias),
		bulk.WithRequireAlias(true), bulk.WithIncludeSourceOnError(false),
		bulk.WithFilterPath("errors", "items.*.status", "items.*.error.type", "items.*.error.reason"))
	if err != nil {
		return fmt.Errorf("sink: elasticsearch bulk: %w", err)
	}
	resp := bufs.Get().(*bytes.Buffer)
	resp.Reset()
	defer putBuf(resp)
	_, err = resp.ReadFrom(res.Body)
	res.Body.Close()
	if err != nil {
		return fmt.Errorf("sink: elasticsearch bulk: read response: %w", err)
	}
	if res.IsError() {
		return fmt.Errorf("sink: elasticsearch bulk: %s", responseError(res, resp.Bytes()))
	}
	gone, err := bulkFailures(resp.Bytes(), sent, per, &failed)
	if err != nil {
		return err
	}
	if gone { // ask again on the next write rather than trust the cached answer
		e.rebuild.Store(&rebuildSeen{exists: false, at: time.Now()})
	}
	return failed.Err()
}

// bulkFailures adds to failed the errors of the items of a bulk response,
// where each doc is per items (1, or 2 with the rebuild copy second):
// sent[j/per] is the index in the docs of item j. A rebuild copy failing
// transiently is a transient error of its doc unless the doc's own item
// failed; failing for good, or finding no rebuild alias (rebuildGone reports
// it), is none. It returns an
// error when the response does not answer every item.
func bulkFailures(resp []byte, sent []int, per int, failed *sink.Failures) (rebuildGone bool, err error) {
	if !gjson.GetBytes(resp, "errors").Bool() {
		return false, nil
	}
	j := 0
	gjson.GetBytes(resp, "items").ForEach(func(_, item gjson.Result) bool {
		if j < len(sent)*per {
			var op gjson.Result
			item.ForEach(func(_, v gjson.Result) bool { op = v; return false }) // {"index": {...}}
			status, typ, reason := op.Get("status").Int(), op.Get("error.type").Str, op.Get("error.reason").Str
			err := itemError(status, typ, reason)
			i := sent[j/per]
			switch {
			case err == nil:
			case j%per == 0:
				failed.Add(i, err)
			case status == 404 && typ == "index_not_found_exception":
				rebuildGone = true
			case sink.IsPermanent(err):
				// The new index rejects the document for good (its mapping
				// cannot hold it): the document stays out of it, and the
				// rebuild's count check refuses the swap. Live events go on.
			case (*failed)[i] == nil:
				failed.Add(i, fmt.Errorf("sink: elasticsearch rebuild index: %w", err))
			}
		}
		j++
		return true
	})
	if j != len(sent)*per {
		return rebuildGone, fmt.Errorf("sink: elasticsearch bulk: %d items answered for %d sent", j, len(sent)*per)
	}
	return rebuildGone, nil
}

// itemError classifies the status of one bulk item.
func itemError(status int64, typ, reason string) error {
	switch {
	case status == 200 || status == 201:
		return nil
	case status == 409: // version conflict: what is stored is newer
		return nil
	case status == 429 || status >= 500:
		return fmt.Errorf("sink: elasticsearch item: %d %s: %s", status, typ, reason)
	case status == 404 && typ == "index_not_found_exception":
		// The alias is missing (require_alias): an operator's fix away, not a
		// bad document.
		return fmt.Errorf("sink: elasticsearch item: %d %s: %s", status, typ, reason)
	case status >= 400:
		return &sink.PermanentError{Err: fmt.Errorf("sink: elasticsearch item: %d %s: %s", status, typ, reason)}
	}
	return fmt.Errorf("sink: elasticsearch item: unexpected status %d %s: %s", status, typ, reason)
}

// Get returns what is stored for id, read in real time (including writes not
// yet refreshed) through the alias: a document, a tombstone (Deleted set, nil
// Body), or sink.ErrNotFound (see GetMany).
func (e *Index) Get(ctx context.Context, id string) (sink.Stored, error) {
	return sink.GetOne(ctx, e, id)
}

// Refresh makes every write so far visible to search through the alias.
func (e *Index) Refresh(ctx context.Context) error {
	if e.err != nil {
		return e.err
	}
	res, err := e.c.Indices.Refresh(e.c.Indices.Refresh.WithIndex(e.o.Alias), e.c.Indices.Refresh.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("sink: elasticsearch refresh %q: %w", e.o.Alias, err)
	}
	b, err := readBody(res)
	if err != nil {
		return fmt.Errorf("sink: elasticsearch refresh %q: %w", e.o.Alias, err)
	}
	if res.IsError() {
		return fmt.Errorf("sink: elasticsearch refresh %q: %s", e.o.Alias, responseError(res, b))
	}
	return nil
}

func readBody(res *esapi.Response) ([]byte, error) {
	defer res.Body.Close()
	return io.ReadAll(res.Body)
}

// responseError describes a failed response by its status, error type and
// reason, and the first root cause's when it is another, without the rest
// of the body.
func responseError(res *esapi.Response, body []byte) string {
	typ := gjson.GetBytes(body, "error.type").Str
	if typ == "" {
		const show = 200
		if len(body) > show {
			body = body[:show]
		}
		return fmt.Sprintf("%s: %s", res.Status(), body)
	}
	why := fmt.Sprintf("%s: %s: %s", res.Status(), typ, gjson.GetBytes(body, "error.reason").Str)
	// "all shards failed" says little: the first root cause says why (a
	// point in time gone is search_context_missing_exception).
	if root := gjson.GetBytes(body, "error.root_cause.0"); root.Get("type").Str != "" && root.Get("type").Str != typ {
		why += fmt.Sprintf(" (%s: %s)", root.Get("type").Str, root.Get("reason").Str)
	}
	return why
}

// writeJSONString writes s as a JSON string; s is valid UTF-8.
func writeJSONString(b *bytes.Buffer, s string) {
	b.Write(appendJSONString(b.AvailableBuffer(), s))
}

// appendJSONString appends s as a JSON string; s is valid UTF-8. Plain
// ASCII, the common case, is appended as it is.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x7f {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	return append(append(append(b, '"'), s...), '"')
}
