package main

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/readside/readside/projections"
)

// unsetPlaceholder stands, in -check, for an environment variable a source
// URL names that is not set: deployment settings, not the definition's.
const unsetPlaceholder = "http://unset-environment-variable.invalid"

// check loads and validates every projection definition under path with
// the projections package, as the daemons do at start, and never connects
// to anything: what a domain team runs in CI (projector -check). On success
// it writes one line to out naming each projection and its trigger
// subjects; otherwise the error lists every problem of every file, each
// with its file and line. An environment variable a source URL names that
// is not set is not a problem of the definition: the line names it, as the
// daemons will need it.
func check(path string, out io.Writer) error {
	var unset []string
	lookup := func(name string) (string, bool) {
		if v, ok := os.LookupEnv(name); ok {
			return v, true
		}
		if !slices.Contains(unset, name) {
			unset = append(unset, name)
		}
		return unsetPlaceholder, true
	}
	defs, err := projections.LoadDir(path, projections.Options{Lookup: lookup})
	if err != nil {
		n := len(problems(err))
		return fmt.Errorf("-check: %s: %d %s; the projector and the query API would not start with these definitions:\n%w",
			path, n, plural(n, "problem", "problems"), err)
	}
	var each []string
	for _, d := range defs {
		var subjects []string
		for _, tr := range d.Triggers {
			subjects = append(subjects, tr.Subject)
		}
		each = append(each, fmt.Sprintf("%s (%s)", d.Name, strings.Join(subjects, ", ")))
	}
	fmt.Fprintf(out, "definitions OK: %s: %d %s: %s", path, len(defs), plural(len(defs), "projection", "projections"), strings.Join(each, "; "))
	if len(unset) > 0 {
		fmt.Fprintf(out, "; the source URLs name environment variables not set here, which the daemons need: %s", strings.Join(unset, ", "))
	}
	fmt.Fprintln(out)
	return nil
}

// problems are the errors err joins (errors.Join, nested: each file's
// problems joined, then the files'), or err itself when it joins none (a
// directory that cannot be read).
func problems(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var all []error
		for _, e := range j.Unwrap() {
			all = append(all, problems(e)...)
		}
		return all
	}
	return []error{err}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
