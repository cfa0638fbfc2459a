package projections

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/tidwall/gjson"
)

// PartialField lists, in a partial document, the optional sources it lacks.
const PartialField = "readside_partial"

// ReprojectPrefix starts the subjects of the events Readside itself publishes
// to project a document again (a joined entity changed, or a document was
// written partial); the id is in the body: {"id": "42"}.
const ReprojectPrefix = "readside.reproject."

// ReplayPrefix starts the subjects of events re-issued by operators (the
// replay tool); the id is in the body: {"id": "42"}. They have a consumer of
// their own, so a replay never holds live events back.
const ReplayPrefix = "readside.replay."

// RetryPrefix starts the subjects of the retries of partial documents
// ({"id": "42"}): a consumer of their own delays them, so documents waiting
// for an optional source never hold live events back.
const RetryPrefix = "readside.retry."

// EventBody is the body of the events Readside itself publishes on a
// projection's own subjects (ReprojectSubject, ReplaySubject, RetrySubject):
// a JSON object with the entity's id, {"id": "42"}, which Route reads back.
func EventBody(id string) []byte {
	b, _ := json.Marshal(struct {
		ID string `json:"id"`
	}{id}) // a string always marshals
	return b
}

// RetrySubject is the subject of this projection's partial-document retries.
func (d *Definition) RetrySubject() string { return RetryPrefix + d.Name }

// ReprojectSubject is the subject of this projection's own re-project events.
func (d *Definition) ReprojectSubject() string { return ReprojectPrefix + d.Name }

// ReplaySubject is the subject of this projection's re-issued events.
func (d *Definition) ReplaySubject() string { return ReplayPrefix + d.Name }

// TriggerSubjects are the subjects of the projection's triggers: what its
// live consumer reads.
func (d *Definition) TriggerSubjects() []string {
	out := make([]string, 0, len(d.Triggers))
	for _, t := range d.Triggers {
		out = append(out, t.Subject)
	}
	return out
}

// Subjects are the trigger subjects and the re-project subject: every
// subject that asks for a document to be built again as it is now.
func (d *Definition) Subjects() []string {
	return append(d.TriggerSubjects(), d.ReprojectSubject())
}

// AllSubjects are the live subjects, the replay subject and the retry
// subject: what the events stream must capture for this projection.
func (d *Definition) AllSubjects() []string {
	return append(d.Subjects(), d.ReplaySubject(), d.RetrySubject())
}

// Event is what an event asks for: project document ID again, or, with
// Lookup, every document that used entity ID of joined source Lookup.
type Event struct {
	ID     string
	Lookup string
}

// Route reads an event: which id it carries and whether it needs a reverse
// lookup. The error wraps ErrBadEvent when the event is malformed.
func (d *Definition) Route(subject string, body []byte) (Event, error) {
	if subject == d.ReprojectSubject() || subject == d.ReplaySubject() || subject == d.RetrySubject() {
		id, err := Trigger{ID: "body.id"}.IDOf(subject, body)
		return Event{ID: id}, err
	}
	for _, t := range d.Triggers {
		if SubjectMatches(t.Subject, subject) {
			id, err := t.IDOf(subject, body)
			return Event{ID: id, Lookup: t.Lookup}, err
		}
	}
	return Event{}, fmt.Errorf("%w: subject %q matches no trigger of projection %s", ErrBadEvent, subject, d.Name)
}

// VersionFromPrimary reports whether the version is a field of the primary
// source, so it is known before any join is fetched.
func (d *Definition) VersionFromPrimary() bool {
	src, _, _ := strings.Cut(d.Version, ".")
	return d.Version != "" && src == d.Sources[0].Name
}

// HasLookups reports whether some trigger looks up a joined source.
func (d *Definition) HasLookups() bool {
	for _, t := range d.Triggers {
		if t.Lookup != "" {
			return true
		}
	}
	return false
}

// Looked reports whether some trigger looks up source i: the documents that
// use an entity of it must be recorded.
func (d *Definition) Looked(i int) bool {
	for _, t := range d.Triggers {
		if t.Lookup == d.Sources[i].Name {
			return true
		}
	}
	return false
}

// JoinURL returns the URL of source i for document id, its placeholders
// filled from the answers of the sources before it. ok is false when an
// answer lacks a value the URL needs: the source is not joined.
func (d *Definition) JoinURL(i int, id string, answers map[string][]byte) (url string, ok bool, err error) {
	missing := false
	url, err = d.sources[i].url.Expand(func(name string) (string, bool) {
		if name == "id" {
			return id, true
		}
		v, found := refValue(answers, name)
		missing = missing || !found
		return v, found
	})
	if missing {
		return "", false, nil
	}
	return url, err == nil, err
}

// RefKey is the entity of source i a document uses: the value of the one
// field its URL is fetched by (for /owners/{shop.ownerId}, the owner id).
func (d *Definition) RefKey(i int, answers map[string][]byte) (string, bool) {
	if len(d.sources[i].refs) != 1 {
		return "", false
	}
	return refValue(answers, d.sources[i].refs[0])
}

func refValue(answers map[string][]byte, from string) (string, bool) {
	v := lookup(answers, from)
	switch v.Type {
	case gjson.String:
		return v.Str, v.Str != ""
	case gjson.Number:
		return v.Raw, true
	}
	return "", false
}

// Batchable reports whether the primary source has a batch endpoint, and the
// most ids per request.
func (d *Definition) Batchable() (max int, ok bool) {
	b := d.Sources[0].Batch
	if b == nil {
		return 0, false
	}
	if b.Max <= 0 {
		return 100, true
	}
	return b.Max, true
}

// BatchURL returns the batch endpoint's URL for ids. Ids containing a comma
// cannot be batched: fetch them one by one.
func (d *Definition) BatchURL(ids []string) (string, error) {
	return d.sources[0].batch.Expand(func(string) (string, bool) { return strings.Join(ids, ","), true })
}

// SplitBatch splits a batch answer into each entity's answer, by id.
func (d *Definition) SplitBatch(body []byte) (map[string][]byte, error) {
	b := d.Sources[0].Batch
	if !gjson.ValidBytes(body) {
		return nil, fmt.Errorf("%w: the batch endpoint did not answer JSON", ErrBadSource)
	}
	items := gjson.ParseBytes(body)
	if b.Items != "" {
		items = items.Get(b.Items)
	}
	if !items.IsArray() {
		return nil, fmt.Errorf("%w: the batch answer has no array at %q", ErrBadSource, b.Items)
	}
	idPath := b.ID
	if idPath == "" {
		idPath = "id"
	}
	out := map[string][]byte{}
	for _, it := range items.Array() {
		v := it.Get(idPath)
		id := v.Str
		if v.Type == gjson.Number {
			id = v.Raw
		}
		if id != "" {
			out[id] = []byte(it.Raw)
		}
	}
	return out, nil
}

// Listable reports whether the primary source has a list endpoint.
func (d *Definition) Listable() bool { return d.Sources[0].List != nil }

// ListURL returns the list endpoint's URL for a page ("" for the first).
func (d *Definition) ListURL(cursor string) (string, error) {
	return d.sources[0].list.Expand(func(string) (string, bool) { return cursor, true })
}

// ListPage reads one page of the list endpoint: its ids, and the cursor of
// the next page ("" after the last).
func (d *Definition) ListPage(body []byte) (ids []string, next string, err error) {
	l := d.Sources[0].List
	if !gjson.ValidBytes(body) {
		return nil, "", fmt.Errorf("%w: the list endpoint did not answer JSON", ErrBadSource)
	}
	for _, v := range gjson.GetBytes(body, l.IDs).Array() {
		switch v.Type {
		case gjson.String:
			ids = append(ids, v.Str)
		case gjson.Number:
			ids = append(ids, v.Raw)
		}
	}
	if l.Next != "" {
		n := gjson.GetBytes(body, l.Next)
		if n.Type == gjson.String || n.Type == gjson.Number {
			next = n.String()
		}
	}
	return ids, next, nil
}
