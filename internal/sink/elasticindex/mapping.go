package elasticindex

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"
)

// FieldConflict is a field whose mapping in a live index differs from the
// definition's.
type FieldConflict struct {
	Field      string
	Index      string
	Live, Want string // the two mappings, as JSON
}

// MappingConflictError says a live index cannot hold the definition's
// documents: its mapping differs in fields Elasticsearch cannot change in
// place. Only a rebuild (a new index behind the alias) can roll it out.
type MappingConflictError struct {
	Alias  string
	Fields []FieldConflict
}

func (e *MappingConflictError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "the mapping behind alias %q conflicts with the definition in %d field(s); the projector will not write into it:", e.Alias, len(e.Fields))
	for _, f := range e.Fields {
		fmt.Fprintf(&b, "\n  field %q in index %s: the index has %s, the definition wants %s", f.Field, f.Index, f.Live, f.Want)
	}
	fmt.Fprintf(&b, "\nrebuild the index to roll the change out (replay rebuild), or restore the field's previous definition")
	return b.String()
}

// CheckMapping compares the definition's mapping with every index behind the
// alias. Fields the indices lack are added to them (a compatible change; the
// documents gain them as they are projected again) and returned. A field
// whose mapping differs is a *MappingConflictError listing every such field.
//
// Only the indices behind the alias itself count, never the index a rebuild
// fills behind "<alias>-rebuild": while a rebuild rolls out a new mapping, a
// projector of the running definition still starts; once the rebuild has
// swapped, the index behind the alias is the new one, and a projector of the
// new definition starts.
func (e *Index) CheckMapping(ctx context.Context) (added []string, err error) {
	if e.err != nil {
		return nil, e.err
	}
	want, err := e.wantedProperties()
	if err != nil {
		return nil, err
	}
	res, err := e.c.Indices.GetMapping(e.c.Indices.GetMapping.WithIndex(e.o.Alias), e.c.Indices.GetMapping.WithContext(ctx))
	body, err := answer("mapping of", strconv.Quote(e.o.Alias), res, err)
	if err != nil {
		return nil, err
	}
	conflict := &MappingConflictError{Alias: e.o.Alias}
	missing := map[string]any{}
	gjson.ParseBytes(body).ForEach(func(index, m gjson.Result) bool {
		live := map[string]any{}
		json.Unmarshal([]byte(m.Get("mappings.properties").Raw), &live)
		for _, name := range sortedKeys(want) {
			have, ok := live[name]
			switch {
			case !ok:
				missing[name] = want[name]
			case !reflect.DeepEqual(normalize(have), normalize(want[name])):
				l, _ := json.Marshal(have)
				w, _ := json.Marshal(want[name])
				conflict.Fields = append(conflict.Fields, FieldConflict{Field: name, Index: index.Str, Live: string(l), Want: string(w)})
			}
		}
		return true
	})
	if len(conflict.Fields) > 0 {
		return nil, conflict
	}
	if len(missing) == 0 {
		return nil, nil
	}
	put, _ := json.Marshal(map[string]any{"properties": missing})
	res, err = e.c.Indices.PutMapping([]string{e.o.Alias}, bytes.NewReader(put), e.c.Indices.PutMapping.WithContext(ctx))
	if _, err := answer("adding fields to", strconv.Quote(e.o.Alias), res, err); err != nil {
		return nil, err
	}
	return sortedKeys(missing), nil
}

// wantedProperties is the definition's properties with DeletedField, as
// generic JSON values.
func (e *Index) wantedProperties() (map[string]any, error) {
	body, err := e.createBody()
	if err != nil {
		return nil, err
	}
	var created struct {
		Mappings struct {
			Properties map[string]any `json:"properties"`
		} `json:"mappings"`
	}
	if err := json.Unmarshal(body, &created); err != nil {
		return nil, fmt.Errorf("sink: elasticsearch mapping: %w", err)
	}
	return created.Mappings.Properties, nil
}

// normalize makes a field mapping comparable: Elasticsearch answers booleans
// and numbers of parameters as it was given them, but may spell
// "index": "false" as a string in older indices.
func normalize(v any) any {
	b, _ := json.Marshal(v)
	var out any
	json.Unmarshal(bytes.ReplaceAll(b, []byte(`"false"`), []byte(`false`)), &out)
	return out
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
