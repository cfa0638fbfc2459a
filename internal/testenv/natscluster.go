package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATSCluster is a NATS cluster of servers with JetStream: each server has
// its own store directory, client port, cluster (route) port and monitoring
// port, and routes to every other. The servers are embedded in the test
// process (StartNATSCluster), or run as processes of the nats-server
// command that go.mod names (StartNATSClusterProcesses), which Kill can end
// as a crash would. It is shut down when the test ends. Its methods are
// safe for concurrent use.
type NATSCluster struct {
	name   string
	dirs   []string
	ports  []clusterPorts
	binary string // the nats-server command; "" for embedded servers

	mu      sync.Mutex
	servers []*server.Server // embedded; nil while shut down
	procs   []*natsProc      // processes; nil while shut down
}

type natsProc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once it has exited
}

type clusterPorts struct{ client, route, http int }

// clusterWait bounds the waits for a cluster to form and a server to rejoin:
// generous, because the tests share two cores with Elasticsearch.
const clusterWait = 60 * time.Second

// StartNATSCluster starts n embedded JetStream servers in one cluster and
// waits until JetStream has a meta leader that counts every server as a
// peer and every server is current.
//
// The ports are fixed for the cluster's life, so a restarted server comes
// back where its peers and clients look for it. They are picked below the
// kernel's ephemeral range (where an outgoing connection could take a port
// between a shutdown and a restart), each checked by listening on it first.
func StartNATSCluster(t testing.TB, n int) *NATSCluster {
	t.Helper()
	return startNATSCluster(t, n, "")
}

// StartNATSClusterProcesses is StartNATSCluster with each server a process
// of the nats-server command of the version go.mod requires, built once
// (into the user's cache directory, kept for later runs). Server returns nil
// for them; Kill ends one with SIGKILL.
func StartNATSClusterProcesses(t testing.TB, n int) *NATSCluster {
	t.Helper()
	return startNATSCluster(t, n, natsServerBinary(t))
}

func startNATSCluster(t testing.TB, n int, binary string) *NATSCluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("StartNATSCluster: %d servers", n)
	}
	c := &NATSCluster{name: "readside-" + Namespace(t), binary: binary, servers: make([]*server.Server, n), procs: make([]*natsProc, n)}
	taken := map[int]bool{}
	for range n {
		c.dirs = append(c.dirs, t.TempDir())
		c.ports = append(c.ports, clusterPorts{client: freePort(t, taken), route: freePort(t, taken), http: freePort(t, taken)})
	}
	t.Cleanup(c.shutdownAll)
	for i := range n {
		c.start(t, i)
	}
	c.waitReady(t, n)
	return c
}

// freePort returns a port below 32768 that nothing listens on, and that is
// not in taken (it is added).
func freePort(t testing.TB, taken map[int]bool) int {
	t.Helper()
	for range 1000 {
		p := 20000 + rand.IntN(12000)
		if taken[p] {
			continue
		}
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		ln.Close()
		taken[p] = true
		return p
	}
	t.Fatal("no free port between 20000 and 32000")
	return 0
}

// options are server i's options; a fresh copy every time, because the
// server fills in its defaults in place.
func (c *NATSCluster) options(i int) *server.Options {
	var routes []string
	for j, p := range c.ports {
		if j != i {
			routes = append(routes, "nats-route://127.0.0.1:"+strconv.Itoa(p.route))
		}
	}
	return &server.Options{
		ServerName: fmt.Sprintf("n%d", i),
		Host:       "127.0.0.1", Port: c.ports[i].client,
		HTTPHost: "127.0.0.1", HTTPPort: c.ports[i].http,
		JetStream: true, StoreDir: c.dirs[i],
		Cluster: server.ClusterOpts{Name: c.name, Host: "127.0.0.1", Port: c.ports[i].route},
		Routes:  server.RoutesFromStr(strings.Join(routes, ",")),
		NoLog:   true, NoSigs: true,
	}
}

func (c *NATSCluster) start(t testing.TB, i int) {
	t.Helper()
	if c.binary != "" {
		c.startProcess(t, i)
		return
	}
	s, err := server.NewServer(c.options(i))
	if err != nil {
		t.Fatalf("NATS server n%d: %v", i, err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		t.Fatalf("NATS server n%d did not listen on port %d within 10s", i, c.ports[i].client)
	}
	c.mu.Lock()
	c.servers[i] = s
	c.mu.Unlock()
}

// startProcess runs server i as a nats-server process with the options of
// an embedded one, its log in its store directory.
func (c *NATSCluster) startProcess(t testing.TB, i int) {
	t.Helper()
	o := c.options(i)
	var routes []string
	for _, r := range o.Routes {
		routes = append(routes, r.String())
	}
	cmd := exec.Command(c.binary, "-js", "-sd", o.StoreDir, "-n", o.ServerName, "-a", o.Host, "-p", strconv.Itoa(o.Port),
		"-m", strconv.Itoa(o.HTTPPort), "--cluster_name", o.Cluster.Name,
		"--cluster", "nats://127.0.0.1:"+strconv.Itoa(o.Cluster.Port), "--routes", strings.Join(routes, ","),
		"-l", filepath.Join(o.StoreDir, "nats-server.log"))
	if err := cmd.Start(); err != nil {
		t.Fatalf("NATS server n%d: %v", i, err)
	}
	p := &natsProc{cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	c.mu.Lock()
	c.procs[i] = p
	c.mu.Unlock()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(o.Port), time.Second); err == nil {
			conn.Close()
			return
		}
		select {
		case <-p.done:
			t.Fatalf("NATS server n%d exited at start: %s", i, TailFile(filepath.Join(o.StoreDir, "nats-server.log"), 20))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("NATS server n%d did not listen on port %d within 10s", i, o.Port)
		}
	}
}

// natsServerBinary builds the nats-server command of the version this
// module requires, once: later runs find it in the user's cache directory.
func natsServerBinary(t testing.TB) string {
	t.Helper()
	natsBinary.once.Do(func() {
		version := "unknown"
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, d := range bi.Deps {
				if d.Path == "github.com/nats-io/nats-server/v2" {
					version = d.Version
				}
			}
		}
		dir, err := os.UserCacheDir()
		if err != nil {
			dir = os.TempDir()
		}
		natsBinary.path = filepath.Join(dir, "readside", "nats-server-"+version)
		if _, err := os.Stat(natsBinary.path); err == nil && version != "unknown" {
			return
		}
		if err := os.MkdirAll(filepath.Dir(natsBinary.path), 0o755); err != nil {
			natsBinary.err = err
			return
		}
		// Built beside, then renamed: tests of other packages may build it at the same time.
		tmp := fmt.Sprintf("%s.%d", natsBinary.path, os.Getpid())
		// go test puts its own go first on PATH.
		out, err := exec.Command("go", "build", "-o", tmp, "github.com/nats-io/nats-server/v2").CombinedOutput()
		if err != nil {
			natsBinary.err = fmt.Errorf("go build nats-server: %v\n%s", err, out)
			return
		}
		natsBinary.err = os.Rename(tmp, natsBinary.path)
	})
	if natsBinary.err != nil {
		t.Fatal(natsBinary.err)
	}
	return natsBinary.path
}

var natsBinary struct {
	once sync.Once
	path string
	err  error
}

// TailFile returns the last n lines of file, or why it cannot be read: for
// showing a process's log when a test fails.
func TailFile(file string, n int) string {
	b, err := os.ReadFile(file)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// waitReady waits until a meta leader counts peers servers as JetStream
// peers and every running server is current with the meta group.
func (c *NATSCluster) waitReady(t testing.TB, peers int) {
	t.Helper()
	deadline := time.Now().Add(clusterWait)
	for {
		ok, why := c.ready(peers)
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the NATS cluster did not form within %s: %s", clusterWait, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *NATSCluster) ready(peers int) (bool, string) {
	c.mu.Lock()
	servers := append([]*server.Server(nil), c.servers...)
	procs := append([]*natsProc(nil), c.procs...)
	c.mu.Unlock()
	if c.binary != "" {
		return c.processesReady(procs, peers)
	}
	var leader *server.Server
	for _, s := range servers {
		if s == nil {
			continue
		}
		if s.JetStreamIsLeader() {
			leader = s
		}
		if !s.JetStreamIsCurrent() {
			return false, s.Name() + " is not current"
		}
	}
	if leader == nil {
		return false, "no meta leader"
	}
	if n := len(leader.JetStreamClusterPeers()); n < peers {
		return false, fmt.Sprintf("the meta leader sees %d of %d peers", n, peers)
	}
	return true, ""
}

// processesReady asks each running server's monitoring endpoint: /healthz
// (JetStream current) and /jsz (the meta leader and its online peers).
func (c *NATSCluster) processesReady(procs []*natsProc, peers int) (bool, string) {
	hc := http.Client{Timeout: time.Second}
	for i, p := range procs {
		if p == nil {
			continue
		}
		res, err := hc.Get(c.MonitorURL(i) + "/healthz")
		if err != nil {
			return false, fmt.Sprintf("n%d: %v", i, err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return false, fmt.Sprintf("n%d /healthz: %d %s", i, res.StatusCode, body)
		}
		res, err = hc.Get(c.MonitorURL(i) + "/jsz")
		if err != nil {
			return false, fmt.Sprintf("n%d: %v", i, err)
		}
		var info server.JSInfo
		err = json.NewDecoder(res.Body).Decode(&info)
		res.Body.Close()
		if err != nil || info.Meta == nil || info.Meta.Leader == "" {
			return false, fmt.Sprintf("n%d: no meta leader (%v)", i, err)
		}
		if info.Meta.Leader != fmt.Sprintf("n%d", i) {
			continue
		}
		online := 1
		for _, r := range info.Meta.Replicas {
			if !r.Offline && r.Current {
				online++
			}
		}
		if online < peers {
			return false, fmt.Sprintf("the meta leader n%d sees %d of %d peers online", i, online, peers)
		}
		return true, ""
	}
	return false, "no running server leads the meta group"
}

// URLs are the servers' client URLs, comma-separated, as -nats-url takes them.
func (c *NATSCluster) URLs() string {
	urls := make([]string, len(c.ports))
	for i, p := range c.ports {
		urls[i] = "nats://127.0.0.1:" + strconv.Itoa(p.client)
	}
	return strings.Join(urls, ",")
}

// MonitorURL is server i's monitoring endpoint, such as
// MonitorURL(0)+"/jsz?streams=true&consumers=true".
func (c *NATSCluster) MonitorURL(i int) string {
	return "http://127.0.0.1:" + strconv.Itoa(c.ports[i].http)
}

// Connect opens a connection to the cluster, reconnecting forever (a test
// shuts servers down), and a JetStream context; closed when the test ends.
func (c *NATSCluster) Connect(t testing.TB) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	return connect(t, c.URLs(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
}

// StreamLeader returns the index of the server that leads stream, waiting
// up to 30s for the stream to have a leader.
func (c *NATSCluster) StreamLeader(t testing.TB, js jetstream.JetStream, stream string) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		s, err := js.Stream(ctx, stream)
		cancel()
		if err == nil {
			if info := s.CachedInfo(); info.Cluster != nil && info.Cluster.Leader != "" {
				for i := range c.ports {
					if info.Cluster.Leader == fmt.Sprintf("n%d", i) {
						return i
					}
				}
				t.Fatalf("stream %s is led by %q, not a server of this cluster", stream, info.Cluster.Leader)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream %s has no leader after 30s (last error: %v)", stream, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Server returns server i, nil while it is shut down and for a server that
// runs as a process.
func (c *NATSCluster) Server(i int) *server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.servers[i]
}

// Shutdown stops server i and waits until it has stopped: an embedded one
// with nats-server's Shutdown, a process with SIGTERM, which does the same.
// Its store directory is kept for Restart. Shutting down a stopped server
// does nothing.
//
// A server shut down so first hands the leadership of the Raft groups it
// leads to a peer, then closes its connections; a crashed one (Kill) does
// neither, so its peers notice when its connections break, and elect a new
// leader after an election timeout.
func (c *NATSCluster) Shutdown(i int) { c.stop(i, syscall.SIGTERM) }

// Kill ends server i as a crash does, with SIGKILL, and waits until it has
// exited; only a cluster of processes (StartNATSClusterProcesses) can.
func (c *NATSCluster) Kill(t testing.TB, i int) {
	t.Helper()
	if c.binary == "" {
		t.Fatal("Kill: an embedded server cannot crash alone; start the cluster with StartNATSClusterProcesses")
	}
	c.stop(i, syscall.SIGKILL)
}

func (c *NATSCluster) stop(i int, sig syscall.Signal) {
	c.mu.Lock()
	s, p := c.servers[i], c.procs[i]
	c.servers[i], c.procs[i] = nil, nil
	c.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
	if p != nil {
		p.cmd.Process.Signal(sig)
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
	}
}

// Restart starts server i again, on its store directory and ports, and waits
// until it has rejoined: JetStream has a meta leader again and every running
// server, this one too, is current.
func (c *NATSCluster) Restart(t testing.TB, i int) {
	t.Helper()
	c.mu.Lock()
	running := c.servers[i] != nil || c.procs[i] != nil
	c.mu.Unlock()
	if running {
		t.Fatalf("Restart(%d): the server is running", i)
	}
	c.start(t, i)
	c.waitReady(t, len(c.ports))
}

func (c *NATSCluster) shutdownAll() {
	for i := range c.ports {
		c.Shutdown(i)
	}
}
