package benchkit

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"slices"
	"strings"

	"github.com/readside/readside/internal/fixture"
)

// NewFlagSet is the flag set of cmd/name: it reports to out, and its usage is
// about (what the benchmark does, ending with a newline) and then the flags.
func NewFlagSet(name, about string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: go run ./cmd/%s [flags]\n\n%s\nFlags:\n", name, about)
		fs.PrintDefaults()
	}
	return fs
}

// Flags are the settings every benchmark takes from its command line: where
// the stores are, which scenarios to run and how many times, and where to
// write a CPU profile. Define them with Register, then read them with Parse.
type Flags struct {
	RedisAddr  string   // -redis
	ElasticURL string   // -es
	Scenarios  []string // -scenarios: known names, each once, in the order given
	Runs       int      // -runs: rounds of every scenario
	CPUProfile string   // -cpuprofile: a file, or "" for no profile

	scenarios string   // -scenarios as given
	known     []string // the scenarios there are, in the order they run
}

// Register defines -redis and -es (defaults: the test services of `make
// testenv`), -scenarios (known, all by default), -runs and -cpuprofile,
// whose usage is profile: what the profile covers.
func (f *Flags) Register(fs *flag.FlagSet, known []string, profile string) {
	f.known = known
	f.scenarios = strings.Join(known, ",")
	fs.StringVar(&f.RedisAddr, "redis", fixture.RedisAddr(), "Redis address [$READSIDE_TEST_REDIS_ADDR]")
	fs.StringVar(&f.ElasticURL, "es", fixture.ElasticURL(), "Elasticsearch URL [$READSIDE_TEST_ES_URL]")
	fs.StringVar(&f.scenarios, "scenarios", f.scenarios, "comma-separated scenarios to run, of "+f.scenarios)
	fs.IntVar(&f.Runs, "runs", 1, "rounds of every scenario; with more than one, the table shows medians")
	fs.StringVar(&f.CPUProfile, "cpuprofile", "", profile)
}

// Parse parses args with fs, which Register has defined the flags on. An
// err ends the parse: flag.ErrHelp after -h, a flag that does not parse, or
// an argument that is not a flag. problems are every wrong value of the
// shared flags, for the command to report together with its own (see
// errors.Join), so that one run shows every mistake.
func (f *Flags) Parse(fs *flag.FlagSet, args []string) (problems []error, err error) {
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q: every setting is a flag", fs.Args())
	}
	f.Scenarios = nil
	for _, sc := range List(f.scenarios) {
		if !slices.Contains(f.known, sc) {
			problems = append(problems, fmt.Errorf("-scenarios: unknown scenario %q (have %s)", sc, strings.Join(f.known, ",")))
		} else if !slices.Contains(f.Scenarios, sc) {
			f.Scenarios = append(f.Scenarios, sc)
		}
	}
	if len(f.Scenarios) == 0 {
		problems = append(problems, errors.New("-scenarios: name at least one"))
	}
	if f.Runs < 1 {
		problems = append(problems, fmt.Errorf("-runs must be at least 1, not %d", f.Runs))
	}
	return problems, nil
}

// List is the items of a comma-separated list, trimmed, empty ones left out.
func List(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// StartCPUProfile starts writing a CPU profile of this process to
// f.CPUProfile, unless it is "". stop ends the profile and closes the file;
// it does nothing when there is no profile, and may be called again.
func (f *Flags) StartCPUProfile() (stop func(), err error) {
	if f.CPUProfile == "" {
		return func() {}, nil
	}
	out, err := os.Create(f.CPUProfile)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(out); err != nil {
		out.Close()
		return nil, err
	}
	stopped := false
	return func() {
		if !stopped {
			stopped = true
			pprof.StopCPUProfile()
			out.Close()
		}
	}, nil
}
