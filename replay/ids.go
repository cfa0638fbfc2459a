package replay

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/readside/readside/projections"
)

// IDList is the ids a run of IDs re-issues, as read from arguments, a file
// or standard input: the valid ones, distinct, in input order, and the
// inputs that were skipped.
type IDList struct {
	// Name says where the ids came from: "arguments", a file name, "stdin".
	Name string
	// IDs are the valid ids, each once, in input order.
	IDs []string
	// Invalid are the inputs that are not valid ids, with their line
	// (or argument) number.
	Invalid []Problem
	// Duplicates is how many inputs repeated an earlier id.
	Duplicates int
}

// add validates one input and keeps it when it is a new, valid id.
func (l *IDList) add(where, id string, seen map[string]bool) {
	if err := projections.ValidateID(id); err != nil {
		why := strings.TrimPrefix(err.Error(), projections.ErrBadEvent.Error()+": ")
		l.Invalid = append(l.Invalid, Problem{Where: where, Input: id, Why: why})
		return
	}
	if seen[id] {
		l.Duplicates++
		return
	}
	seen[id] = true
	l.IDs = append(l.IDs, id)
}

// IDArgs reads ids given as command arguments; an invalid one is reported
// with its position ("argument 3").
func IDArgs(args []string) *IDList {
	l := &IDList{Name: "arguments"}
	seen := map[string]bool{}
	for i, a := range args {
		l.add(fmt.Sprintf("argument %d", i+1), a, seen)
	}
	return l
}

// ParseIDs reads one id per line from r. Leading and trailing spaces are
// trimmed; blank lines and lines starting with '#' are skipped. A line that
// is not a valid id is reported with its line number, and never stops the
// others. The error is only a failure to read.
func ParseIDs(name string, r io.Reader) (*IDList, error) {
	l := &IDList{Name: name}
	seen := map[string]bool{}
	br := bufio.NewReader(r)
	for n := 1; ; n++ {
		line, err := br.ReadString('\n')
		if len(line) > 0 {
			id := strings.TrimSpace(line)
			if id != "" && !strings.HasPrefix(id, "#") {
				l.add(fmt.Sprintf("line %d", n), id, seen)
			}
		}
		if errors.Is(err, io.EOF) {
			return l, nil
		}
		if err != nil {
			return nil, fmt.Errorf("replay: reading ids from %s: %w", name, err)
		}
	}
}

// Key names the run of list: the same ids, in the same order, resume the
// same run wherever they were read from.
func (l *IDList) key(def *projections.Definition) string {
	h := sha256.New()
	for _, id := range l.IDs {
		io.WriteString(h, id)
		h.Write([]byte{'\n'})
	}
	return fmt.Sprintf("ids %s %d:%s", def.Name, len(l.IDs), hex.EncodeToString(h.Sum(nil)[:12]))
}

// IDs re-issues the ids of list for def: each valid id once, in order, at
// most o.Rate per second. The invalid inputs of list are counted and listed
// in the Result (and written to o.Notes), never re-issued.
//
// The run is keyed by the projection and the ids themselves (a hash of
// them): the same ids, from a file or standard input alike, resume where an
// interrupted run stopped.
func (e *Env) IDs(ctx context.Context, def *projections.Definition, list *IDList, o Options) (*Result, error) {
	if err := e.checkEvents(ctx, def); err != nil {
		return nil, err
	}
	r, err := e.begin(def, "ids "+def.Name, list.key(def), "ids", o)
	if err != nil {
		return nil, err
	}
	if !r.resumed {
		r.cp.Counts.Invalid = int64(len(list.Invalid))
		r.cp.Counts.Duplicates = int64(list.Duplicates)
	}
	for _, p := range list.Invalid {
		r.problem(p)
		fmt.Fprintf(r.o.Notes, "skipped %s %s\n", list.Name, p)
	}
	start := min(r.cp.Position.Index, int64(len(list.IDs)))
	if r.resumed {
		fmt.Fprintf(r.o.Notes, "continuing at id %d of %d\n", start+1, len(list.IDs))
	}
	r.show(int64(len(list.IDs)))
	err = r.reissue(ctx, list.IDs[start:], true, func(n int) Position { return Position{Index: start + int64(n)} })
	return r.end(ctx, err)
}
