package projections

import "encoding/json"

// Mapping returns the Elasticsearch mapping generated from the fields: the
// types, which fields are searchable (analysed text), filterable and
// sortable. Text fields that are also filtered or sorted get a "raw" keyword
// sub-field. Fields that are neither searched, filtered nor sorted are kept in
// _source but not indexed. Unknown fields are not indexed ("dynamic": false).
func (d *Definition) Mapping() map[string]any {
	props := map[string]any{"id": map[string]any{"type": "keyword"}, PartialField: map[string]any{"type": "keyword"}}
	for _, f := range d.Fields {
		props[f.Name] = f.mapping()
	}
	return map[string]any{"dynamic": false, "properties": props}
}

func (f *Field) mapping() map[string]any {
	indexed := f.Search || f.Filter || f.Sort
	m := map[string]any{}
	switch f.Type {
	case Keyword:
		m["type"] = "keyword"
	case Text:
		m["type"] = "text"
		m["analyzer"] = "standard"
		if f.Filter || f.Sort {
			m["fields"] = map[string]any{"raw": map[string]any{"type": "keyword", "ignore_above": 256}}
		}
		if !f.Search {
			m["index"] = false
		}
		return m
	case Integer:
		m["type"] = "long"
	case Float:
		m["type"] = "double"
	case Boolean:
		m["type"] = "boolean"
	case Date:
		m["type"] = "date" // the default format: strict_date_optional_time||epoch_millis
	case GeoPoint:
		m["type"] = "geo_point"
	case Object:
		return map[string]any{"type": "object", "enabled": false}
	}
	if !indexed && f.Type != GeoPoint {
		m["index"] = false
		m["doc_values"] = false
	}
	return m
}

func appendJSON(buf []byte, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return append(buf, "null"...)
	}
	return append(buf, b...)
}
