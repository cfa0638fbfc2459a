package projections

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/tidwall/gjson"
)

// MaxIDLen bounds an entity id, in bytes.
const MaxIDLen = 256

// maxEventBody bounds an event body: events carry an id, never a state payload.
const maxEventBody = 64 << 10

// ErrBadEvent marks an event that can never be processed: its id is missing
// or invalid, or its body is not what the definition says. Such an event is
// dead-lettered; retrying it cannot help.
var ErrBadEvent = errors.New("bad event")

// ValidateID reports whether id can name an entity: non-empty, at most
// MaxIDLen bytes, valid UTF-8, printable, without whitespace or the NATS
// wildcards '*' and '>', and not "." or "..".
func ValidateID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: the id is empty", ErrBadEvent)
	case len(id) > MaxIDLen:
		return fmt.Errorf("%w: the id is %d bytes long; at most %d are allowed", ErrBadEvent, len(id), MaxIDLen)
	case !utf8.ValidString(id):
		return fmt.Errorf("%w: the id is not valid UTF-8", ErrBadEvent)
	case id == "." || id == "..":
		return fmt.Errorf("%w: the id %q is not allowed", ErrBadEvent, id)
	}
	for _, r := range id {
		switch {
		case r == '*' || r == '>':
			return fmt.Errorf("%w: the id %q contains the NATS wildcard %q", ErrBadEvent, id, r)
		case unicode.IsSpace(r):
			return fmt.Errorf("%w: the id %q contains whitespace", ErrBadEvent, id)
		case !unicode.IsPrint(r):
			return fmt.Errorf("%w: the id %q contains the unprintable character %U", ErrBadEvent, id, r)
		}
	}
	return nil
}

// IDOf returns the id an event on this trigger carries.
func (t Trigger) IDOf(subject string, body []byte) (string, error) {
	var id string
	if path, ok := strings.CutPrefix(t.ID, "body."); ok {
		if len(body) > maxEventBody {
			return "", fmt.Errorf("%w: the body is %d bytes; an event carries an id, not a state (at most %d bytes)", ErrBadEvent, len(body), maxEventBody)
		}
		if !gjson.ValidBytes(body) {
			return "", fmt.Errorf("%w: the body is not valid JSON", ErrBadEvent)
		}
		v := gjson.GetBytes(body, path)
		switch v.Type {
		case gjson.String:
			id = v.Str
		case gjson.Number:
			id = v.Raw
		case gjson.Null:
			if !v.Exists() {
				return "", fmt.Errorf("%w: the body has no field %q", ErrBadEvent, path)
			}
			return "", fmt.Errorf("%w: the body's %q is null", ErrBadEvent, path)
		default:
			return "", fmt.Errorf("%w: the body's %q is %s, not a string or a number", ErrBadEvent, path, v.Type)
		}
	} else {
		id = subject[strings.LastIndexByte(subject, '.')+1:]
	}
	if err := ValidateID(id); err != nil {
		return "", err
	}
	return id, nil
}

// SubjectMatches reports whether a NATS subject matches a subject filter with
// '*' (one token) and '>' (the rest, at least one token) wildcards.
func SubjectMatches(filter, subject string) bool {
	for {
		ft, frest, fmore := strings.Cut(filter, ".")
		st, srest, smore := strings.Cut(subject, ".")
		switch {
		case ft == ">":
			return st != ""
		case ft != "*" && ft != st:
			return false
		case !fmore || !smore:
			return fmore == smore
		}
		filter, subject = frest, srest
	}
}

// Covers reports whether subject filter a matches every subject filter b
// matches (so b adds nothing next to a).
func Covers(a, b string) bool {
	at, bt := strings.Split(a, "."), strings.Split(b, ".")
	for i, t := range at {
		switch {
		case t == ">":
			return i < len(bt)
		case i >= len(bt):
			return false
		case t == "*":
			if bt[i] == ">" {
				return false
			}
		case t != bt[i]:
			return false
		}
	}
	return len(at) == len(bt)
}
