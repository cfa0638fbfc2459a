package query

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/readside/readside/projections"
)

// openAPI serves the OpenAPI 3.1 document New generated from the definitions.
func (s *Server) openAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(s.spec)
}

// APIVersion is the version of the read API the OpenAPI document describes.
const APIVersion = "1.0.0"

// Schema patterns. They are the subset of ECMA-262 that Go's regexp also
// reads, so any JSON Schema validator takes them.
const (
	// printable: Unicode letters, marks, numbers, punctuation and symbols —
	// what projections.ValidateID accepts, less the exclusions below.
	idPattern    = `^[\p{L}\p{M}\p{N}\p{P}\p{S}]+$`
	idForbidden  = `^[^*>]+$`
	idsForbidden = `^[^*>,]+$`
	// A date, or an RFC 3339 time as Elasticsearch reads it: hours to 23,
	// no leap second, at most 9 fractional digits, offsets to ±18:00. The
	// calendar (February 30) is the date and date-time formats'.
	datePattern = `^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])` +
		`(T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?(Z|[+-]((0[0-9]|1[0-7]):[0-5][0-9]|18:00)))?$`
	// lat,lon in decimal degrees, latitude -90..90, longitude -180..180.
	latPattern  = `[+-]?0*(90(\.0*)?|[1-8]?[0-9](\.[0-9]*)?|\.[0-9]+)`
	lonPattern  = `[+-]?0*(180(\.0*)?|(1[0-7][0-9]|[1-9]?[0-9])(\.[0-9]*)?|\.[0-9]+)`
	nearPattern = `^` + latPattern + `,` + lonPattern + `$`
	// 1 m to 500 km: 1 to 500000 m, or 0.001 to 500 km.
	withinPattern = `^(0*(([1-9][0-9]{0,4}|[1-4][0-9]{5})(\.[0-9]*)?|500000(\.0*)?)[mM]` +
		`|0*(([1-9][0-9]?|[1-4][0-9]{2})(\.[0-9]*)?|500(\.0*)?|\.0{0,2}[1-9][0-9]*)[kK][mM])$`
	cursorPattern = `^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$`
	// A character other than white space as Go's unicode.IsSpace (and so
	// strings.TrimSpace) has it; \S is narrower in Go (ASCII) and wider in
	// ECMA-262 (U+FEFF), so the class lists them, as the characters themselves.
	nonSpacePattern = "[^\\t\\n\\v\\f\\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
)

// obj is a JSON object that keeps its keys in the order they were added, so
// the document reads top-down: openapi, info, paths, components.
type obj []member

type member struct {
	k string
	v any
}

func (o obj) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(m.k)
		b.Write(k)
		b.WriteByte(':')
		v, err := json.Marshal(m.v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.k, err)
		}
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// o builds an obj from key, value pairs.
func o(kv ...any) obj {
	out := make(obj, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, member{kv[i].(string), kv[i+1]})
	}
	return out
}

func ref(kind, name string) obj { return o("$ref", "#/components/"+kind+"/"+name) }

// buildOpenAPI generates the OpenAPI 3.1.0 document of every view, in the
// order of their names: for each, its two paths and the schemas of its
// document and page (components <name>.Document and <name>.Page).
func buildOpenAPI(s *Server) []byte {
	names := make([]string, 0, len(s.views))
	for n := range s.views {
		names = append(names, n)
	}
	slices.Sort(names)
	paths := obj{}
	schemas := o(
		"Problem", problemSchema(),
		"ParameterIssue", o("type", "object", "required", []string{"parameter", "message"},
			"properties", o(
				"parameter", o("type", "string", "description", "the query parameter as the request named it, or id (the path's), "+
					"or query when Elasticsearch refused the query as a whole"),
				"message", o("type", "string")),
		),
		"Id", idSchema(false),
	)
	var tags []obj
	for _, n := range names {
		v := s.views[n]
		docName, pageName := n+".Document", n+".Page" // projection names are valid component names
		schemas = append(schemas, member{docName, v.documentSchema()}, member{pageName, pageSchema(docName)})
		paths = append(paths,
			member{"/v1/" + n + "/{id}", o("get", s.detailOperation(v, docName))},
			member{"/v1/" + n, o("get", s.collectionOperation(v, pageName))},
		)
		tags = append(tags, o("name", n, "description", fmt.Sprintf("projection %s (Elasticsearch alias %s)", n, v.Def.Elasticsearch.Alias)))
	}
	paths = append(paths,
		member{"/openapi.json", o("get", o("operationId", "openapi", "summary", "This document",
			"responses", o("200", o("description", "the OpenAPI 3.1 document of the API",
				"content", o("application/json", o("schema", o("type", "object"))))),
		))},
		member{"/healthz", o("get", o("operationId", "healthz", "summary", "Liveness: the process serves",
			"responses", o("200", o("description", "alive", "content", o("text/plain", o("schema", o("type", "string", "const", "ok\n"))))),
		))},
		member{"/readyz", o("get", o("operationId", "readyz", "summary", "Readiness: the state of each backend",
			"description", "Each store (redis, elasticsearch, embedded) and nats: up or down. 503 only when no store answers: with one of them, or with the source APIs, reads still work.",
			"responses", o(
				"200", o("description", "ready", "headers", o("Cache-Control", ref("headers", "Cache-Control")), "content", o("application/json", o("schema", ref("schemas", "Readiness")))),
				"503", o("description", "no store answers", "headers", o("Cache-Control", ref("headers", "Cache-Control")), "content", o("application/json", o("schema", ref("schemas", "Readiness")))),
			),
		))},
	)
	schemas = append(schemas, member{"Readiness", o("type", "object",
		"description", "each backend (redis, elasticsearch, embedded, nats) and its state",
		"additionalProperties", o("type", "string", "enum", []string{"up", "down"}))})
	doc := o(
		"openapi", "3.1.0",
		"info", o(
			"title", "Readside query API",
			"version", APIVersion,
			"description", "Reads of the projections (CQRS read models): detail by id, multi-get, list with filters, sort and "+
				"cursor paging, full-text search and geo distance. Documents come from Redis; list and search ask "+
				"Elasticsearch for the ids. When a store misses or fails, documents are built from the source APIs: "+
				"X-Readside-Source says which. Every error is an RFC 9457 problem (application/problem+json); a bad "+
				"request lists every bad parameter in errors.",
		),
		"jsonSchemaDialect", "https://spec.openapis.org/oas/3.1/dialect/base",
		"tags", tags,
		"paths", paths,
		"components", o(
			"schemas", schemas,
			"responses", s.sharedResponses(),
			"headers", sharedHeaders(),
		),
	)
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		s.log.Error("generating the OpenAPI document failed", "err", err)
		return []byte(`{"openapi":"3.1.0","info":{"title":"Readside query API","version":"` + APIVersion + `"},"paths":{}}`)
	}
	return b
}

// idSchema describes an id as projections.ValidateID accepts it; in a
// multi-get, ids are comma-separated, so they cannot contain a comma.
func idSchema(inList bool) obj {
	forbidden, desc := idForbidden, "non-empty, at most 256 bytes of printable UTF-8, without whitespace or the characters * and >, and not . or .."
	if inList {
		forbidden, desc = idsForbidden, desc+"; in ids also without a comma (get such an id by GET /v1/{projection}/{id})"
	}
	return o("type", "string", "minLength", 1, "maxLength", projections.MaxIDLen,
		"pattern", idPattern,
		"allOf", []obj{o("pattern", forbidden)},
		"not", o("enum", []string{".", ".."}),
		"description", "a document id: "+desc)
}

func problemSchema() obj {
	return o("type", "object",
		"description", "an RFC 9457 problem detail",
		"required", []string{"type", "title", "status"},
		"properties", o(
			"type", o("type", "string", "format", "uri", "enum", []string{ProblemBadParameter, ProblemNotFound, ProblemUnavailable, ProblemTimeout, ProblemOverloaded, ProblemTooLarge, ProblemMethodNotAllowed},
				"description", "stable URI of the kind of problem; switch on it"),
			"title", o("type", "string"),
			"status", o("type", "integer", "enum", []int{400, 404, 405, 414, 431, 503, 504}),
			"detail", o("type", "string"),
			"instance", o("type", "string", "description", "the request path"),
			"requestId", o("type", "string", "minLength", 1, "description", "the answer's X-Request-Id: quote it when reporting the problem; the API's logs hold what went wrong under it"),
			"errors", o("type", "array", "items", ref("schemas", "ParameterIssue"), "minItems", 1,
				"description", "with status 400: every bad parameter, sorted by name"),
		))
}

func pageSchema(docName string) obj {
	return o("type", "object",
		"required", []string{"items", "missing"},
		"additionalProperties", false,
		"properties", o(
			"items", o("type", "array", "items", ref("schemas", docName),
				"description", "the documents, in the order asked (multi-get) or of the sort (list)"),
			"missing", o("type", "array", "items", o("type", "string"),
				"description", "ids asked for (multi-get), or listed by the index, that have no document: deleted, unknown, or unavailable just now"),
			"next", o("type", []string{"string", "null"}, "pattern", cursorPattern,
				"description", "lists only: the cursor of the next page; null on the last page. Absent from a multi-get."),
		))
}

// documentSchema is the JSON Schema of one document as the stores keep it
// and the API sends it: "id", every field (null when the source had no valid
// value and the field no default), and readside_partial on a partial document.
func (v *view) documentSchema() obj {
	props := o("id", o("type", "string", "description", "the document id"))
	required := []string{"id"}
	for _, f := range v.Def.Fields {
		props = append(props, member{f.Name, fieldSchema(f)})
		required = append(required, f.Name)
	}
	props = append(props, member{projections.PartialField, o("type", "array", "items", o("type", "string"),
		"description", "present when optional sources failed: their names; the document is built again later")})
	return o("type", "object",
		"description", "a "+v.Def.Name+" document",
		"required", required,
		"additionalProperties", false,
		"properties", props)
}

// fieldSchema is a field's value: its type, in an array when the field is
// one, nullable when it has no default.
func fieldSchema(f projections.Field) any {
	var s obj
	var types []string
	switch f.Type {
	case projections.Keyword, projections.Text:
		types = []string{"string"}
	case projections.Integer:
		types, s = []string{"integer"}, o("format", "int64")
	case projections.Float:
		types, s = []string{"number"}, o("format", "double")
	case projections.Boolean:
		types = []string{"boolean"}
	case projections.Date:
		// RFC 3339 or a date as the source gave it, or epoch milliseconds.
		types, s = []string{"string", "integer"}, o("pattern", `^[0-9]{4}-[0-9]{2}-[0-9]{2}`)
	case projections.GeoPoint:
		types, s = []string{"object"}, o("required", []string{"lat", "lon"}, "additionalProperties", false,
			"properties", o("lat", o("type", "number", "minimum", -90, "maximum", 90), "lon", o("type", "number", "minimum", -180, "maximum", 180)))
	default: // Object: any JSON, kept as is
		types = nil
	}
	desc := string(f.Type)
	if f.Array {
		desc = "array of " + desc
	}
	if f.Search {
		desc += ", searchable (q)"
	}
	if f.Filter {
		desc += ", filterable"
	}
	if f.Sort {
		desc += ", sortable"
	}
	var one obj
	if types != nil {
		one = append(o("type", typeValue(types)), s...)
	}
	if f.Array {
		items := any(one)
		if one == nil {
			items = o()
		}
		one, types = o("type", "array", "items", items), []string{"array"}
	}
	if one == nil { // a scalar object field: anything, null too
		return o("description", desc)
	}
	if f.Default == nil {
		one[0].v = typeValue(append(types, "null"))
		return append(one, member{"description", desc + "; null when the source has no valid value"})
	}
	// A default replaces a missing value; it need not be of the field's type.
	def, err := json.Marshal(f.Default)
	if err != nil { // a YAML map with keys JSON cannot have: say nothing of it
		return o("anyOf", []any{one, o()}, "description", desc+"; its default when the source has no valid value")
	}
	return o("anyOf", []any{one, o("const", json.RawMessage(def))}, "description", desc+"; "+string(def)+" when the source has no valid value")
}

func typeValue(types []string) any {
	if len(types) == 1 {
		return types[0]
	}
	return types
}

// Parameters.

func param(name, in, desc string, schema obj, extra ...any) obj {
	p := o("name", name, "in", in, "description", desc)
	if in == "path" {
		p = append(p, member{"required", true})
	}
	p = append(p, member{"schema", schema})
	return append(p, o(extra...)...)
}

func (s *Server) detailOperation(v *view, docName string) obj {
	n := v.Def.Name
	return o(
		"operationId", "get_"+n,
		"tags", []string{n},
		"summary", "One "+n+" document by id",
		"description", "The stored document, or, when Redis lacks it or fails, the document built from the source APIs "+
			"(X-Readside-Source: source). A deleted or unknown document is 404. With If-None-Match holding the ETag, "+
			"an unchanged document is 304.",
		"parameters", []obj{
			param("id", "path", "the document id, percent-encoded as a path segment", ref("schemas", "Id")),
			param("If-None-Match", "header", "ETags of documents the client holds; * matches any (weak comparison)", o("type", "string")),
		},
		"responses", o(
			"200", o("description", "the document",
				"headers", o("ETag", ref("headers", "ETag"), "X-Readside-Source", ref("headers", "X-Readside-Source"), "X-Readside-Built-At", ref("headers", "X-Readside-Built-At")),
				"content", o("application/json", o("schema", ref("schemas", docName)))),
			"304", o("description", "not modified: If-None-Match holds the document's ETag",
				"headers", o("ETag", ref("headers", "ETag"), "X-Readside-Source", ref("headers", "X-Readside-Source"), "X-Readside-Built-At", ref("headers", "X-Readside-Built-At"))),
			"400", ref("responses", "BadRequest"),
			"404", ref("responses", "NotFound"),
			"414", ref("responses", "URITooLong"),
			"431", ref("responses", "HeadersTooLarge"),
			"503", ref("responses", "Unavailable"),
			"504", ref("responses", "Timeout"),
		),
	)
}

func (s *Server) collectionOperation(v *view, pageName string) obj {
	n := v.Def.Name
	var params []obj
	idList := o("type", "array", "items", idSchema(true), "minItems", 1, "maxItems", s.o.MaxIDs)
	params = append(params, param("ids", "query",
		fmt.Sprintf("Multi-get: comma-separated ids, at most %d, duplicates counted. The answer keeps their order, each id once; "+
			"ids without a document are listed in missing. Takes no other parameter. ids may also be given several times: "+
			"their lists are joined, and the limit counts them together.", s.o.MaxIDs),
		idList, "style", "form", "explode", false))
	searchable := fieldNames(v.Def.Fields, func(f projections.Field) bool { return f.Search })
	if len(searchable) > 0 {
		params = append(params, param("q", "query",
			fmt.Sprintf("Search: every word must match, the last one as a prefix (search as you type), within one of the searchable fields: %s. "+
				"At most %d characters; not only whitespace. Sorted by relevance unless sort says otherwise.", strings.Join(searchable, ", "), s.o.MaxQuery),
			o("type", "string", "minLength", 1, "maxLength", s.o.MaxQuery, "pattern", nonSpacePattern)))
	}
	keys := sortable(v)
	sortDesc := "Comma-separated sort keys, at most 3, each ascending or, with a leading -, descending: " + strings.Join(keys, ", ")
	if v.geoField != "" {
		keys = append(keys, "distance")
		sortDesc += "; distance (needs near)"
	}
	if len(searchable) > 0 {
		keys = append(keys, "relevance")
		sortDesc += "; relevance (needs q)"
	}
	sortDesc += ". Documents without a value come last. The id breaks ties. Default: relevance with q, else distance with near, else the id."
	if len(keys) > 0 {
		alt := "(" + strings.Join(keys, "|") + ")"
		params = append(params, param("sort", "query", sortDesc,
			o("type", "string", "pattern", "^-?"+alt+"(,-?"+alt+"){0,2}$", "examples", []string{"-" + keys[0]})))
	}
	params = append(params,
		param("limit", "query", fmt.Sprintf("page size, 1 to %d", s.o.MaxLimit),
			o("type", "integer", "minimum", 1, "maximum", s.o.MaxLimit, "default", 20)),
		param("cursor", "query", "the next of the previous page, to continue a list: only with the same parameters (limit may change); a changed cursor is refused",
			o("type", "string", "maxLength", 4096, "pattern", cursorPattern)),
	)
	if v.geoField != "" {
		params = append(params,
			param("near", "query", fmt.Sprintf("lat,lon (WGS 84 degrees, latitude -90..90, longitude -180..180): sorts by the distance of %s from it (unless sort says otherwise)", v.geoField),
				o("type", "string", "pattern", nearPattern, "examples", []string{"52.52,13.40"})),
			param("within", "query", "with near: only documents at most this far, from 1m to 500km, in m or km",
				o("type", "string", "pattern", withinPattern, "examples", []string{"800m", "3km"})),
		)
	}
	for _, f := range v.Def.Fields {
		if !filterableField(f) {
			continue
		}
		item := filterValueSchema(f)
		desc := fmt.Sprintf("Filter: %s is one of these comma-separated values (at most %d)", f.Name, maxTerms)
		if f.Array {
			desc = fmt.Sprintf("Filter: %s holds one of these comma-separated values (at most %d)", f.Name, maxTerms)
		}
		params = append(params, param(f.Name, "query", desc,
			o("type", "array", "items", item, "minItems", 1, "maxItems", maxTerms), "style", "form", "explode", false))
		if ranged(f.Type) {
			for _, op := range rangeOps {
				params = append(params, param(f.Name+"."+op, "query",
					fmt.Sprintf("Range filter: %s %s the value", f.Name, map[string]string{"gte": ">=", "gt": ">", "lte": "<=", "lt": "<"}[op]), item))
			}
		}
	}
	params = append(params, parameterRules(v, params, len(searchable) > 0))
	filters := filterable(v)
	desc := "Without ids, a list (with q, a search) through Elasticsearch, page by page: follow next as cursor until it is null. " +
		"Tombstones of deleted documents are never listed. Every parameter is given at most once; any other parameter is refused (400)."
	if len(filters) > 0 {
		desc += " Filters (" + strings.Join(filters, ", ") + ") combine with AND; the values of one filter with OR."
	}
	if v.Def.Listable() {
		desc += " When Elasticsearch is down, a list without q, filters, sort or near is served from the source's list endpoint " +
			"(X-Readside-Degraded: list-endpoint) and its cursor continues there."
	}
	return o(
		"operationId", "list_"+n,
		"tags", []string{n},
		"summary", "Multi-get, list or search "+n+" documents",
		"description", desc,
		"parameters", params,
		"responses", o(
			"200", o("description", "a page: the documents, the ids without one, and (lists) the next cursor",
				"headers", o("X-Readside-Source", ref("headers", "X-Readside-Source"), "X-Readside-Built-At", ref("headers", "X-Readside-Built-At"),
					"X-Readside-Degraded", ref("headers", "X-Readside-Degraded")),
				"content", o("application/json", o("schema", ref("schemas", pageName)))),
			"400", ref("responses", "BadRequest"),
			"414", ref("responses", "URITooLong"),
			"431", ref("responses", "HeadersTooLarge"),
			"503", ref("responses", "Unavailable"),
			"504", ref("responses", "Timeout"),
		),
	)
}

// ruleParameter names the parameter that states the rules between the
// others. A hyphen keeps it from ever being a field's name.
const ruleParameter = "parameter-rules"

// parameterRules states what no one parameter's schema can: which
// parameters go together. It is the query string as a whole, as a
// form-exploded object whose properties are the other parameters: an
// exploded object adds no name=value pair of its own to a request (OpenAPI
// 3.1, parameter styles), so a client sends nothing for it. OpenAPI 3.1 has
// no other place for such rules (3.2's in: querystring would be one), and
// its validators check this one as JSON Schema (libopenapi-validator does).
// params are the operation's parameters before it.
func parameterRules(v *view, params []obj, searchable bool) obj {
	names := make([]string, 0, len(params))
	for _, p := range params {
		names = append(names, p[0].v.(string)) // param puts the name first
	}
	schema := o("type", "object",
		"propertyNames", o("enum", names),
		"dependentSchemas", o("ids", o("maxProperties", 1)),
	)
	desc := "Not a parameter to send: the rules between the others, over the query string as an object of its parameters. " +
		"Only the parameters above (a filter or range on a field not listed there is refused); ids alone (a multi-get takes no other parameter)"
	var ifs []obj
	sortHas := func(key string) obj {
		return o("required", []string{"sort"}, "properties", o("sort", o("type", "string", "pattern", "(^|,)-?"+key+"(,|$)")))
	}
	if v.geoField != "" {
		schema = append(schema, member{"dependentRequired", o("within", []string{"near"})})
		ifs = append(ifs, o("if", sortHas("distance"), "then", o("required", []string{"near"})))
		desc += "; within only with near; sort by distance only with near"
	}
	if searchable {
		ifs = append(ifs, o("if", sortHas("relevance"), "then", o("required", []string{"q"})))
		desc += "; sort by relevance only with q"
	}
	if len(ifs) > 0 {
		schema = append(schema, member{"allOf", ifs})
	}
	return param(ruleParameter, "query", desc+".", schema, "style", "form", "explode", true)
}

// filterValueSchema is one value of a filter on f, as typedValue reads it.
func filterValueSchema(f projections.Field) obj {
	switch f.Type {
	case projections.Integer:
		return o("type", "integer", "format", "int64")
	case projections.Float:
		return o("type", "number", "format", "double")
	case projections.Boolean:
		return o("type", "boolean")
	case projections.Date:
		return o("type", "string", "pattern", datePattern, "anyOf", []obj{o("format", "date"), o("format", "date-time")}, "description", "a date, 2026-11-21, or an RFC 3339 time, 2026-11-21T10:00:00Z. "+
			"A date alone stands for its whole day in ranges: gte and lt start at its first moment, gt and lte end at its last; "+
			"as a filter value it is the instant it starts. Offsets up to ±18:00, at most 9 fractional digits.")
	}
	return o("type", "string", "minLength", 1, "maxLength", 256, "description", "1 to 256 bytes; matched exactly")
}

func fieldNames(fields []projections.Field, keep func(projections.Field) bool) []string {
	var out []string
	for _, f := range fields {
		if keep(f) {
			out = append(out, f.Name)
		}
	}
	return out
}

func (s *Server) sharedResponses() obj {
	problem := func(desc string, headers obj) obj {
		h := o("Cache-Control", ref("headers", "Cache-Control"), "X-Request-Id", ref("headers", "X-Request-Id"))
		h = append(h, headers...)
		return o("description", desc, "headers", h, "content", o("application/problem+json", o("schema", ref("schemas", "Problem"))))
	}
	return o(
		"BadRequest", problem("a bad parameter: errors names each (type "+ProblemBadParameter+")", nil),
		"NotFound", problem("no such document: deleted or never existed (type "+ProblemNotFound+")", nil),
		"URITooLong", problem(fmt.Sprintf("the request target is over %d bytes, more than any valid request needs (type %s)", s.maxURI, ProblemTooLarge), nil),
		"HeadersTooLarge", problem(fmt.Sprintf("the header fields are over %d KB (type %s)", maxHeaderBytes>>10, ProblemTooLarge), nil),
		"Unavailable", problem("the stores and the source APIs cannot answer now (type "+ProblemUnavailable+"), or the replica sheds load (type "+ProblemOverloaded+"); retry after Retry-After seconds",
			o("Retry-After", ref("headers", "Retry-After"))),
		"Timeout", problem(fmt.Sprintf("the backends did not answer within the request deadline, %s (type %s)", s.o.RequestTimeout, ProblemTimeout), nil),
	)
}

func sharedHeaders() obj {
	return o(
		"ETag", o("description", `the document's version: strong ("v42") when it is the stored version, weak (W/"...") for a document built from a source without one`,
			"required", true, "schema", o("type", "string")), // no pattern: validators may take a quoted value for JSON
		"X-Readside-Source", o("description", "where the documents came from: store (Redis), source (built from the source APIs, because Redis lacked them or failed), or mixed",
			"required", true, "schema", o("type", "string", "enum", []string{"store", "source", "mixed"})),
		"X-Readside-Built-At", o("description", "when the oldest document of the answer was built (RFC 3339); absent when not known",
			"schema", o("type", "string", "format", "date-time")),
		"X-Readside-Degraded", o("description", "list-endpoint: Elasticsearch is down and the page comes from the source's list endpoint",
			"schema", o("type", "string", "enum", []string{"list-endpoint"})),
		"Retry-After", o("description", "seconds to wait before retrying", "required", true,
			"schema", o("type", "integer", "minimum", 1)),
		"X-Request-Id", o("description", "the request's id: the client's own X-Request-Id when it is a token of at most 64 characters A-Za-z0-9._:-, else a new one; every answer has it",
			"required", true, "schema", o("type", "string", "minLength", 1)),
		"Cache-Control", o("description", "no-store: errors and readiness are never cached",
			"required", true, "schema", o("type", "string", "const", "no-store")),
	)
}
