package projections

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/readside/readside/internal/source"
)

// maxFileBytes bounds a definition file; a definition is a page of YAML.
const maxFileBytes = 1 << 20

// Options tune Load.
type Options struct {
	// Lookup resolves "${NAME}" in source URLs [os.LookupEnv].
	Lookup func(name string) (string, bool)
}

// Problem is one mistake in a definition file, with where it is.
type Problem struct {
	File string
	Line int    // 0 when unknown
	Path string // e.g. "fields[2].type"
	Msg  string
}

func (p *Problem) Error() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
	}
	if p.Path != "" {
		b.WriteString(": " + p.Path)
	}
	b.WriteString(": " + p.Msg)
	return b.String()
}

// LoadDir loads every *.yaml and *.yml file of dir, or the one file when path
// is a file. It reports the problems of every file at once, and an error when
// two definitions share a name.
func LoadDir(path string, o Options) ([]*Definition, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("projections: %w", err)
	}
	files := []string{path}
	if info.IsDir() {
		files = nil
		for _, pat := range []string{"*.yaml", "*.yml"} {
			m, _ := filepath.Glob(filepath.Join(path, pat))
			files = append(files, m...)
		}
		sort.Strings(files)
		if len(files) == 0 {
			return nil, fmt.Errorf("projections: no *.yaml definition in %s", path)
		}
	}
	var defs []*Definition
	var errs []error
	seen := map[string]string{}
	for _, f := range files {
		d, err := Load(f, o)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if other, dup := seen[d.Name]; dup {
			errs = append(errs, &Problem{File: f, Path: "name", Msg: fmt.Sprintf("projection %q is also defined in %s", d.Name, other)})
			continue
		}
		seen[d.Name] = f
		defs = append(defs, d)
	}
	return defs, errors.Join(errs...)
}

// Load reads and validates one definition file.
func Load(file string, o Options) (*Definition, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("projections: %w", err)
	}
	return Parse(file, data, o)
}

// Parse validates a definition from YAML. name is used in error messages.
// Every problem is reported at once, joined, each a *Problem with its line.
func Parse(name string, data []byte, o Options) (*Definition, error) {
	if len(data) > maxFileBytes {
		return nil, &Problem{File: name, Msg: fmt.Sprintf("file is %d bytes; a definition may have at most %d", len(data), maxFileBytes)}
	}
	if o.Lookup == nil {
		o.Lookup = os.LookupEnv
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlProblem(name, err)
	}
	if len(root.Content) == 0 {
		return nil, &Problem{File: name, Msg: "file is empty"}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var d Definition
	if err := dec.Decode(&d); err != nil {
		return nil, yamlProblem(name, err)
	}
	d.File = name
	v := &validator{file: name, root: root.Content[0]}
	d.validate(v, o)
	if len(v.problems) > 0 {
		return nil, errors.Join(v.problems...)
	}
	return &d, nil
}

var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// yamlProblem turns a YAML error, which may hold several lines, into Problems.
func yamlProblem(file string, err error) error {
	var te *yaml.TypeError
	msgs := []string{err.Error()}
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	var errs []error
	for _, m := range msgs {
		p := &Problem{File: file, Msg: m}
		if s := yamlLine.FindStringSubmatch(strings.TrimPrefix(m, "yaml: unmarshal errors:\n  ")); s != nil {
			fmt.Sscan(s[1], &p.Line)
			p.Msg = s[2]
			if strings.Contains(p.Msg, "not found in type") {
				p.Msg += " (unknown field: check its spelling and indentation)"
			}
		}
		errs = append(errs, p)
	}
	return errors.Join(errs...)
}

type validator struct {
	file     string
	root     *yaml.Node
	problems []error
}

// addf records a problem at path: keys and indexes, e.g. ("fields", 2, "type").
func (v *validator) addf(path []any, format string, args ...any) {
	v.problems = append(v.problems, &Problem{File: v.file, Line: lineOf(v.root, path), Path: pathString(path), Msg: fmt.Sprintf(format, args...)})
}

func pathString(path []any) string {
	var b strings.Builder
	for _, p := range path {
		switch p := p.(type) {
		case int:
			fmt.Fprintf(&b, "[%d]", p)
		case string:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(p)
		}
	}
	return b.String()
}

// lineOf finds the line of the node at path, or of its nearest parent that exists.
func lineOf(n *yaml.Node, path []any) int {
	line := n.Line
	for _, p := range path {
		var next *yaml.Node
		switch p := p.(type) {
		case string:
			if n.Kind == yaml.MappingNode {
				for i := 0; i+1 < len(n.Content); i += 2 {
					if n.Content[i].Value == p {
						next = n.Content[i+1]
						line = n.Content[i].Line
						break
					}
				}
			}
		case int:
			if n.Kind == yaml.SequenceNode && p < len(n.Content) {
				next = n.Content[p]
				line = next.Line
			}
		}
		if next == nil {
			return line
		}
		n = next
	}
	return line
}

// queryWords are the query API's parameters and special sort keys: a field
// of the same name could not be filtered or sorted on.
var queryWords = []string{"ids", "q", "sort", "limit", "cursor", "near", "within", "distance", "relevance"}

var (
	nameRE      = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)
	fieldNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)
	envRE       = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)
	aliasRE     = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,200}$`)
)

// validate checks d, recording every problem in v, and compiles its sources'
// templates into d.sources. The steps run in the order of a definition's
// sections, so problems are reported in the order of the file.
func (d *Definition) validate(v *validator, o Options) {
	if !nameRE.MatchString(d.Name) {
		v.addf([]any{"name"}, "%q is not a valid name: use lower case letters, digits, '_' and '-', starting with a letter", d.Name)
	}
	d.validateTriggers(v)
	names := d.validateSources(v, o)
	d.validateLookups(v)
	d.validateVersion(v, names)
	d.validateFields(v, names)
	d.validateStores(v)
}

// validateTriggers checks each trigger's subject, that no two overlap, and
// where its id is.
func (d *Definition) validateTriggers(v *validator) {
	if len(d.Triggers) == 0 {
		v.addf([]any{"triggers"}, "at least one trigger is needed: the event subjects that mark a document as changed")
	}
	for i, t := range d.Triggers {
		if err := validSubjectFilter(t.Subject); err != nil {
			v.addf([]any{"triggers", i, "subject"}, "%v", err)
		}
		for j, o := range d.Triggers[:i] {
			if Covers(o.Subject, t.Subject) || Covers(t.Subject, o.Subject) {
				v.addf([]any{"triggers", i, "subject"}, "%q overlaps triggers[%d] %q: an event would match both; make the subjects distinct", t.Subject, j, o.Subject)
			}
		}
		switch {
		case t.ID == "", t.ID == "subject":
		case strings.HasPrefix(t.ID, "body.") && len(t.ID) > len("body."):
		default:
			v.addf([]any{"triggers", i, "id"}, "%q is not an id location: use \"subject\" (the subject's last token) or \"body.<field>\"", t.ID)
		}
	}
}

// validateSources checks the sources in order and compiles each into
// d.sources. It returns the names of the sources, valid or not, for the
// sections that refer to them.
func (d *Definition) validateSources(v *validator, o Options) (names map[string]bool) {
	if len(d.Sources) == 0 {
		v.addf([]any{"sources"}, "at least one source is needed: the API that holds the entity's state, e.g. url: http://shops/shops/{id}")
	}
	names = map[string]bool{}
	for i := range d.Sources {
		s := &d.Sources[i]
		if !fieldNameRE.MatchString(s.Name) {
			v.addf([]any{"sources", i, "name"}, "%q is not a valid source name", s.Name)
		} else if names[s.Name] {
			v.addf([]any{"sources", i, "name"}, "source %q is defined twice", s.Name)
		}
		if s.Timeout < 0 {
			v.addf([]any{"sources", i, "timeout"}, "must not be negative")
		}
		cs := compiledSource{Source: *s}
		cs.url = v.template(o, []any{"sources", i, "url"}, s.URL)
		if cs.url != nil {
			cs.refs = d.sourceRefs(v, i, cs.url, names)
		}
		if i == 0 && s.Optional {
			v.addf([]any{"sources", i, "optional"}, "the primary source cannot be optional: without it there is no document")
		}
		if s.Batch != nil {
			cs.batch = d.validateBatch(v, o, i)
		}
		if s.List != nil {
			cs.list = d.validateList(v, o, i)
		}
		names[s.Name] = true
		d.sources = append(d.sources, cs)
	}
	return names
}

// sourceRefs checks the placeholders of source i's URL template and returns
// those that refer to a field of another source ("shop.ownerId"). above are
// the names of the sources defined before it: only those can be referred to.
func (d *Definition) sourceRefs(v *validator, i int, url *source.Template, above map[string]bool) (refs []string) {
	s := &d.Sources[i]
	for _, name := range url.Vars() {
		if name == "id" {
			continue
		}
		src, _, _ := strings.Cut(name, ".")
		switch {
		case i == 0:
			v.addf([]any{"sources", i, "url"}, "the primary source is fetched by id: {%s} is not available, only {id}", name)
		case !strings.Contains(name, "."):
			v.addf([]any{"sources", i, "url"}, "unknown placeholder {%s}: use {id} or {<source>.<path>} of a source defined above", name)
		case src == s.Name:
			v.addf([]any{"sources", i, "url"}, "{%s} refers to this source itself", name)
		case above[src]:
			refs = append(refs, name)
		case slices.ContainsFunc(d.Sources[i:], func(o Source) bool { return o.Name == src }):
			v.addf([]any{"sources", i, "url"}, "{%s} refers to source %q, which is defined later: move %q above %q", name, src, src, s.Name)
		default:
			v.addf([]any{"sources", i, "url"}, "{%s} refers to no source: defined are %s", name, strings.Join(sourceNames(d), ", "))
		}
	}
	if i == 0 && !slices.Contains(url.Vars(), "id") {
		v.addf([]any{"sources", i, "url"}, "the primary source's URL must contain {id}")
	}
	return refs
}

// validateBatch checks source i's batch endpoint and returns its compiled
// URL template (nil when it does not parse).
func (d *Definition) validateBatch(v *validator, o Options, i int) *source.Template {
	b := d.Sources[i].Batch
	if i != 0 {
		v.addf([]any{"sources", i, "batch"}, "only the primary source may have a batch endpoint")
	}
	url := v.template(o, []any{"sources", i, "batch", "url"}, b.URL)
	if url != nil && !slices.Equal(url.Vars(), []string{"ids"}) {
		v.addf([]any{"sources", i, "batch", "url"}, "must have the one placeholder {ids} (the ids, comma-separated)")
	}
	if b.Max < 0 || b.Max > 1000 {
		v.addf([]any{"sources", i, "batch", "max"}, "must be between 1 and 1000")
	}
	return url
}

// validateList checks source i's list endpoint and returns its compiled URL
// template (nil when it does not parse).
func (d *Definition) validateList(v *validator, o Options, i int) *source.Template {
	l := d.Sources[i].List
	if i != 0 {
		v.addf([]any{"sources", i, "list"}, "only the primary source may have a list endpoint")
	}
	url := v.template(o, []any{"sources", i, "list", "url"}, l.URL)
	if url != nil && (!slices.Equal(url.Vars(), []string{"cursor"}) || !strings.Contains(l.URL, "?")) {
		v.addf([]any{"sources", i, "list", "url"}, "must have the one placeholder {cursor}, in the query (it is empty for the first page)")
	}
	if l.IDs == "" {
		v.addf([]any{"sources", i, "list", "ids"}, "is required: the path of the ids in a page, e.g. items.#.id")
	}
	return url
}

// validateLookups checks that each lookup trigger names a source other than
// the primary, fetched by one field of another source. It runs after
// validateSources, whose compiled templates it reads.
func (d *Definition) validateLookups(v *validator) {
	for i, t := range d.Triggers {
		if t.Lookup == "" {
			continue
		}
		j := slices.IndexFunc(d.Sources, func(s Source) bool { return s.Name == t.Lookup })
		switch {
		case j < 0:
			v.addf([]any{"triggers", i, "lookup"}, "%q names no source: defined are %s", t.Lookup, strings.Join(sourceNames(d), ", "))
		case j == 0:
			v.addf([]any{"triggers", i, "lookup"}, "%q is the primary source: its events carry the document's id, so drop lookup", t.Lookup)
		case j < len(d.sources) && (len(d.sources[j].refs) != 1 || slices.Contains(d.sources[j].url.Vars(), "id")):
			v.addf([]any{"triggers", i, "lookup"}, "source %q must be fetched by exactly one field of another source (like /owners/{shop.ownerId}) to be looked up", t.Lookup)
		}
	}
}

// validateVersion checks that the version names a field of a source (of the
// primary one, when a lookup trigger needs it before the joins).
func (d *Definition) validateVersion(v *validator, sources map[string]bool) {
	if d.Version == "" {
		return
	}
	if src, _, _ := strings.Cut(d.Version, "."); !sources[src] || !strings.Contains(d.Version, ".") {
		v.addf([]any{"version"}, "%q must be \"<source>.<path>\" naming a defined source, e.g. %q", d.Version, firstSource(d)+".version")
	} else if len(d.Sources) > 0 && src != d.Sources[0].Name && slices.ContainsFunc(d.Triggers, func(t Trigger) bool { return t.Lookup != "" }) {
		v.addf([]any{"version"}, "with a lookup trigger, the version must be a field of the primary source %q (reverse lookups are recorded before the joins are fetched)", d.Sources[0].Name)
	}
}

// validateFields checks each field's name, where it comes from, its type and
// what the type allows (search, filter, sort).
func (d *Definition) validateFields(v *validator, sources map[string]bool) {
	fields := map[string]bool{"id": true}
	for i, f := range d.Fields {
		switch {
		case !fieldNameRE.MatchString(f.Name):
			v.addf([]any{"fields", i, "name"}, "%q is not a valid field name: letters, digits and '_'", f.Name)
		case f.Name == "id" || strings.HasPrefix(f.Name, "readside_"):
			v.addf([]any{"fields", i, "name"}, "%q is reserved: every document has \"id\", and \"readside_\" fields are Readside's", f.Name)
		case slices.Contains(queryWords, f.Name):
			v.addf([]any{"fields", i, "name"}, "%q is reserved by the query API (its parameters and sort keys are %s): rename the field", f.Name, strings.Join(queryWords, ", "))
		case fields[f.Name]:
			v.addf([]any{"fields", i, "name"}, "field %q is defined twice", f.Name)
		}
		fields[f.Name] = true
		if src, _, _ := strings.Cut(f.From, "."); !sources[src] {
			v.addf([]any{"fields", i, "from"}, "%q must start with a defined source name (%s)", f.From, strings.Join(sourceNames(d), ", "))
		}
		if !f.Type.valid() {
			v.addf([]any{"fields", i, "type"}, "%q is not a field type: use one of %s", f.Type, strings.Join(typeNames(), ", "))
			continue
		}
		if f.Search && f.Type != Text {
			v.addf([]any{"fields", i, "search"}, "only text fields are searchable; make %q a text field", f.Name)
		}
		if (f.Filter || f.Sort) && f.Type == Object {
			v.addf([]any{"fields", i}, "object fields are stored as is and cannot be filtered or sorted")
		}
		if f.Sort && f.Array {
			v.addf([]any{"fields", i, "sort"}, "an array field cannot be a sort key")
		}
	}
}

// validateStores checks the Redis key pattern and the Elasticsearch alias.
func (d *Definition) validateStores(v *validator) {
	if !strings.Contains(d.Redis.Key, "{id}") {
		v.addf([]any{"redis", "key"}, "%q must contain {id}, e.g. %q", d.Redis.Key, d.Name+":{id}")
	}
	if !aliasRE.MatchString(d.Elasticsearch.Alias) {
		v.addf([]any{"elasticsearch", "alias"}, "%q is not a valid Elasticsearch alias: lower case letters, digits, '_', '-' and '.'", d.Elasticsearch.Alias)
	}
}

// template expands ${ENV} and parses a URL template, recording problems.
func (v *validator) template(o Options, path []any, raw string) *source.Template {
	if raw == "" {
		v.addf(path, "is required")
		return nil
	}
	expanded, missing := expandEnv(raw, o.Lookup)
	for _, m := range missing {
		v.addf(path, "environment variable %s is not set", m)
	}
	if len(missing) > 0 {
		return nil
	}
	tpl, err := source.ParseTemplate(expanded)
	if err != nil {
		v.addf(path, "%v", err)
		return nil
	}
	return tpl
}

func firstSource(d *Definition) string {
	if len(d.Sources) > 0 {
		return d.Sources[0].Name
	}
	return "shop"
}

func sourceNames(d *Definition) []string {
	var n []string
	for _, s := range d.Sources {
		n = append(n, s.Name)
	}
	return n
}

func typeNames() []string {
	return []string{string(Keyword), string(Text), string(Integer), string(Float), string(Boolean), string(Date), string(GeoPoint), string(Object)}
}

func (t FieldType) valid() bool {
	switch t {
	case Keyword, Text, Integer, Float, Boolean, Date, GeoPoint, Object:
		return true
	}
	return false
}

// expandEnv replaces ${NAME} with its value and lists the names that are not set.
func expandEnv(s string, lookup func(string) (string, bool)) (string, []string) {
	var missing []string
	out := envRE.ReplaceAllStringFunc(s, func(m string) string {
		name := m[2 : len(m)-1]
		val, ok := lookup(name)
		if !ok {
			missing = append(missing, name)
		}
		return val
	})
	return out, missing
}

// validSubjectFilter checks a NATS subject filter: dot-separated non-empty
// tokens without whitespace, '*' as a whole token, '>' only as the last token.
func validSubjectFilter(s string) error {
	if s == "" {
		return errors.New("subject is empty")
	}
	toks := strings.Split(s, ".")
	for i, t := range toks {
		switch {
		case t == "":
			return fmt.Errorf("%q has an empty token", s)
		case strings.ContainsAny(t, " \t\r\n"):
			return fmt.Errorf("%q contains whitespace", s)
		case t == ">" && i != len(toks)-1:
			return fmt.Errorf("%q: '>' may only be the last token", s)
		case t != "*" && t != ">" && strings.ContainsAny(t, "*>"):
			return fmt.Errorf("%q: wildcards must be whole tokens", s)
		}
	}
	return nil
}
