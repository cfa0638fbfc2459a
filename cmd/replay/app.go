package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/readside/readside/internal/backend"
	"github.com/readside/readside/internal/config"
	"github.com/readside/readside/internal/storeapi"
	"github.com/readside/readside/projections"
	"github.com/readside/readside/replay"
)

// app is what every subcommand shares: the global flags (backends,
// definitions, streams) and the ways to use them. Subcommands add their own
// flags; re-issuing ones add runFlags.
type app struct {
	env            *env
	backends       config.Backends
	definitions    string
	stream         string
	dlqStream      string
	ownStream      string
	connectTimeout time.Duration
	output         string // --output: text or json
	projectorURL   string // --projector-url: the admin address of the projector holding embedded stores

	// wrote is set once the command's report is written (see write).
	wrote bool

	// unsetEnv are the environment variables the definitions name that are
	// not set (see loadDefinitions).
	unsetEnv []string
}

func newApp(e *env) *app { return &app{env: e} }

// registerGlobal declares the flags every subcommand shares on root. The
// backend flags are the projector's (internal/config), through pflag's
// adapter for Go flag sets.
func (a *app) registerGlobal(root *cobra.Command) {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	a.backends.Register(fs)
	pf := root.PersistentFlags()
	pf.AddGoFlagSet(fs)
	pf.StringVar(&a.definitions, "definitions", config.Env("READSIDE_DEFINITIONS", ""), "projection definition file, or directory of *.yaml files [$READSIDE_DEFINITIONS]")
	pf.StringVar(&a.stream, "stream", config.Env("READSIDE_STREAM", "READSIDE_EVENTS"), "JetStream stream of change events [$READSIDE_STREAM]")
	pf.StringVar(&a.ownStream, "own-stream", config.Env("READSIDE_OWN_STREAM", "READSIDE_OWN"), "JetStream stream of Readside's own events, where re-issued events go [$READSIDE_OWN_STREAM]")
	pf.StringVar(&a.dlqStream, "dlq-stream", config.Env("READSIDE_DLQ_STREAM", "READSIDE_DLQ"), "JetStream dead-letter stream [$READSIDE_DLQ_STREAM]")
	pf.StringVar(&a.projectorURL, "projector-url", config.Env("READSIDE_PROJECTOR_URL", ""), "with embedded stores (--redis-addr/--es-urls embedded): the admin address of the projector that holds them (its -metrics-addr, e.g. http://127.0.0.1:9464), through which replay reads them [$READSIDE_PROJECTOR_URL]")
	pf.DurationVar(&a.connectTimeout, "connect-timeout", 3*time.Second, "how long to wait for NATS to answer before giving up")
	pf.StringVarP(&a.output, "output", "o", outputText, "the report on stdout: text, or json (one document; progress and notes stay on stderr)")
}

// projectionArgs checks a subcommand's arguments: the projection first,
// then between min and max more (max < 0: any number).
func projectionArgs(min, max int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) == 0:
			return fmt.Errorf("name the projection: replay %s (see replay %s --help)", cmd.Use, cmd.Name())
		case len(args)-1 < min:
			return fmt.Errorf("missing arguments: replay %s (see replay %s --help)", cmd.Use, cmd.Name())
		case max >= 0 && len(args)-1 > max:
			return fmt.Errorf("too many arguments %q: replay %s (see replay %s --help)", args[1+max:], cmd.Use, cmd.Name())
		}
		return nil
	}
}

// runFlags are the flags of every re-issuing subcommand.
type runFlags struct {
	rate     float64
	dryRun   bool
	restart  bool
	stateDir string
}

// addRunFlags declares the flags of a re-issuing subcommand on cmd.
func (a *app) addRunFlags(cmd *cobra.Command) *runFlags {
	rf := &runFlags{}
	f := cmd.Flags()
	f.Float64Var(&rf.rate, "rate", replay.DefaultRate, "most ids re-issued per second; 0: the default; -1: no limit")
	f.BoolVar(&rf.dryRun, "dry-run", false, "count what would be done; publish, delete and write nothing")
	f.BoolVar(&rf.restart, "restart", false, "ignore the checkpoint of an interrupted run of the same command, and start over")
	def, err := replay.DefaultStateDir()
	if err != nil {
		def = ""
	}
	f.StringVar(&rf.stateDir, "state-dir", config.Env("READSIDE_STATE_DIR", def), "directory for checkpoints of interrupted runs [$READSIDE_STATE_DIR, else $XDG_STATE_HOME/readside or ~/.local/state/readside]")
	return rf
}

// options turns the run flags into replay.Options: a progress bar on a
// terminal, a log line every 5 s otherwise; notes on stderr.
func (a *app) options(rf *runFlags) (replay.Options, error) {
	if rf.rate < 0 && rf.rate != -1 {
		return replay.Options{}, fmt.Errorf("--rate %g: use a positive number of ids per second, 0 for the default (%d), or -1 for no limit", rf.rate, replay.DefaultRate)
	}
	if rf.stateDir == "" {
		return replay.Options{}, errors.New("--state-dir is empty and there is no default (neither XDG_STATE_HOME nor HOME is set): name a directory for checkpoints")
	}
	o := replay.Options{
		Rate: rf.rate, DryRun: rf.dryRun, Restart: rf.restart,
		Checkpoints: replay.NewCheckpoints(rf.stateDir), Notes: a.env.stderr,
	}
	if a.env.stderrTerminal {
		o.Progress = replay.Bar(a.env.stderr)
	} else {
		o.Progress = replay.Lines(a.env.stderr, 5*time.Second)
	}
	return o, nil
}

// unsetPlaceholder stands for an environment variable a definition names
// that is not set: enough to load the definition, which the commands that
// only publish ids do not need to reach the sources with.
const unsetPlaceholder = "http://unset-environment-variable.invalid"

// loadDefinitions loads the definitions. An environment variable they name
// that is not set does not stop the commands that never call a source (the
// operator need not set every API's URL to re-issue ids); it is recorded in
// unsetEnv, and reported by those that do.
func (a *app) loadDefinitions() ([]*projections.Definition, error) {
	if a.definitions == "" {
		return nil, errors.New("--definitions is required: the projection definition file, or the directory of them, the projector runs with [$READSIDE_DEFINITIONS]")
	}
	a.unsetEnv = nil
	lookup := func(name string) (string, bool) {
		if v, ok := os.LookupEnv(name); ok {
			return v, true
		}
		if !slices.Contains(a.unsetEnv, name) {
			a.unsetEnv = append(a.unsetEnv, name)
		}
		return unsetPlaceholder, true
	}
	defs, err := projections.LoadDir(a.definitions, projections.Options{Lookup: lookup})
	if err != nil {
		if len(a.unsetEnv) > 0 {
			return nil, fmt.Errorf("loading definitions (environment variables not set: %s):\n%w", strings.Join(a.unsetEnv, ", "), err)
		}
		return nil, fmt.Errorf("loading definitions:\n%w", err)
	}
	return defs, nil
}

// definition finds the projection name among the definitions.
func (a *app) definition(name string) (*projections.Definition, error) {
	defs, err := a.loadDefinitions()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, d := range defs {
		if d.Name == name {
			return d, nil
		}
		names = append(names, d.Name)
	}
	return nil, fmt.Errorf("unknown projection %q: %s defines %s", name, a.definitions, strings.Join(names, ", "))
}

// needsSources fails when def's sources need environment variables that are
// not set.
func (a *app) needsSources(def *projections.Definition, what string) error {
	url, _ := def.ListURL("")
	if len(a.unsetEnv) > 0 && strings.Contains(url, "unset-environment-variable.invalid") {
		return fmt.Errorf("%s calls the source API, whose URL in %s needs environment variables that are not set: %s", what, def.File, strings.Join(a.unsetEnv, ", "))
	}
	return nil
}

// conns are the connections of one command.
type conns struct {
	nc     *nats.Conn
	stores *backend.Stores
	env    *replay.Env
}

// connect reaches NATS, failing within --connect-timeout when it does not
// answer (no retry: an operator is waiting), and prepares Redis and
// Elasticsearch clients (which connect when first used).
func (a *app) connect() (*conns, error) {
	if err := a.backends.Validate(); err != nil {
		return nil, err
	}
	if a.backends.EmbeddedNATS() {
		return nil, errors.New("--nats-url embedded: replay re-issues events to a running NATS, the projector's: give its URL (the demo's embedded NATS listens on nats://127.0.0.1:4222)")
	}
	// The same connection as every Readside command's (name, --nats-creds,
	// connection events logged), but failing fast: an operator is waiting.
	// A blip during a long run is waited out, up to 30 reconnects.
	nc, err := a.backends.NATS("readside-replay", a.log(), nats.Timeout(a.connectTimeout),
		nats.MaxReconnects(30), nats.ReconnectWait(time.Second))
	if err != nil {
		return nil, fmt.Errorf("cannot reach NATS at %s (%v): replay needs the NATS server the projector uses, where its stream %s must exist; set --nats-url or READSIDE_NATS_URL",
			a.backends.NATSURL, errors.Unwrap(err), a.stream)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	stores, err := backend.OpenStores(a.backends, nil)
	if err != nil {
		nc.Close()
		return nil, err
	}
	env := &replay.Env{JetStream: js, Stores: a.storesOf(stores), Events: a.stream, Own: a.ownStream, DeadLetter: a.dlqStream}
	return &conns{nc: nc, stores: stores, env: env}, nil
}

// storesOf opens a projection's stores as replay reads them: Redis and
// Elasticsearch directly; an embedded store through the projector that
// holds it (the other one, when not embedded, directly: a rebuild on
// Elasticsearch needs the index itself, not the projector's view of it).
func (a *app) storesOf(stores *backend.Stores) func(ctx context.Context, def *projections.Definition) (replay.Stores, error) {
	embeddedDocs, embeddedSearch := a.backends.EmbeddedDocs(), a.backends.EmbeddedSearch()
	if !embeddedDocs && !embeddedSearch {
		return replay.OpenStores(stores.Read)
	}
	if a.projectorURL == "" {
		return func(context.Context, *projections.Definition) (replay.Stores, error) {
			return replay.Stores{}, errors.New("the embedded stores belong to the projector that holds them: give its admin address with --projector-url (the demo's is http://127.0.0.1:9464)")
		}
	}
	c := storeapi.NewClient(a.projectorURL, nil)
	return replay.KeepStores(func(ctx context.Context, def *projections.Definition) (replay.Stores, error) {
		var out replay.Stores
		if embeddedDocs {
			out.Docs, out.DocsName, out.Refs = c.Docs(def.Name), "embedded-docs", c.Refs(def.Name)
		} else {
			d, err := stores.ReadDocs(def)
			if err != nil {
				return out, err
			}
			out.Docs, out.DocsName, out.Refs = d.Docs, d.DocsName, d.Refs
		}
		if embeddedSearch {
			out.Index, out.IndexName = c.Index(def.Name), "embedded-search"
			return out, nil
		}
		var err error
		out.Index, out.IndexName, err = stores.ReadIndex(ctx, def)
		return out, err
	})
}

// log is where the commands log what is not their report: the NATS
// connection's troubles (connection lost, an asynchronous error), on
// stderr. Warnings and errors only: a routine connect is not news to an
// operator.
func (a *app) log() *slog.Logger {
	return slog.New(slog.NewTextHandler(a.env.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// close drains NATS (flushing what was published) and closes Redis.
func (c *conns) close() {
	c.stores.Close()
	if err := c.nc.Drain(); err == nil {
		deadline := time.Now().Add(5 * time.Second)
		for c.nc.IsDraining() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	c.nc.Close()
}

// reissue is the body of every re-issuing command: load the projection,
// connect, run, and report.
func (a *app) reissue(ctx context.Context, command, projection string, rf *runFlags, run func(ctx context.Context, e *replay.Env, def *projections.Definition, o replay.Options) (*replay.Result, error)) error {
	o, err := a.options(rf)
	if err != nil {
		return err
	}
	def, err := a.definition(projection)
	if err != nil {
		return err
	}
	c, err := a.connect()
	if err != nil {
		return err
	}
	defer c.close()
	res, err := run(ctx, c.env, def, o)
	if res != nil {
		a.write(newRunReport(ctx, command, projection, res, err), func(w io.Writer) { writeResult(w, res, err) })
	}
	return err
}

// writeResult writes the summary of a run (also an interrupted or failed
// one) and the inputs it skipped.
func writeResult(w io.Writer, res *replay.Result, err error) {
	fmt.Fprint(w, res.Summary())
	if !strings.HasPrefix(res.Run, "ids ") { // ids lists them as it reads them
		for _, p := range res.Problems {
			fmt.Fprintf(w, "  skipped %s\n", p)
		}
		if n := res.Invalid - int64(len(res.Problems)) - res.Before.Invalid; n > 0 && len(res.Problems) > 0 {
			fmt.Fprintf(w, "  ... and %d more skipped\n", n)
		}
	}
	switch {
	case errors.Is(err, replay.ErrInterrupted) && res.Checkpoint != "":
		fmt.Fprintf(w, "interrupted: the checkpoint is in %s; run the same command again to continue (or with --restart to start over)\n", res.Checkpoint)
	case err != nil && res.Checkpoint != "":
		fmt.Fprintf(w, "failed: the checkpoint is in %s; once the cause is fixed, run the same command again to continue\n", res.Checkpoint)
	}
}
