package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/readside/readside/internal/fixture"
)

// proc is a server under test: a process of its own, whose stderr goes to a
// file in the work directory.
type proc struct {
	name    string
	url     string // base URL, http://127.0.0.1:PORT
	logPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed once it has exited and its log is closed
	err     error         // how it exited, once done
}

// pid is the server's process id, for benchkit.ProcessCPU.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// listening is the line both servers log at INFO in JSON once they listen:
// {"msg":"query API serving","addr":"127.0.0.1:PORT",…}.
type listening struct {
	Msg  string `json:"msg"`
	Addr string `json:"addr"`
}

// startProc runs bin with args and waits until it logs the address it
// serves on (a JSON line with this msg and the addr), at most 30 seconds.
// It fails when the process exits first, with the end of its log.
func startProc(ctx context.Context, name, msg, dir, bin string, args ...string) (*proc, error) {
	p := &proc{name: name, logPath: filepath.Join(dir, name+".log"), done: make(chan struct{})}
	log, err := os.Create(p.logPath)
	if err != nil {
		return nil, err
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.SysProcAttr = childAttr()
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		log.Close()
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	addr := make(chan string, 1)
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			log.Write(append(line, '\n'))
			var l listening
			if json.Unmarshal(line, &l) == nil && l.Msg == msg && l.Addr != "" {
				select {
				case addr <- l.Addr:
				default:
				}
			}
		}
		// Wait closes the pipe: only once everything is read.
		p.err = p.cmd.Wait()
		log.Close()
	}()
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	select {
	case a := <-addr:
		p.url = "http://" + a
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("%s exited before serving (%v): %s", name, p.err, tail(p.logPath))
	case <-t.C:
		p.stop()
		return nil, fmt.Errorf("%s did not serve within 30 s: %s", name, tail(p.logPath))
	case <-ctx.Done():
		p.stop()
		return nil, ctx.Err()
	}
}

// stop asks the server to stop (SIGTERM), and kills it after 10 seconds.
// The error is how it exited when that was not the end asked for.
func (p *proc) stop() error {
	select {
	case <-p.done:
		return fmt.Errorf("had stopped before the end: %v", p.err)
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	select {
	case <-p.done:
		return nil // both exit 0 after SIGTERM; a drain that fails says so in the log
	case <-t.C:
		p.cmd.Process.Kill()
		<-p.done
		return errors.New("did not stop within 10 s of SIGTERM: killed")
	}
}

// alive fails when the server has exited.
func (p *proc) alive() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited (%v): %s", p.name, p.err, tail(p.logPath))
	default:
		return nil
	}
}

// tail is the last lines of a log, for an error.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-8):], "\n")
}

// serve builds the baseline and (unless -queryapi) cmd/queryapi from the
// working tree, writes
// the projection's definition for the API, and starts the servers.
func (b *bench) serve(ctx context.Context) error {
	pkgs := []string{"github.com/readside/readside/cmd/querybench/baseline"}
	queryapi := b.s.queryapi
	if queryapi == "" {
		pkgs = append(pkgs, "github.com/readside/readside/cmd/queryapi")
		queryapi = filepath.Join(b.dir, "queryapi")
	}
	b.progress("building %s", strings.Join(pkgs, " "))
	build := exec.CommandContext(ctx, "go", append([]string{"build", "-o", b.dir + string(filepath.Separator)}, pkgs...)...)
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build (run querybench from the repository): %w\n%s", err, out)
	}
	defs := filepath.Join(b.dir, "definitions")
	if err := os.Mkdir(defs, 0o755); err != nil {
		return err
	}
	// The same definition the documents were built with (see load).
	def := fixture.ShopDefinition(b.ns, "http://127.0.0.1:9", true)
	if err := os.WriteFile(filepath.Join(defs, "shops.yaml"), []byte(def), 0o644); err != nil {
		return err
	}
	if err := b.detectShedding(ctx, queryapi); err != nil {
		return err
	}
	apiArgs := func(accessLog bool, more ...string) []string {
		args := []string{"-definitions", defs, "-redis-addr", b.s.redisAddr, "-es-urls", b.s.elasticURL,
			"-addr", "127.0.0.1:0", "-no-reproject", "-access-log=" + strconv.FormatBool(accessLog),
			"-log-format", "json", "-log-level", "info"}
		args = append(args, b.extra...)
		args = append(args, strings.Fields(strings.Join(b.shedding, " "))...)
		return append(args, more...)
	}
	var err error
	prefix, _, _ := strings.Cut(b.def.Redis.Key, "{id}")
	if b.baseline, err = startProc(ctx, "baseline", "baseline serving", b.dir, filepath.Join(b.dir, "baseline"),
		"-redis", b.s.redisAddr, "-es", b.s.elasticURL, "-key", prefix+"{id}", "-alias", b.def.Elasticsearch.Alias); err != nil {
		return err
	}
	if b.api, err = startProc(ctx, "queryapi", "query API serving", b.dir, queryapi, apiArgs(false)...); err != nil {
		return err
	}
	if slices.Contains(b.s.scenarios, "detail") {
		more := []struct {
			on        bool
			name, row string
			args      []string
		}{
			{b.s.accessLog, "queryapi-access-log", "detail, access log on", apiArgs(true)},
			{b.s.uncoalesced && b.coalescing, "queryapi-uncoalesced", "detail, reads not coalesced", apiArgs(false, "-coalesce-reads", "0")},
		}
		for _, m := range more {
			if !m.on {
				continue
			}
			p, err := startProc(ctx, m.name, "query API serving", b.dir, queryapi, m.args...)
			if err != nil {
				return err
			}
			b.variants = append(b.variants, variant{row: m.row, p: p})
		}
		if b.s.uncoalesced && !b.coalescing {
			b.progress("-uncoalesced: %s has no -coalesce-reads; every detail read is a GET of its own already", queryapi)
		}
	}
	b.progress("serving: baseline %s, API %s (%s)", b.baseline.url, b.api.url, strings.Join(append([]string{"-access-log=false"}, b.shedding...), " "))
	return nil
}

// detectShedding reads cmd/queryapi's -help for its load shedding flags,
// and passes those it has with the values of the same flags of querybench;
// and for -metrics-addr, which it moves to a free port.
func (b *bench) detectShedding(ctx context.Context, queryapi string) error {
	// -help exits 1 after printing the usage.
	help, _ := exec.CommandContext(ctx, queryapi, "-help").CombinedOutput()
	if !strings.Contains(string(help), "-definitions") {
		return fmt.Errorf("%s -help does not list its flags: %s", queryapi, help)
	}
	// Metrics on a port of their own, when there are: served, as in
	// production, but on no fixed port that another process may hold.
	if hasFlag(string(help), "metrics-addr") {
		b.extra = append(b.extra, "-metrics-addr", "127.0.0.1:0")
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"max-inflight", b.s.maxInflight}, {"search-max-inflight", b.s.searchMaxInflight}} {
		if !hasFlag(string(help), f.name) {
			b.missing = append(b.missing, "-"+f.name)
		} else if f.v > 0 {
			b.shedding = append(b.shedding, fmt.Sprintf("-%s %d", f.name, f.v))
		}
	}
	b.coalescing = hasFlag(string(help), "coalesce-reads")
	return nil
}

// hasFlag reports whether the usage that package flag printed lists -name.
func hasFlag(usage, name string) bool {
	return regexp.MustCompile(`(?m)^\s+-` + regexp.QuoteMeta(name) + `(\s|$)`).MatchString(usage)
}
