package sink

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// The parts of the stored value's layout (see DecodeValue).
const (
	versionDigits     = 20 // more than int64 needs, so any version fits
	timeDigits        = 13 // Unix milliseconds until the year 2286
	kindDoc           = 'd'
	kindTombstone     = 't'
	kindDocTime       = 'D'
	kindTombstoneTime = 'T'
)

// ValueHeaderLen is the length of the header every stored value starts
// with, the version and the kind: a tombstone without a build time is just
// that.
const ValueHeaderLen = versionDigits + 1

// MaxValueOverhead is the most bytes AppendValue adds to a document's body:
// the header and the build time.
const MaxValueOverhead = ValueHeaderLen + timeDigits

// IsTombstoneValue reports whether the kind byte of the stored value v says
// tombstone, with or without a build time, looking at nothing else: false
// when v is shorter than ValueHeaderLen. A store that keeps more after a
// tombstone's value (boltstore its deadline) finds it so before decoding.
func IsTombstoneValue(v []byte) bool {
	return len(v) > versionDigits && (v[versionDigits] == kindTombstone || v[versionDigits] == kindTombstoneTime)
}

// AppendValue appends the stored value of d to b (see DecodeValue for its
// layout). It does not check d (see Doc.Check).
func AppendValue(b []byte, d *Doc) []byte {
	var tmp [versionDigits]byte
	digits := strconv.AppendInt(tmp[:0], d.Version, 10)
	for range versionDigits - len(digits) {
		b = append(b, '0')
	}
	b = append(b, digits...)
	switch {
	case d.BuiltAt.IsZero() && d.Deleted:
		return append(b, kindTombstone)
	case d.BuiltAt.IsZero():
		return append(append(b, kindDoc), d.Body...)
	case d.Deleted:
		b = append(b, kindTombstoneTime)
	default:
		b = append(b, kindDocTime)
	}
	b = fmt.Appendf(b, "%013d", max(d.BuiltAt.UnixMilli(), 0)%1e13)
	if d.Deleted {
		return b
	}
	return append(b, d.Body...)
}

// DecodeValue decodes a stored value: how a document or a tombstone is kept
// by the doc stores (redisstore as one Redis string, boltstore as one bbolt
// value followed by a tombstone's deadline) and by the embedded search index
// (bleveindex, in a stored field). It holds the version, the kind, the build
// time and the body in one byte string, which Redis's guard script compares
// without decoding JSON. The layout is a contract: other packages (redisstore's
// scan, the query benchmark's baseline) read stored values, and what one release
// stores the next reads, so it changes only by a new kind.
//
// Layout: 20 ASCII digits of the zero-padded version (so that versions
// compare as strings in numeric order), one kind byte, then:
//
//	'd': the JSON body of a document;
//	't': nothing: a tombstone;
//	'D', 'T': as 'd' and 't', with 13 digits of the build time
//	(Doc.BuiltAt) in Unix milliseconds before the body.
//
// AppendValue writes it, at most MaxValueOverhead bytes longer than the
// body. Body is a sub-slice of v, not a copy, so a caller can splice it into
// a response as it is. A value that does not decode is an error from
// BadValue.
func DecodeValue(v []byte) (Stored, error) {
	if len(v) < ValueHeaderLen {
		return Stored{}, BadValue(v, "too short")
	}
	var n int64
	for _, c := range v[:versionDigits] {
		if c < '0' || c > '9' {
			return Stored{}, BadValue(v, "version is not digits")
		}
		d := int64(c - '0')
		if n > (1<<63-1-d)/10 {
			return Stored{}, BadValue(v, "version overflows int64")
		}
		n = n*10 + d
	}
	kind, body := v[versionDigits], v[ValueHeaderLen:]
	var built time.Time
	if kind == kindDocTime || kind == kindTombstoneTime {
		if len(body) < timeDigits {
			return Stored{}, BadValue(v, "too short for its build time")
		}
		ms, err := strconv.ParseInt(string(body[:timeDigits]), 10, 64)
		if err != nil || ms < 0 {
			return Stored{}, BadValue(v, "build time is not digits")
		}
		built, body = time.UnixMilli(ms), body[timeDigits:]
		kind += 'a' - 'A'
	}
	switch kind {
	case kindDoc:
		if len(body) == 0 {
			return Stored{}, BadValue(v, "document without a body")
		}
		return Stored{Version: n, Body: body, BuiltAt: built}, nil
	case kindTombstone:
		if len(body) != 0 {
			return Stored{}, BadValue(v, "tombstone with a body")
		}
		return Stored{Version: n, Deleted: true, BuiltAt: built}, nil
	}
	return Stored{}, BadValue(v, "unknown kind")
}

// BadValue is the error for v, a stored value or a record that embeds one,
// which does not decode: it quotes the start of v and says why.
func BadValue(v []byte, why string) error {
	const show = 32
	if len(v) > show {
		return fmt.Errorf("sink: bad stored value %q...: %s", v[:show], why)
	}
	return fmt.Errorf("sink: bad stored value %q: %s", v, why)
}

// EncodeRefs is how the reverse lookups (redisstore.Refs, boltstore.Refs)
// store the refs a document was built with, after its version: a JSON array
// of [source, key] pairs; the ids are the document's own.
func EncodeRefs(refs []Ref) string {
	pairs := make([][2]string, len(refs))
	for i, ref := range refs {
		pairs[i] = [2]string{ref.Source, ref.Key}
	}
	b, _ := json.Marshal(pairs)
	return string(b)
}

// DecodeRefs reads the refs of document id back from what EncodeRefs wrote;
// nil when s is not such an array.
func DecodeRefs(id, s string) []Ref {
	var pairs [][2]string
	if json.Unmarshal([]byte(s), &pairs) != nil {
		return nil
	}
	out := make([]Ref, len(pairs))
	for i, p := range pairs {
		out[i] = Ref{ID: id, Source: p[0], Key: p[1]}
	}
	return out
}
