package source_test

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/readside/readside/internal/source"
)

func TestParseTemplate(t *testing.T) {
	t.Parallel()
	valid := []struct {
		in   string
		vars []string
	}{
		{"http://shops.internal/v1/shops/{id}", []string{"id"}},
		{"https://h.example:8443/v1/{a}/{b.c}/{a}?x={b.c}&y={_z9}", []string{"a", "b.c", "_z9"}},
		{"http://h.example?id={id}", []string{"id"}},
		{"http://h.example/shops/{id}.json", []string{"id"}},
		{"http://h.example/{a}-{b}/", []string{"a", "b"}},
		{"HTTP://reader:pw@h.example/x/{shop.ownerId}", []string{"shop.ownerId"}},
		{"http://[::1]:8080/%7Eu/{id}?a=1&b=%20{id}", []string{"id"}},
		{"http://h.example/static", nil},
	}
	for _, tt := range valid {
		tmpl, err := source.ParseTemplate(tt.in)
		if err != nil {
			t.Errorf("ParseTemplate(%q): %v", tt.in, err)
			continue
		}
		if got := tmpl.Vars(); !slices.Equal(got, tt.vars) {
			t.Errorf("ParseTemplate(%q).Vars() = %q; want %q", tt.in, got, tt.vars)
		}
		if tmpl.String() != tt.in {
			t.Errorf("String() = %q; want %q", tmpl.String(), tt.in)
		}
	}

	invalid := []struct {
		in, want string // want: part of the error message
	}{
		{"http://h/shops/{id", "unbalanced '{' at offset 15"},
		{"http://h/shops/id}", "unbalanced '}' at offset 17"},
		{"http://h/{a{b}}", "unbalanced '{'"},
		{"http://h/{}", "empty name"},
		{"http://h/{1a}", "invalid name"},
		{"http://h/{a-b}", "invalid name"},
		{"http://h/{ a}", "invalid name"},
		{"http://h/{.a}", "invalid name"},
		{"{scheme}://h/x", "in the scheme"},
		{"http://{host}/x", "in the host or port"},
		{"http://h{suffix}/x", "in the host or port"},
		{"http://h:{port}/x", "in the host or port"},
		{"http://{user}@h/x", "in the host or port"},
		{"http://h?{q}", ""}, // fine: a query with no path
		{"ftp://h/{x}", "not http or https"},
		{"mailto:{x}", "not an absolute"},
		{"/shops/{id}", "not an absolute"},
		{"h.example/shops/{id}", "not an absolute"},
		{"shops/{id}?u=http://h", "not an absolute"},
		{"http:///shops/{id}", "no host"},
		{"http://h/x/{id}#frag", "fragment"},
		{"http://h/a b/{x}", "must be escaped"},
		{"http://h/%zz/{x}", "two hex digits"},
		{"http://h/%{x}", "two hex digits"},
		{"http://h/%2{x}", "two hex digits"},
		{"http://h:port/{x}", "port"},
	}
	for _, tt := range invalid {
		_, err := source.ParseTemplate(tt.in)
		if tt.want == "" {
			if err != nil {
				t.Errorf("ParseTemplate(%q): %v", tt.in, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseTemplate(%q) = %v; want an error with %q", tt.in, err, tt.want)
		}
	}
}

// TestExpandHostile expands values that try to escape their place and checks
// that the host and the path segments stay the template's, with each value
// arriving intact where the template put it.
func TestExpandHostile(t *testing.T) {
	t.Parallel()
	tmpl, err := source.ParseTemplate("http://shops.example:8080/v1/shops/{id}/detail?q={id}&tag={tag}")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		value   string
		wantErr bool
	}{
		{value: "42"},
		{value: "../admin"},
		{value: "a/b"},
		{value: "x?y=1"},
		{value: "x#f"},
		{value: "x&tag=evil"},
		{value: "%2e%2e"},
		{value: "%2F"},
		{value: "%"},
		{value: "..%2F"},
		{value: "...."},
		{value: "ünïcødé 店"},
		{value: "a b+c"},
		{value: "@evil.example"},
		{value: "//evil.example/x"},
		{value: `\..\admin`},
		{value: "\r\nHost: evil.example"},
		{value: "\x00"},
		{value: "\xff\xfe"},
		{value: "..", wantErr: true},
		{value: ".", wantErr: true},
		{value: "", wantErr: true},
	}
	for _, tt := range tests {
		values := map[string]string{"id": tt.value, "tag": tt.value}
		got, err := tmpl.Expand(func(name string) (string, bool) { v, ok := values[name]; return v, ok })
		if tt.wantErr {
			if err == nil {
				t.Errorf("Expand(%q) = %q; want an error", tt.value, got)
			}
			continue
		}
		if err != nil {
			t.Errorf("Expand(%q): %v", tt.value, err)
			continue
		}
		u, err := url.Parse(got)
		if err != nil {
			t.Errorf("Expand(%q) = %q, which does not parse: %v", tt.value, got, err)
			continue
		}
		if u.Scheme != "http" || u.Host != "shops.example:8080" {
			t.Errorf("Expand(%q) = %q: scheme or host changed", tt.value, got)
		}
		segs := strings.Split(u.EscapedPath(), "/")
		if len(segs) != 5 || segs[1] != "v1" || segs[2] != "shops" || segs[4] != "detail" {
			t.Errorf("Expand(%q) = %q: path segments %q changed", tt.value, got, segs)
			continue
		}
		if v, err := url.PathUnescape(segs[3]); err != nil || v != tt.value {
			t.Errorf("Expand(%q) = %q: path segment holds %q", tt.value, got, v)
		}
		q := u.Query()
		if len(q) != 2 || q.Get("q") != tt.value || q.Get("tag") != tt.value {
			t.Errorf("Expand(%q) = %q: query %v changed", tt.value, got, q)
		}
		// What a client sends must be what was checked.
		req, err := http.NewRequest(http.MethodGet, got, nil)
		if err != nil || req.URL.RequestURI() != strings.TrimPrefix(got, "http://shops.example:8080") {
			t.Errorf("Expand(%q) = %q: request URI %q", tt.value, got, req.URL.RequestURI())
		}
	}
}

func TestExpandErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		tmpl   string
		values map[string]string
		want   string
	}{
		{"http://h/shops/{id}", map[string]string{}, "no value for {id}"},
		{"http://h/shops?id={id}", map[string]string{}, "no value for {id}"},
		{"http://h/shops/{id}/{shop.ownerId}", map[string]string{"id": "1"}, "no value for {shop.ownerId}"},
		{"http://h/shops/{id}.json", map[string]string{"id": ""}, "would change the path"},
		{"http://h/shops/{a}{b}", map[string]string{"a": ".", "b": "."}, "would change the path"},
	}
	for _, tt := range tests {
		tmpl, err := source.ParseTemplate(tt.tmpl)
		if err != nil {
			t.Fatal(err)
		}
		got, err := tmpl.Expand(func(name string) (string, bool) { v, ok := tt.values[name]; return v, ok })
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s with %v = %q, %v; want an error with %q", tt.tmpl, tt.values, got, err, tt.want)
		}
	}

	// In the query, an empty value is a value.
	tmpl, err := source.ParseTemplate("http://h/shops?owner={owner}")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := tmpl.Expand(func(string) (string, bool) { return "", true }); err != nil || got != "http://h/shops?owner=" {
		t.Errorf("Expand with an empty query value = %q, %v", got, err)
	}
}

var fuzzTemplates = []string{
	"http://h.example:8080/shops/{a}",
	"https://h.example/v1/{a}/x/{b}.json?q={a}&r={b}",
	"http://h.example/{a}{b}/{b}-{a}/",
	"http://h.example?x={a}",
	"http://reader:pw@[::1]:9/%7E/{a}/{b.c}",
}

// FuzzTemplateExpand checks that no values can move a request to another host
// or change the number of path segments: Expand either fails or gives a URL
// that keeps the template's scheme, host and segment count.
func FuzzTemplateExpand(f *testing.F) {
	for _, v := range []string{"42", "../admin", "a/b", "x?y=1", "x#f", "%2e%2e", "..", ".", "", "ü", "a b", "%", "\x00"} {
		f.Add(uint8(0), v, "1")
		f.Add(uint8(2), ".", v)
	}
	f.Fuzz(func(t *testing.T, which uint8, a, b string) {
		tmpl, err := source.ParseTemplate(fuzzTemplates[int(which)%len(fuzzTemplates)])
		if err != nil {
			t.Fatal(err)
		}
		base, err := tmpl.Expand(func(string) (string, bool) { return "x", true })
		if err != nil {
			t.Fatal(err)
		}
		want, _ := url.Parse(base)
		got, err := tmpl.Expand(func(name string) (string, bool) {
			if name == "a" {
				return a, true
			}
			return b, true
		})
		if err != nil {
			return
		}
		u, err := url.Parse(got)
		if err != nil {
			t.Fatalf("Expand(%q, %q) = %q, which does not parse: %v", a, b, got, err)
		}
		if u.Scheme != want.Scheme || u.Host != want.Host || u.User.String() != want.User.String() {
			t.Fatalf("Expand(%q, %q) = %q: scheme, user or host differ from %q", a, b, got, base)
		}
		if g, w := strings.Count(u.EscapedPath(), "/"), strings.Count(want.EscapedPath(), "/"); g != w {
			t.Fatalf("Expand(%q, %q) = %q: %d path segments, want %d", a, b, got, g, w)
		}
		if len(u.Query()) != len(want.Query()) {
			t.Fatalf("Expand(%q, %q) = %q: query parameters differ from %q", a, b, got, base)
		}
	})
}

// FuzzParseTemplate checks that whatever ParseTemplate accepts expands, with
// plain values, to an absolute http(s) URL.
func FuzzParseTemplate(f *testing.F) {
	for _, s := range fuzzTemplates {
		f.Add(s)
	}
	f.Add("http://{h}/x")
	f.Add("http://h/{a{b}}")
	f.Fuzz(func(t *testing.T, s string) {
		tmpl, err := source.ParseTemplate(s)
		if err != nil {
			return
		}
		if tmpl.String() != s {
			t.Fatalf("String() = %q; want %q", tmpl.String(), s)
		}
		got, err := tmpl.Expand(func(string) (string, bool) { return "x", true })
		if err != nil {
			t.Fatalf("ParseTemplate(%q) accepted, but Expand: %v", s, err)
		}
		u, err := url.Parse(got)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			t.Fatalf("ParseTemplate(%q) accepted, but Expand = %q (%v)", s, got, err)
		}
	})
}
