package source

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Template is the URL of a source API with {name} placeholders, such as
//
//	https://shops.internal/v1/shops/{id}?owner={shop.ownerId}
//
// A name matches [A-Za-z_][A-Za-z0-9_.]*; dots let a joined source use the
// fields of another source. Placeholders may stand in the path and the query,
// never in the scheme, host or port, so a value can never choose where a
// request goes. Expand escapes every value for where it stands, so a value
// cannot add or remove path segments, start a query, or add query parameters.
//
// A Template is immutable and safe for concurrent use.
type Template struct {
	raw    string
	prefix string   // "scheme://authority", verbatim
	scheme string   // as url.Parse reports it, to check results
	host   string   // as url.Parse reports it, to check results
	path   [][]part // the path split at '/'; path[0] is the empty text before the first '/'
	query  []part   // after '?', when hasQuery
	hasQ   bool
	vars   []string
}

// part is literal text, or a placeholder when name is set.
type part struct {
	lit  string
	name string
}

// ParseTemplate parses s. It fails, naming the offset in s, on unbalanced
// braces, an empty or invalid placeholder name, a placeholder in the scheme,
// host or port, a URL that is not absolute http or https, a fragment, and on
// literal text that is not already escaped for a URL (such as a space, or a
// '%' not followed by two hex digits), because such text would be re-escaped
// on the wire and could let values change the path.
func ParseTemplate(s string) (*Template, error) {
	fail := func(format string, args ...any) (*Template, error) {
		return nil, fmt.Errorf("source: template %q: %s", s, fmt.Sprintf(format, args...))
	}
	// Balance and names first, over the whole string, so that later steps can
	// look for '/', '?' and '#' without meeting them inside a placeholder.
	if _, err := splitParts(s, 0); err != nil {
		return fail("%v", err)
	}
	if strings.Contains(s, "#") {
		return fail("a fragment is not allowed: it is never sent to the source")
	}
	i := strings.Index(s, "://")
	if i < 0 || strings.ContainsAny(s[:i], "/?") {
		return fail("not an absolute http or https URL")
	}
	if brace := strings.IndexByte(s[:i], '{'); brace >= 0 {
		return fail("placeholder at offset %d is in the scheme: a value must not choose the scheme", brace)
	}
	authEnd := len(s)
	if j := strings.IndexAny(s[i+3:], "/?"); j >= 0 {
		authEnd = i + 3 + j
	}
	if brace := strings.IndexByte(s[:authEnd], '{'); brace >= 0 {
		return fail("placeholder at offset %d is in the host or port: a value must not choose where the request goes", brace)
	}
	t := &Template{raw: s, prefix: s[:authEnd]}
	pu, err := url.Parse(t.prefix)
	if err != nil {
		return fail("%v", unwrapURLError(err))
	}
	if pu.Scheme != "http" && pu.Scheme != "https" {
		return fail("scheme %q is not http or https", pu.Scheme)
	}
	if pu.Host == "" {
		return fail("no host")
	}
	t.scheme, t.host = pu.Scheme, pu.Host

	rest, off := s[authEnd:], authEnd
	pathText := rest
	if q := strings.IndexByte(rest, '?'); q >= 0 {
		pathText = rest[:q]
		t.hasQ = true
		qparts, err := splitParts(rest[q+1:], off+q+1)
		if err != nil {
			return fail("%v", err)
		}
		if err := checkLiterals(rest[q+1:], off+q+1, "/?"); err != nil {
			return fail("%v", err)
		}
		t.query = qparts
	}
	if err := checkLiterals(pathText, off, "/"); err != nil {
		return fail("%v", err)
	}
	segOff := off
	for _, seg := range strings.Split(pathText, "/") {
		parts, err := splitParts(seg, segOff)
		if err != nil {
			return fail("%v", err)
		}
		t.path = append(t.path, parts)
		segOff += len(seg) + 1
	}

	seen := map[string]bool{}
	for _, p := range t.allParts() {
		if p.name != "" && !seen[p.name] {
			seen[p.name] = true
			t.vars = append(t.vars, p.name)
		}
	}
	// Whatever the literal text, a plain value must give a valid URL.
	if _, err := t.Expand(func(string) (string, bool) { return "x", true }); err != nil {
		return fail("%v", err)
	}
	return t, nil
}

func (t *Template) allParts() []part {
	var all []part
	for _, seg := range t.path {
		all = append(all, seg...)
	}
	return append(all, t.query...)
}

// Vars returns the placeholder names in the order they first appear, each once.
func (t *Template) Vars() []string {
	return append([]string(nil), t.vars...)
}

// String returns the template as it was parsed.
func (t *Template) String() string { return t.raw }

// Expand returns the URL with each placeholder replaced by value(name): escaped
// with url.PathEscape in the path and url.QueryEscape in the query, so that
// '/', '?', '#', '&', '=' and '%' in a value stay data.
//
// It fails when value reports no value for a placeholder, and when a value in
// the path is empty, "." or "..", or would make its segment one of those,
// because that would change which resource the path names. The result always
// has the template's scheme and host and exactly its path segments.
func (t *Template) Expand(value func(name string) (string, bool)) (string, error) {
	var b strings.Builder
	b.WriteString(t.prefix)
	want := make([]string, len(t.path)) // each segment, unescaped, to check the result
	for i, seg := range t.path {
		if i > 0 {
			b.WriteByte('/')
		}
		start := b.Len()
		hasVar := false
		for _, p := range seg {
			if p.name == "" {
				b.WriteString(p.lit)
				continue
			}
			hasVar = true
			v, ok := value(p.name)
			if !ok {
				return "", fmt.Errorf("source: expand %q: no value for {%s}", t.raw, p.name)
			}
			if isDotOrEmpty(v) {
				return "", fmt.Errorf("source: expand %q: value %q for {%s} in the path would change the path", t.raw, v, p.name)
			}
			b.WriteString(url.PathEscape(v))
		}
		s, err := url.PathUnescape(b.String()[start:])
		if err != nil {
			return "", fmt.Errorf("source: expand %q: %w", t.raw, err)
		}
		if hasVar && isDotOrEmpty(s) {
			return "", fmt.Errorf("source: expand %q: path segment %d would be %q, which would change the path", t.raw, i, s)
		}
		want[i] = s
	}
	if t.hasQ {
		b.WriteByte('?')
		for _, p := range t.query {
			if p.name == "" {
				b.WriteString(p.lit)
				continue
			}
			v, ok := value(p.name)
			if !ok {
				return "", fmt.Errorf("source: expand %q: no value for {%s}", t.raw, p.name)
			}
			b.WriteString(url.QueryEscape(v))
		}
	}
	out := b.String()
	if err := t.check(out, want); err != nil {
		// Unreachable if ParseTemplate and the escaping above are right; kept
		// because a wrong URL here would fetch, and store, the wrong entity.
		return "", fmt.Errorf("source: expand %q: %w", t.raw, err)
	}
	return out, nil
}

// check verifies that s, as a client will parse and send it, has the
// template's scheme and host and the path segments want (unescaped).
func (t *Template) check(s string, want []string) error {
	u, err := url.Parse(s)
	if err != nil {
		return unwrapURLError(err)
	}
	if u.Scheme != t.scheme || u.Host != t.host {
		return fmt.Errorf("result %q changed the scheme or host", s)
	}
	// EscapedPath is what goes on the wire (URL.RequestURI), so split that:
	// Path is unescaped and would turn an escaped "/" into a separator.
	got := strings.Split(u.EscapedPath(), "/")
	if len(got) != len(want) {
		return fmt.Errorf("result %q has %d path segments, want %d", s, len(got), len(want))
	}
	for i, g := range got {
		if g, err := url.PathUnescape(g); err != nil || g != want[i] {
			return fmt.Errorf("result %q changed path segment %d", s, i)
		}
	}
	return nil
}

func isDotOrEmpty(s string) bool { return s == "" || s == "." || s == ".." }

// splitParts splits s, which starts at offset off of the template, into
// literal text and placeholders, checking that braces balance and names are
// valid.
func splitParts(s string, off int) ([]part, error) {
	var parts []part
	for len(s) > 0 {
		open := strings.IndexAny(s, "{}")
		if open < 0 {
			parts = append(parts, part{lit: s})
			break
		}
		if s[open] == '}' {
			return nil, fmt.Errorf("unbalanced '}' at offset %d", off+open)
		}
		if open > 0 {
			parts = append(parts, part{lit: s[:open]})
		}
		end := strings.IndexAny(s[open+1:], "{}")
		if end < 0 || s[open+1+end] == '{' {
			return nil, fmt.Errorf("unbalanced '{' at offset %d", off+open)
		}
		end += open + 1
		name := s[open+1 : end]
		if err := checkName(name); err != nil {
			return nil, fmt.Errorf("placeholder at offset %d: %w", off+open, err)
		}
		parts = append(parts, part{name: name})
		s, off = s[end+1:], off+end+1
	}
	return parts, nil
}

func checkName(name string) error {
	if name == "" {
		return errors.New("empty name")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '_', 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z':
		case i > 0 && (c == '.' || '0' <= c && c <= '9'):
		default:
			return fmt.Errorf("invalid name %q: want [A-Za-z_][A-Za-z0-9_.]*", name)
		}
	}
	return nil
}

// checkLiterals reports text outside placeholders in s (at offset off) that a
// URL parser would not keep as it is: anything but unreserved characters,
// sub-delimiters, ':', '@', the characters in extra, and %XX escapes.
func checkLiterals(s string, off int, extra string) error {
	inName := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '{':
			inName = true
		case c == '}':
			inName = false
		case inName:
		case c == '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return fmt.Errorf("'%%' at offset %d is not followed by two hex digits", off+i)
			}
			i += 2
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9',
			strings.IndexByte("-._~!$&'()*+,;=:@", c) >= 0,
			strings.IndexByte(extra, c) >= 0:
		default:
			return fmt.Errorf("character %q at offset %d must be escaped", c, off+i)
		}
	}
	return nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// unwrapURLError drops the *url.Error wrapper, whose message repeats the URL
// that the caller's message already names.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
