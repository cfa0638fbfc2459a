package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/readside/readside/internal/sink/elasticindex"
	"github.com/readside/readside/internal/stream"
	"github.com/readside/readside/internal/testenv"
	"github.com/readside/readside/internal/version"
	"github.com/readside/readside/projections"
)

// envVars are every environment variable the command reads. Each test
// starts with all of them empty (which config.Env treats as unset), so the
// environment the tests run in cannot change their outcome.
var envVars = []string{
	"READSIDE_NATS_URL", "READSIDE_NATS_CREDS", "READSIDE_REDIS_ADDR", "READSIDE_REDIS_USERNAME",
	"READSIDE_REDIS_PASSWORD", "READSIDE_REDIS_TLS", "READSIDE_ES_URLS", "READSIDE_ES_USERNAME",
	"READSIDE_ES_PASSWORD", "READSIDE_ES_API_KEY", "READSIDE_ES_CA_CERT", "READSIDE_DEFINITIONS",
	"READSIDE_STREAM", "READSIDE_DLQ_STREAM", "READSIDE_STATE_DIR", "READSIDE_PROJECTOR_URL",
}

// cli runs the replay command with args and returns its exit code, stdout
// and stderr. stdin, when not nil, is standard input (not a terminal).
type cli struct {
	t     *testing.T
	stdin io.Reader
	ctx   context.Context
}

func newCLI(t *testing.T) *cli {
	t.Helper()
	for _, v := range envVars {
		t.Setenv(v, "")
	}
	t.Setenv("READSIDE_STATE_DIR", t.TempDir())
	return &cli{t: t, ctx: context.Background()}
}

func (c *cli) run(args ...string) (code int, stdout, stderr string) {
	c.t.Helper()
	var out, errOut bytes.Buffer
	e := &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errOut, stdinTerminal: true}
	if c.stdin != nil {
		e.stdin, e.stdinTerminal = c.stdin, false
	}
	code = execute(c.ctx, e, args)
	return code, out.String(), errOut.String()
}

// definitions writes two shop definitions (projections "shops" and
// "kiosks", reading apiURL) and one with a list endpoint whose URL names an
// environment variable that is not set ("listed"), and returns the directory.
func definitions(t *testing.T, apiURL string) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"shops", "kiosks"} {
		if err := os.WriteFile(filepath.Join(dir, name+".yaml"), []byte(testenv.ShopDefinition(name, apiURL, false)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	listed := strings.Replace(testenv.ShopDefinition("listed", "${REPLAY_TEST_UNSET_API}", false), "    timeout: 2s\n",
		"    timeout: 2s\n    list: {url: \"${REPLAY_TEST_UNSET_API}/shops?cursor={cursor}\", ids: \"items.#.id\", next: next}\n", 1)
	if err := os.WriteFile(filepath.Join(dir, "listed.yaml"), []byte(listed), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// jetStream starts an embedded JetStream with the streams the projector
// would create for defs, and returns its URL.
func jetStream(t *testing.T, dir string) (string, jetstream.JetStream) {
	t.Helper()
	srv := testenv.StartJetStream(t)
	_, js := srv.Connect(t)
	ensureStreams(t, js, dir)
	return srv.URL, js
}

// ensureStreams creates the streams the projector would create for the
// definitions in dir, and returns them with the definitions.
func ensureStreams(t *testing.T, js jetstream.JetStream, dir string) (*stream.Setup, []*projections.Definition) {
	t.Helper()
	defs, err := projections.LoadDir(dir, projections.Options{Lookup: func(string) (string, bool) { return "http://x", true }})
	if err != nil {
		t.Fatal(err)
	}
	var subjects []string
	for _, d := range defs {
		subjects = append(subjects, d.AllSubjects()...)
	}
	streams, err := stream.Ensure(context.Background(), js, stream.Config{}, subjects)
	if err != nil {
		t.Fatal(err)
	}
	return streams, defs
}

// replayed is how many events the own stream holds on subject.
func replayed(t *testing.T, js jetstream.JetStream, subject string) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), "READSIDE_OWN")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background(), jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects[subject]
}

func TestHelp(t *testing.T) {
	c := newCLI(t)
	for _, tc := range []struct {
		cmd  string
		want []string
	}{
		{"", []string{"repairs Readside's read models", "ids", "all", "since", "dlq", "--nats-url", "--definitions"}},
		{"ids", []string{"Re-issue one event per id", "replay ids shopdisplay 42 43 44", "--file", "--rate", "--dry-run", "--restart", "--state-dir", "--nats-url"}},
		{"all", []string{"every id of the projection", "list endpoint", "SCAN", "sorted by id", "replay all shopdisplay --rate 2000", "--from"}},
		{"since", []string{"since a\ntime", "2h", "2026-11-21T10:00:00Z", "lookup", "replay since shopdisplay 2h", "--rate"}},
		{"rebuild", []string{"wait " + (2 * elasticindex.RebuildDiscovery).String() + ", so that every projector", "--keep-old", "--tolerance"}},
		{"dlq", []string{"dead-letter entries", "Readside-Id", "--reason", "--purge", "--list", "replay dlq --list"}},
	} {
		args := []string{"--help"}
		if tc.cmd != "" {
			args = []string{tc.cmd, "--help"}
		}
		code, out, errOut := c.run(args...)
		if code != 0 || errOut != "" {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut)
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("%v: the help lacks %q:\n%s", args, w, out)
			}
		}
		if tc.cmd != "" && !strings.Contains(out, "Examples:") {
			t.Errorf("%v: no examples", args)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	c := newCLI(t)
	dir := definitions(t, "http://127.0.0.1:1")
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"ids", "nope", "1", "--definitions", dir}, []string{`unknown projection "nope"`, "kiosks, listed, shops"}},
		{[]string{"all", "nope", "--definitions", dir}, []string{`unknown projection "nope"`}},
		{[]string{"ids", "shops", "1"}, []string{"--definitions is required"}},
		{[]string{"since", "shops", "2y", "--definitions", dir}, []string{`"2y" is not a time`, "90s, 45m, 2h", "RFC 3339", "2026-11-21T10:00:00Z"}},
		{[]string{"since", "shops", "tomorrow"}, []string{`"tomorrow" is not a time`}},
		{[]string{"since", "shops"}, []string{"missing arguments: replay since PROJECTION DURATION|TIME"}},
		{[]string{"ids"}, []string{"name the projection"}},
		{[]string{"ids", "shops", "--definitions", dir}, []string{"no ids: give them as arguments, with --file, or on standard input"}},
		{[]string{"ids", "shops", "1", "--file", "x", "--definitions", dir}, []string{"either as arguments or with --file"}},
		{[]string{"ids", "shops", "--file", filepath.Join(dir, "missing.txt"), "--definitions", dir}, []string{"--file: open", "no such file"}},
		{[]string{"ids", "shops", "1", "--rate", "-5", "--definitions", dir}, []string{"--rate -5", "-1 for no limit"}},
		{[]string{"ids", "shops", "--file", emptyFile(t), "--definitions", dir}, []string{"no ids in ", "one id per line"}},
		{[]string{"all", "shops", "--from", "kafka", "--definitions", dir}, []string{"auto, list, docs (redis) or index (elasticsearch)"}},
		{[]string{"all", "listed", "--definitions", dir}, []string{"environment variables that are not set: REPLAY_TEST_UNSET_API"}},
		{[]string{"dlq", "--definitions", dir}, []string{"name the projection"}},
	} {
		code, out, errOut := c.run(tc.args...)
		if code != exitFailed {
			t.Errorf("%v: exit %d, want %d; stdout %q", tc.args, code, exitFailed, out)
		}
		if !strings.HasPrefix(errOut, "replay: ") {
			t.Errorf("%v: stderr %q does not start with \"replay: \"", tc.args, errOut)
		}
		for _, w := range tc.want {
			if !strings.Contains(errOut, w) {
				t.Errorf("%v: stderr %q lacks %q", tc.args, errOut, w)
			}
		}
	}
}

// An unreachable NATS fails within a few seconds, saying which URL and that
// the projector's stream must exist there: a refused connection at once, a
// server that never answers after --connect-timeout.
func TestUnreachableNATS(t *testing.T) {
	c := newCLI(t)
	dir := definitions(t, "http://127.0.0.1:1")
	refused := closedPort(t)
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() { // accepts, and never says a word
		for {
			conn, err := silent.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
		}
	}()
	for _, tc := range []struct {
		url    string
		within time.Duration
	}{
		{"nats://" + refused, 3 * time.Second},
		{"nats://" + silent.Addr().String(), 4 * time.Second},
	} {
		start := time.Now()
		code, _, errOut := c.run("ids", "shops", "1", "--definitions", dir, "--nats-url", tc.url, "--connect-timeout", "1s")
		took := time.Since(start)
		if code != exitFailed || took > tc.within {
			t.Errorf("%s: exit %d after %s, want %d within %s", tc.url, code, took, exitFailed, tc.within)
		}
		for _, w := range []string{"cannot reach NATS at " + tc.url, "stream READSIDE_EVENTS must exist", "--nats-url"} {
			if !strings.Contains(errOut, w) {
				t.Errorf("%s: stderr %q lacks %q", tc.url, errOut, w)
			}
		}
	}
}

func emptyFile(t *testing.T) string {
	f := filepath.Join(t.TempDir(), "empty.txt")
	if err := os.WriteFile(f, []byte("# nothing\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// A NATS server without the projector's stream is a clear error too.
func TestMissingStream(t *testing.T) {
	c := newCLI(t)
	dir := definitions(t, "http://127.0.0.1:1")
	srv := testenv.StartJetStream(t)
	code, _, errOut := c.run("ids", "shops", "1", "--definitions", dir, "--nats-url", srv.URL)
	if code != exitFailed || !strings.Contains(errOut, "READSIDE_OWN does not exist") || !strings.Contains(errOut, "the projector creates it") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = c.run("dlq", "--list", "--nats-url", srv.URL, "--dlq-stream", "OTHER_DLQ")
	if code != exitFailed || !strings.Contains(errOut, "OTHER_DLQ does not exist") {
		t.Errorf("dlq --list: exit %d, stderr %q", code, errOut)
	}
}

// ids --file re-issues the valid ids, reports each invalid line by number
// and counts it; on stdin likewise. The ids of an unset source variable's
// definition can be re-issued: no source is called.
func TestIDsFromAFile(t *testing.T) {
	c := newCLI(t)
	dir := definitions(t, "http://127.0.0.1:1")
	url, js := jetStream(t, dir)
	file := filepath.Join(t.TempDir(), "ids.txt")
	if err := os.WriteFile(file, []byte("# broken shops\n1\n2\nshop 3\n\n4\n*\n2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := c.run("ids", "shops", "--file", file, "--rate", "-1", "--definitions", dir, "--nats-url", url)
	if code != exitOK {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	for _, w := range []string{`line 4: "shop 3": the id "shop 3" contains whitespace`, `line 7: "*"`} {
		if !strings.Contains(errOut, w) {
			t.Errorf("stderr lacks %q:\n%s", w, errOut)
		}
	}
	for _, w := range []string{"ids shops: re-issued 3 ids", "skipped invalid: 2", "duplicates dropped: 1"} {
		if !strings.Contains(out, w) {
			t.Errorf("stdout lacks %q:\n%s", w, out)
		}
	}
	if n := replayed(t, js, "readside.replay.shops"); n != 3 {
		t.Errorf("%d events on the replay subject, want 3", n)
	}

	c.stdin = strings.NewReader("7\n8\n")
	code, out, errOut = c.run("ids", "listed", "--definitions", dir, "--nats-url", url)
	if code != exitOK || !strings.Contains(out, "ids listed: re-issued 2 ids") {
		t.Errorf("ids on stdin: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
}

// Interrupted, a run says where its checkpoint is and exits 130; the same
// command continues it and says so; --dry-run publishes nothing.
func TestInterruptAndResume(t *testing.T) {
	c := newCLI(t)
	dir := definitions(t, "http://127.0.0.1:1")
	url, js := jetStream(t, dir)
	var ids strings.Builder
	for i := range 4000 {
		ids.WriteString("kiosk-" + strconv.Itoa(i) + "\n")
	}
	file := filepath.Join(t.TempDir(), "ids.txt")
	if err := os.WriteFile(file, []byte(ids.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"ids", "kiosks", "--file", file, "--rate", "2000", "--definitions", dir, "--nats-url", url}

	code, out, _ := c.run(append(args, "--dry-run")...)
	if code != exitOK || !strings.Contains(out, "dry run: would re-issue 4000 ids") || replayed(t, js, "readside.replay.kiosks") != 0 {
		t.Fatalf("dry run: exit %d, stdout %s", code, out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Second) // 4000 ids take 2 s
	defer cancel()
	c.ctx = ctx
	code, out, errOut := c.run(args...)
	if code != exitInterrupted || !strings.Contains(out, "interrupted: the checkpoint is in") || !strings.Contains(errOut, "interrupted after") {
		t.Fatalf("interrupted: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	c.ctx = context.Background()
	code, out, errOut = c.run(args...)
	if code != exitOK || !strings.Contains(errOut, "resuming the run started") || !strings.Contains(out, "re-issued 4000 ids") {
		t.Fatalf("resumed: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	if n := replayed(t, js, "readside.replay.kiosks"); n != 4000 {
		t.Errorf("%d events on the replay subject, want 4000: each id once", n)
	}
	code, _, errOut = c.run(args...)
	if code != exitOK || strings.Contains(errOut, "resuming") {
		t.Errorf("a completed run left its checkpoint: %s", errOut)
	}
}

// dlq --list needs no definitions, and says when the queue is empty.
func TestDLQListEmpty(t *testing.T) {
	c := newCLI(t)
	url, _ := jetStream(t, definitions(t, "http://127.0.0.1:1"))
	code, out, errOut := c.run("dlq", "--list", "--nats-url", url)
	if code != exitOK || !strings.Contains(out, "the dead-letter queue is empty") {
		t.Errorf("exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
}

// --nats-creds reaches a NATS server that requires user credentials (an
// operator-mode server, as production runs): replay connects through
// config.Backends.NATS with them, and without them fails saying why.
func TestNATSCreds(t *testing.T) {
	c := newCLI(t)
	dir := definitions(t, "http://127.0.0.1:1")
	srv := testenv.StartSecureJetStream(t)
	_, js := srv.Connect(t)
	ensureStreams(t, js, dir)
	code, out, errOut := c.run("ids", "shops", "1", "2", "--definitions", dir, "--nats-url", srv.URL, "--nats-creds", srv.Creds)
	if code != exitOK || !strings.Contains(out, "re-issued 2 ids") {
		t.Fatalf("with --nats-creds: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	if n := replayed(t, js, "readside.replay.shops"); n != 2 {
		t.Errorf("%d events on the replay subject, want 2", n)
	}
	t.Setenv("READSIDE_NATS_CREDS", srv.Creds) // the environment variable too
	if code, out, errOut := c.run("ids", "shops", "3", "--definitions", dir, "--nats-url", srv.URL); code != exitOK {
		t.Fatalf("with $READSIDE_NATS_CREDS: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	t.Setenv("READSIDE_NATS_CREDS", "")
	code, _, errOut = c.run("ids", "shops", "1", "--definitions", dir, "--nats-url", srv.URL)
	if code != exitFailed || !strings.Contains(errOut, "cannot reach NATS at "+srv.URL) || !strings.Contains(errOut, "Authorization Violation") {
		t.Errorf("without credentials: exit %d, stderr %q", code, errOut)
	}
}

// --output json writes one JSON document on stdout, with stable snake_case
// fields: a run's report (also an interrupted one, with its checkpoint and
// error), dlq --list's groups, and for a command that failed before it had
// a report, the error. Notes and progress stay on stderr.
func TestOutputJSON(t *testing.T) {
	c := newCLI(t)
	dir := definitions(t, "http://127.0.0.1:1")
	url, _ := jetStream(t, dir)
	decode := func(what, out string) map[string]any {
		t.Helper()
		var doc map[string]any
		dec := json.NewDecoder(strings.NewReader(out))
		if err := dec.Decode(&doc); err != nil {
			t.Fatalf("%s: stdout is not a JSON document: %v\n%s", what, err, out)
		}
		if dec.More() {
			t.Fatalf("%s: more than one JSON document on stdout:\n%s", what, out)
		}
		return doc
	}

	file := filepath.Join(t.TempDir(), "ids.txt")
	if err := os.WriteFile(file, []byte("1\n2\nshop 3\n4\n*\n2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := c.run("ids", "shops", "--file", file, "--rate", "-1", "--definitions", dir, "--nats-url", url, "--output", "json")
	if code != exitOK || !strings.Contains(errOut, `line 3: "shop 3"`) {
		t.Fatalf("ids: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	doc := decode("ids", out)
	for path, want := range map[string]any{
		"command": "ids", "projection": "shops", "status": "completed", "dry_run": false, "resumed": false,
		"counts.reissued": 3.0, "counts.invalid": 2.0, "counts.duplicates": 1.0, "counts.kept": 0.0, "before.reissued": 0.0,
		"problems.0.where": "line 3", "problems.0.input": "shop 3", "problems.1.where": "line 5", "problems.1.input": "*",
	} {
		if got := lookup(doc, path); got != want {
			t.Errorf("ids: %s = %#v, want %#v\n%s", path, got, want, out)
		}
	}
	if _, ok := doc["error"]; ok {
		t.Errorf("ids: an error in a completed run's report: %s", out)
	}
	if s, ok := doc["elapsed_seconds"].(float64); !ok || s <= 0 {
		t.Errorf("ids: elapsed_seconds %v", doc["elapsed_seconds"])
	}

	// Interrupted: the report says so, with the checkpoint and the error.
	var ids strings.Builder
	for i := range 2000 {
		ids.WriteString("kiosk-" + strconv.Itoa(i) + "\n")
	}
	if err := os.WriteFile(file, []byte(ids.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond) // 2000 ids at 1000/s take 2 s
	defer cancel()
	c.ctx = ctx
	code, out, errOut = c.run("ids", "kiosks", "--file", file, "--rate", "1000", "--definitions", dir, "--nats-url", url, "-o", "json")
	c.ctx = context.Background()
	doc = decode("interrupted", out)
	if code != exitInterrupted || doc["status"] != "interrupted" || doc["checkpoint"] == nil || !strings.Contains(fmt.Sprint(doc["error"]), "interrupted") {
		t.Errorf("interrupted: exit %d, report %s\nstderr %s", code, out, errOut)
	}

	code, out, errOut = c.run("dlq", "--list", "--nats-url", url, "--output", "json")
	doc = decode("dlq --list", out)
	if groups, ok := doc["groups"].([]any); code != exitOK || !ok || len(groups) != 0 || doc["entries"] != 0.0 || doc["command"] != "dlq list" {
		t.Errorf("dlq --list: exit %d, report %s\nstderr %s", code, out, errOut)
	}

	// Failed before a report: the error, as a document.
	code, out, errOut = c.run("ids", "shops", "1", "--definitions", dir, "--nats-url", "nats://"+closedPort(t), "--output", "json")
	doc = decode("unreachable", out)
	if code != exitFailed || doc["command"] != "ids" || doc["status"] != "failed" || !strings.Contains(fmt.Sprint(doc["error"]), "cannot reach NATS") {
		t.Errorf("unreachable NATS: exit %d, report %s\nstderr %s", code, out, errOut)
	}

	code, out, errOut = c.run("ids", "shops", "1", "--definitions", dir, "--nats-url", url, "--output", "yaml")
	if code != exitFailed || out != "" || !strings.Contains(errOut, `--output "yaml": use text or json`) {
		t.Errorf("--output yaml: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
}

// lookup follows a dotted path ("problems.0.where") through decoded JSON.
func lookup(v any, path string) any {
	for _, k := range strings.Split(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			v = x[k]
		case []any:
			i, err := strconv.Atoi(k)
			if err != nil || i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

// --version and the version command print one line: name, version, commit,
// Go version.
func TestVersion(t *testing.T) {
	c := newCLI(t)
	want := version.Get().Line("replay") + "\n"
	for _, args := range [][]string{{"--version"}, {"version"}} {
		code, out, errOut := c.run(args...)
		if code != 0 || errOut != "" || out != want {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 0, stdout %q", args, code, out, errOut, want)
		}
	}
}
