// Package projections defines read models: which events trigger them, which
// source API holds the state, how that state is flattened into one document,
// and where the document is stored.
//
// A Definition is loaded from a YAML file (see Load), validated with every
// problem reported at once, and then used read-only: it is safe for
// concurrent use by many goroutines.
package projections

import (
	"time"

	"github.com/readside/readside/internal/source"
)

// Definition is one projection: a named read model.
type Definition struct {
	// Name names the projection: its consumer, its metrics and its query API path.
	// Lower case letters, digits, '_' and '-'.
	Name string `yaml:"name"`
	// Triggers are the event subjects that mark one of its documents as changed.
	Triggers []Trigger `yaml:"triggers"`
	// Sources are the source APIs whose answers the document is built from.
	// The first is the primary source, fetched by the document's id.
	Sources []Source `yaml:"sources"`
	// Version names where the state's version is, as "<source>.<path>": an
	// integer or an RFC 3339 timestamp. Empty: the triggering event's stream
	// sequence is the version.
	Version string `yaml:"version"`
	// Fields are the document's fields, in order. Every document also has "id".
	Fields []Field `yaml:"fields"`
	// Redis says where the document is stored for reads by id.
	Redis RedisStore `yaml:"redis"`
	// Elasticsearch says where the document is indexed for list and search.
	Elasticsearch ElasticStore `yaml:"elasticsearch"`

	// File is the file the definition was loaded from, for error messages.
	File string `yaml:"-"`

	sources []compiledSource
}

// Trigger is an event subject and where its events carry the entity id.
type Trigger struct {
	// Subject is a NATS subject filter, e.g. "shop.changed.*".
	Subject string `yaml:"subject"`
	// ID says where the id is: "subject" (the subject's last token, the
	// default) or "body.<path>" (a field of the event's small JSON body, e.g.
	// "body.shopId").
	ID string `yaml:"id"`
	// Lookup names a joined source when the event's id is that source's
	// entity (owner 7), not a document's: every document that used it is
	// projected again.
	Lookup string `yaml:"lookup"`
}

// Source is a source API the document is built from.
type Source struct {
	// Name names the source in field paths ("shop.name").
	Name string `yaml:"name"`
	// URL is the URL template. "{id}" is the document's id; a joined source
	// may use fields of sources defined before it, "{shop.ownerId}". Values
	// are escaped so that they can never change the path, the query or the host.
	URL string `yaml:"url"`
	// Optional: when this source fails, the document is written without its
	// part, marked partial, and fetched again later. A required source
	// failing holds the document back until it answers.
	Optional bool `yaml:"optional"`
	// Timeout bounds one request to this source [5s].
	Timeout time.Duration `yaml:"timeout"`
	// Batch, on the primary source, fetches many ids in one request.
	Batch *Batch `yaml:"batch"`
	// List, on the primary source, enumerates every id, page by page.
	List *List `yaml:"list"`
}

// Batch is an endpoint answering many entities at once: "/shops?ids={ids}".
type Batch struct {
	// URL has the placeholder {ids}: the ids joined with commas.
	URL string `yaml:"url"`
	// Items is the path of the array of entities in the answer ["": the answer is the array].
	Items string `yaml:"items"`
	// ID is the path of the id in each entity ["id"].
	ID string `yaml:"id"`
	// Max is the most ids per request [100].
	Max int `yaml:"max"`
}

// List is a paged endpoint enumerating every id: "/shops?cursor={cursor}".
type List struct {
	// URL has the placeholder {cursor}: empty for the first page.
	URL string `yaml:"url"`
	// IDs is the path of the ids in a page, e.g. "items.#.id".
	IDs string `yaml:"ids"`
	// Next is the path of the next page's cursor; missing, null or "" ends the list.
	Next string `yaml:"next"`
}

// Field is one field of the document.
type Field struct {
	// Name is the field's name in the document.
	Name string `yaml:"name"`
	// From is "<source>.<path>", a gjson path into that source's answer
	// ("shop.address.city", "shop.tags"); "<source>" alone is the whole answer.
	From string `yaml:"from"`
	// Type is one of the FieldType constants.
	Type FieldType `yaml:"type"`
	// Array: the value is a list of Type.
	Array bool `yaml:"array"`
	// Default is used when the source has no value at From.
	Default any `yaml:"default"`
	// Search: full-text searchable (text fields).
	Search bool `yaml:"search"`
	// Filter: usable in list filters.
	Filter bool `yaml:"filter"`
	// Sort: usable as a sort key.
	Sort bool `yaml:"sort"`
}

// FieldType is the type of a document field, which decides its JSON form and
// its Elasticsearch mapping.
type FieldType string

// The field types.
const (
	Keyword  FieldType = "keyword"   // an exact string
	Text     FieldType = "text"      // a string for full-text search
	Integer  FieldType = "integer"   // a 64-bit integer
	Float    FieldType = "float"     // a 64-bit float
	Boolean  FieldType = "boolean"   // true or false
	Date     FieldType = "date"      // RFC 3339 string or epoch milliseconds
	GeoPoint FieldType = "geo_point" // {"lat":..,"lon":..}, "lat,lon" or [lon,lat]
	Object   FieldType = "object"    // any JSON, stored as is, not indexed
)

// RedisStore is where documents are stored for reads by id.
type RedisStore struct {
	// Key is the key pattern, containing "{id}", e.g. "shop:{id}".
	Key string `yaml:"key"`
}

// ElasticStore is where documents are indexed for list and search.
type ElasticStore struct {
	// Alias is the Elasticsearch alias reads and writes go through.
	Alias string `yaml:"alias"`
}

type compiledSource struct {
	Source
	url   *source.Template
	refs  []string // placeholders other than {id}: "<source>.<path>"
	batch *source.Template
	list  *source.Template
}
