package benchkit

import (
	"errors"
	"flag"
	"io"
	"slices"
	"strings"
	"testing"
)

func TestFlagsParse(t *testing.T) {
	known := []string{"a", "b", "c"}
	for _, tc := range []struct {
		name      string
		args      []string
		scenarios []string
		runs      int
		problems  []string
	}{
		{name: "defaults", scenarios: known, runs: 1},
		{name: "in the order given, each once", args: []string{"-scenarios", " c, a,,c ", "-runs", "3"}, scenarios: []string{"c", "a"}, runs: 3},
		{name: "every problem", args: []string{"-scenarios", "x,y", "-runs", "0"}, runs: 0,
			problems: []string{`-scenarios: unknown scenario "x" (have a,b,c)`, `-scenarios: unknown scenario "y" (have a,b,c)`,
				"-scenarios: name at least one", "-runs must be at least 1, not 0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var f Flags
			fs := NewFlagSet("test", "Tests.\n", io.Discard)
			f.Register(fs, known, "profile")
			problems, err := f.Parse(fs, tc.args)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(f.Scenarios, tc.scenarios) || f.Runs != tc.runs {
				t.Errorf("scenarios %q, runs %d; want %q, %d", f.Scenarios, f.Runs, tc.scenarios, tc.runs)
			}
			var got []string
			for _, p := range problems {
				got = append(got, p.Error())
			}
			if !slices.Equal(got, tc.problems) {
				t.Errorf("problems %q, want %q", got, tc.problems)
			}
		})
	}
}

func TestFlagsParseStops(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-h"}, flag.ErrHelp.Error()},
		{[]string{"-runs", "x"}, `invalid value "x" for flag -runs`},
		{[]string{"-runs", "2", "extra"}, `unexpected arguments ["extra"]: every setting is a flag`},
	} {
		var f Flags
		var out strings.Builder
		fs := NewFlagSet("test", "Tests.\n", &out)
		f.Register(fs, []string{"a"}, "profile")
		_, err := f.Parse(fs, tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q): %v, want %q", tc.args, err, tc.want)
		}
		if errors.Is(err, flag.ErrHelp) && !strings.HasPrefix(out.String(), "Usage: go run ./cmd/test [flags]\n\nTests.\n\nFlags:\n") {
			t.Errorf("usage:\n%s", out.String())
		}
	}
}

func TestList(t *testing.T) {
	if got := List(" 32, 128,,"); !slices.Equal(got, []string{"32", "128"}) {
		t.Errorf("List = %q", got)
	}
	if got := List(""); got != nil {
		t.Errorf("List of nothing = %q", got)
	}
}

func TestStartCPUProfile(t *testing.T) {
	var f Flags
	stop, err := f.StartCPUProfile()
	if err != nil {
		t.Fatal(err)
	}
	stop() // no profile: nothing to stop
	f.CPUProfile = t.TempDir() + "/cpu.pprof"
	if stop, err = f.StartCPUProfile(); err != nil {
		t.Fatal(err)
	}
	stop()
	stop()
}
