package bleveindex

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/blevesearch/bleve/v2"
	"github.com/blevesearch/bleve/v2/analysis/analyzer/custom"
	"github.com/blevesearch/bleve/v2/analysis/analyzer/keyword"
	"github.com/blevesearch/bleve/v2/analysis/token/length"
	"github.com/blevesearch/bleve/v2/analysis/token/lowercase"
	"github.com/blevesearch/bleve/v2/analysis/tokenizer/single"
	"github.com/blevesearch/bleve/v2/analysis/tokenizer/unicode"
	"github.com/blevesearch/bleve/v2/mapping"
	index "github.com/blevesearch/bleve_index_api"

	"github.com/readside/readside/projections"
)

// Names in the bleve index. Projection fields cannot start with
// "readside_", and no field name holds a dot, so none of these can clash
// with a field or with a text field's keyword copy ("<field>.raw").
const (
	// bleveValue is the stored (not indexed) field holding what Get returns,
	// in the layout of sink.DecodeValue.
	bleveValue = "readside_value"
	// bleveLive is an indexed boolean that only live documents have: every
	// search keeps to it, so tombstones are never listed.
	bleveLive = "readside_live"
	// bleveText analyses text fields like Elasticsearch's standard analyzer:
	// Unicode word boundaries (UAX #29), lower-cased, no stop words (bleve's
	// own "standard" analyzer drops English stop words).
	bleveText = "readside_standard"
	// bleveRaw is a text field's keyword copy for filters and sorts: the
	// whole value, left out beyond rawMaxChars like Elasticsearch's
	// ignore_above.
	bleveRaw         = "readside_raw"
	bleveIgnoreAbove = "readside_ignore_above"
	rawMaxChars      = 256
	rawSuffix        = ".raw"
	// bleveIntPrefix names an integer field's exact copy: bleve's numbers
	// are float64, exact only up to 2^53, so filters and sorts on an integer
	// use "readside_int_<field>", a keyword holding the int64 in a form
	// whose byte order is the numbers' order (see intTerm).
	bleveIntPrefix = "readside_int_"
	// bleveLayout is the version of how schema.go and values.go map fields to
	// the index.
	// Changing the mapping code must change it, so that every index built
	// the old way is re-indexed.
	bleveLayout = 2
)

// exactInt reports whether f has an exact integer copy.
func exactInt(f projections.Field) bool {
	return f.Type == projections.Integer && (f.Filter || f.Sort)
}

// intTerm encodes n so that the terms sort as the numbers do: the sign bit
// flipped makes the order of uint64 that of int64, and fixed-width hex keeps
// it in byte order.
func intTerm(n int64) string {
	return fmt.Sprintf("%016x", uint64(n)^(1<<63))
}

// bleveSchema is what the index knows of a projection's fields: how to index
// them and how to query them.
type bleveSchema struct {
	fields     map[string]projections.Field
	indexed    []projections.Field // fields the index holds, in order
	searchable []string            // text fields sink.Query.Text looks in
	geo        string              // the geo_point field Near applies to ("": none)
	geoArray   bool                // it may hold several points
}

func newBleveSchema(fields []projections.Field) *bleveSchema {
	s := &bleveSchema{fields: make(map[string]projections.Field, len(fields))}
	for _, f := range fields {
		s.fields[f.Name] = f
		if indexedField(f) {
			s.indexed = append(s.indexed, f)
		}
		if f.Search && f.Type == projections.Text {
			s.searchable = append(s.searchable, f.Name)
		}
		if f.Type == projections.GeoPoint && s.geo == "" {
			s.geo, s.geoArray = f.Name, f.Array
		}
	}
	return s
}

// indexedField reports whether the index holds f, as Elasticsearch's
// mapping does (projections.Definition.Mapping): a field that is searched,
// filtered or sorted, and a geo_point always.
func indexedField(f projections.Field) bool {
	switch f.Type {
	case projections.Object:
		return false
	case projections.GeoPoint:
		return true
	}
	return f.Search || f.Filter || f.Sort
}

// bleveMapping is the index mapping of fields. Only the fields listed are
// indexed (no dynamic mapping); nothing is stored but bleveValue, which the
// sink adds to each document itself.
func bleveMapping(fields []projections.Field) (*mapping.IndexMappingImpl, error) {
	im := bleve.NewIndexMapping()
	im.ScoringModel = index.BM25Scoring // as Elasticsearch scores
	im.IndexDynamic, im.StoreDynamic, im.DocValuesDynamic = false, false, false
	im.DefaultAnalyzer = bleveText
	if err := im.AddCustomAnalyzer(bleveText, map[string]any{
		"type": custom.Name, "tokenizer": unicode.Name, "token_filters": []any{lowercase.Name},
	}); err != nil {
		return nil, err
	}
	if err := im.AddCustomTokenFilter(bleveIgnoreAbove, map[string]any{
		"type": length.Name, "max": float64(rawMaxChars),
	}); err != nil {
		return nil, err
	}
	if err := im.AddCustomAnalyzer(bleveRaw, map[string]any{
		"type": custom.Name, "tokenizer": single.Name, "token_filters": []any{bleveIgnoreAbove},
	}); err != nil {
		return nil, err
	}
	dm := bleve.NewDocumentStaticMapping()
	dm.AddSubDocumentMapping("_all", bleve.NewDocumentDisabledMapping())
	for _, f := range fields {
		if !indexedField(f) {
			continue
		}
		sub := bleve.NewDocumentStaticMapping() // a geo point's lat and lon are not fields
		for _, fm := range fieldMappings(f) {
			sub.AddFieldMapping(fm)
		}
		dm.AddSubDocumentMapping(f.Name, sub)
		if exactInt(f) {
			fm := bleve.NewKeywordFieldMapping()
			fm.Store, fm.IncludeInAll, fm.IncludeTermVectors, fm.DocValues = false, false, false, f.Sort
			fm.Analyzer = keyword.Name
			dm.AddFieldMappingsAt(bleveIntPrefix+f.Name, fm)
		}
	}
	im.DefaultMapping = dm
	if err := im.Validate(); err != nil {
		return nil, err
	}
	return im, nil
}

// fieldMappings are the bleve fields of f: a text field is analysed when
// searched, and has its keyword copy "<name>.raw" when filtered or sorted.
// Doc values (what sorts read) are kept for sorted fields and geo points.
func fieldMappings(f projections.Field) []*mapping.FieldMapping {
	plain := func(fm *mapping.FieldMapping) *mapping.FieldMapping {
		fm.Store, fm.IncludeInAll, fm.IncludeTermVectors = false, false, false
		fm.Index, fm.DocValues = true, f.Sort
		return fm
	}
	switch f.Type {
	case projections.Text:
		var fms []*mapping.FieldMapping
		if f.Search {
			fm := plain(bleve.NewTextFieldMapping())
			fm.Analyzer, fm.DocValues = bleveText, false
			fms = append(fms, fm)
		}
		if f.Filter || f.Sort {
			fm := plain(bleve.NewTextFieldMapping())
			fm.Name, fm.Analyzer = f.Name+rawSuffix, bleveRaw
			fms = append(fms, fm)
		}
		return fms
	case projections.Keyword:
		fm := plain(bleve.NewKeywordFieldMapping())
		fm.Analyzer = keyword.Name
		return []*mapping.FieldMapping{fm}
	case projections.Integer, projections.Float:
		return []*mapping.FieldMapping{plain(bleve.NewNumericFieldMapping())}
	case projections.Boolean:
		return []*mapping.FieldMapping{plain(bleve.NewBooleanFieldMapping())}
	case projections.Date:
		return []*mapping.FieldMapping{plain(bleve.NewDateTimeFieldMapping())}
	case projections.GeoPoint:
		fm := plain(bleve.NewGeoPointFieldMapping())
		fm.DocValues = true // distance sorts and the exact distance filter read them
		return []*mapping.FieldMapping{fm}
	}
	return nil
}

// bleveSignature identifies how fields are indexed: the index keeps it, and
// an index built for another signature is re-indexed. It leaves out what
// does not change the index (the order of fields, sources, defaults).
func bleveSignature(fields []projections.Field) []byte {
	type sig struct {
		Name, Type           string
		Search, Filter, Sort bool
	}
	var sigs []sig
	for _, f := range fields {
		if indexedField(f) {
			sigs = append(sigs, sig{f.Name, string(f.Type), f.Search, f.Filter, f.Sort})
		}
	}
	slices.SortFunc(sigs, func(a, b sig) int { return strings.Compare(a.Name, b.Name) })
	b, _ := json.Marshal(struct {
		Layout int   `json:"layout"`
		Fields []sig `json:"fields"`
	}{bleveLayout, sigs}) // plain strings and bools always marshal
	return b
}
