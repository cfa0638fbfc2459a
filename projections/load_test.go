package projections_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/readside/readside/projections"
)

const good = `name: shops
triggers:
  - subject: shop.changed.*
  - subject: shop.events
    id: body.shopId
sources:
  - name: shop
    url: ${SHOP_API}/shops/{id}
version: shop.version
fields:
  - {name: name, from: shop.name, type: text, search: true}
  - {name: city, from: shop.address.city, type: keyword, filter: true}
redis:
  key: "shop:{id}"
elasticsearch:
  alias: shops
`

func env(vars map[string]string) projections.Options {
	return projections.Options{Lookup: func(n string) (string, bool) { v, ok := vars[n]; return v, ok }}
}

var apiEnv = env(map[string]string{"SHOP_API": "http://shops.internal:8080"})

func TestParseGood(t *testing.T) {
	d, err := projections.Parse("shops.yaml", []byte(good), apiEnv)
	if err != nil {
		t.Fatal(err)
	}
	url, err := d.SourceURL(0, "a/../b?x")
	if err != nil {
		t.Fatal(err)
	}
	if want := "http://shops.internal:8080/shops/a%2F..%2Fb%3Fx"; url != want {
		t.Errorf("SourceURL = %s, want %s", url, want)
	}
	if !d.Versioned() || d.Name != "shops" || len(d.Fields) != 2 {
		t.Errorf("parsed %+v", d)
	}
}

// The exact messages a user sees for the common mistakes, with file and line.
func TestParseMistakes(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(string) string
		opts    projections.Options
		want    []string
		wantNot string
	}{
		{
			name: "unknown field",
			edit: func(s string) string { return strings.Replace(s, "version: shop.version", "verison: shop.version", 1) },
			want: []string{"shops.yaml:9: field verison not found in type projections.Definition (unknown field: check its spelling and indentation)"},
		},
		{
			name: "bad type and search on keyword",
			edit: func(s string) string {
				return strings.Replace(s, "type: keyword, filter: true", "type: keyword, search: true", 1) +
					"  # trailing\n"
			},
			want: []string{`shops.yaml:12: fields[1].search: only text fields are searchable; make "city" a text field`},
		},
		{
			name: "unknown type",
			edit: func(s string) string { return strings.Replace(s, "type: keyword", "type: string", 1) },
			want: []string{`shops.yaml:12: fields[1].type: "string" is not a field type: use one of keyword, text, integer, float, boolean, date, geo_point, object`},
		},
		{
			name: "field from an undefined source",
			edit: func(s string) string { return strings.Replace(s, "from: shop.address.city", "from: owner.city", 1) },
			want: []string{`shops.yaml:12: fields[1].from: "owner.city" must start with a defined source name (shop)`},
		},
		{
			name: "unset environment variable",
			opts: env(nil),
			want: []string{"shops.yaml:8: sources[0].url: environment variable SHOP_API is not set"},
		},
		{
			name: "placeholder in the host",
			edit: func(s string) string { return strings.Replace(s, "${SHOP_API}/shops/{id}", "http://{id}.shops/x", 1) },
			want: []string{"shops.yaml:8: sources[0].url:"},
		},
		{
			name: "unknown placeholder",
			edit: func(s string) string { return strings.Replace(s, "/shops/{id}", "/shops/{shopId}", 1) },
			want: []string{"shops.yaml:8: sources[0].url: the primary source is fetched by id: {shopId} is not available, only {id}"},
		},
		{
			name: "every problem at once",
			edit: func(s string) string {
				s = strings.Replace(s, `key: "shop:{id}"`, `key: "shop"`, 1)
				s = strings.Replace(s, "alias: shops", "alias: Shops", 1)
				s = strings.Replace(s, "name: shops", "name: Shops!", 1)
				return strings.Replace(s, "id: body.shopId", "id: header.x", 1)
			},
			want: []string{
				`shops.yaml:1: name: "Shops!" is not a valid name`,
				`shops.yaml:5: triggers[1].id: "header.x" is not an id location: use "subject" (the subject's last token) or "body.<field>"`,
				`shops.yaml:14: redis.key: "shop" must contain {id}, e.g. "Shops!:{id}"`,
				`shops.yaml:16: elasticsearch.alias: "Shops" is not a valid Elasticsearch alias`,
			},
		},
		{
			name: "wildcard in the middle of a token",
			edit: func(s string) string { return strings.Replace(s, "shop.changed.*", "shop.chan*ged", 1) },
			want: []string{`shops.yaml:3: triggers[0].subject: "shop.chan*ged": wildcards must be whole tokens`},
		},
		{
			name: "duplicate and reserved field names",
			edit: func(s string) string {
				return strings.Replace(s, "redis:", "  - {name: name, from: shop.x, type: keyword}\n  - {name: id, from: shop.id, type: keyword}\n  - {name: distance, from: shop.d, type: float}\nredis:", 1)
			},
			want: []string{`shops.yaml:13: fields[2].name: field "name" is defined twice`, `shops.yaml:14: fields[3].name: "id" is reserved`,
				`shops.yaml:15: fields[4].name: "distance" is reserved by the query API`},
		},
		{
			name: "version without a source",
			edit: func(s string) string { return strings.Replace(s, "version: shop.version", "version: updatedAt", 1) },
			want: []string{`shops.yaml:9: version: "updatedAt" must be "<source>.<path>" naming a defined source, e.g. "shop.version"`},
		},
		{
			name: "a join that refers to a source defined later",
			edit: func(s string) string {
				return strings.Replace(s, "version: shop.version", `  - name: menu
    url: http://menus/{owner.menuId}
  - name: owner
    url: http://owners/{shop.ownerId}
  - name: ads
    url: http://ads/{nope.x}
    batch: {url: "http://ads?ids={ids}"}`, 1)
			},
			want: []string{
				`shops.yaml:10: sources[1].url: {owner.menuId} refers to source "owner", which is defined later: move "owner" above "menu"`,
				`shops.yaml:14: sources[3].url: {nope.x} refers to no source: defined are shop, menu, owner, ads`,
				`shops.yaml:15: sources[3].batch: only the primary source may have a batch endpoint`,
			},
		},
		{
			name: "lookup problems",
			edit: func(s string) string {
				s = strings.Replace(s, "    id: body.shopId", "    id: body.shopId\n    lookup: owner\n  - subject: x.*\n    lookup: shop", 1)
				return s
			},
			want: []string{
				`shops.yaml:6: triggers[1].lookup: "owner" names no source: defined are shop`,
				`shops.yaml:8: triggers[2].lookup: "shop" is the primary source: its events carry the document's id, so drop lookup`,
			},
		},
		{
			name: "version from a joined source with a lookup trigger",
			edit: func(s string) string {
				s = strings.Replace(s, "version: shop.version", "  - {name: owner, url: \"http://owners/{shop.ownerId}\"}\nversion: owner.version", 1)
				return strings.Replace(s, "    id: body.shopId", "    id: body.shopId\n  - subject: owner.changed.*\n    lookup: owner", 1)
			},
			want: []string{`version: with a lookup trigger, the version must be a field of the primary source "shop"`},
		},
		{
			name: "batch and list endpoints",
			edit: func(s string) string {
				return strings.Replace(s, "    url: ${SHOP_API}/shops/{id}", `    url: ${SHOP_API}/shops/{id}
    optional: true
    batch: {url: "http://shops/batch/{id}", max: 5000}
    list: {url: "http://shops/all/{cursor}"}`, 1)
			},
			want: []string{
				`shops.yaml:9: sources[0].optional: the primary source cannot be optional`,
				`shops.yaml:10: sources[0].batch.url: must have the one placeholder {ids}`,
				`shops.yaml:10: sources[0].batch.max: must be between 1 and 1000`,
				`shops.yaml:11: sources[0].list.url: must have the one placeholder {cursor}, in the query`,
				`shops.yaml:11: sources[0].list.ids: is required`,
			},
		},
		{
			name: "not YAML",
			edit: func(string) string { return "name: [unclosed\n" },
			want: []string{"shops.yaml"},
		},
		{
			name: "wrong YAML type",
			edit: func(s string) string { return strings.Replace(s, "triggers:\n", "triggers: 5\nx:\n", 1) },
			want: []string{"shops.yaml:2: cannot unmarshal !!int `5` into []projections.Trigger"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := good
			if tt.edit != nil {
				src = tt.edit(src)
			}
			opts := tt.opts
			if opts.Lookup == nil {
				opts = apiEnv
			}
			_, err := projections.Parse("shops.yaml", []byte(src), opts)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain\n  %s\ngot:\n  %s", w, strings.ReplaceAll(err.Error(), "\n", "\n  "))
				}
			}
			var p *projections.Problem
			if !errors.As(err, &p) {
				t.Errorf("error is not a *Problem: %T", err)
			}
		})
	}
}

func TestLoadDir(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.yaml"), []byte(good), 0o644)
	os.WriteFile(filepath.Join(dir, "b.yml"), []byte(good), 0o644)
	os.WriteFile(filepath.Join(dir, "c.yaml"), []byte(strings.Replace(good, "type: text", "type: txt", 1)), 0o644)
	_, err := projections.LoadDir(dir, apiEnv)
	if err == nil {
		t.Fatal("no error")
	}
	for _, w := range []string{`b.yml: name: projection "shops" is also defined in`, `c.yaml:11: fields[0].type: "txt" is not a field type`} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q:\n%v", w, err)
		}
	}
	if _, err := projections.LoadDir(t.TempDir(), apiEnv); err == nil || !strings.Contains(err.Error(), "no *.yaml definition") {
		t.Errorf("empty dir: %v", err)
	}
	defs, err := projections.LoadDir(filepath.Join(dir, "a.yaml"), apiEnv)
	if err != nil || len(defs) != 1 {
		t.Errorf("one file: %v, %v", defs, err)
	}
}

// FuzzParse: every input either loads or returns an error; nothing panics,
// and what loads can build a document and a mapping.
func FuzzParse(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte("name: x\n"))
	f.Add([]byte("fields: [{name: a, type: geo_point, array: true, default: {lat: 1}}]"))
	f.Add([]byte(strings.Replace(good, "{id}", "{id}/{id}?q={id}", 1)))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := projections.Parse("fuzz.yaml", data, apiEnv)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		d.Mapping()
		if _, err := d.SourceURL(0, "42"); err != nil {
			t.Fatalf("a loaded definition cannot build a URL: %v", err)
		}
		if _, err := d.Build("42", map[string][]byte{d.Sources[0].Name: []byte(`{"name":"x","version":3}`)}); err != nil {
			t.Fatalf("a loaded definition cannot build: %v", err)
		}
	})
}
