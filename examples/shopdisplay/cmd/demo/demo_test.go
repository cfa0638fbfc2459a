package main_test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/readside/readside/internal/testenv"
)

// demo is a running demo process and what it printed.
type demo struct {
	cmd    *exec.Cmd
	query  string // the query API's base URL of the projection, from the printed curl lines
	api    string // the sample APIs' base URL
	stderr *testenv.Buffer
	exited chan error
}

var (
	detailLine = regexp.MustCompile(`curl -i (http://\S+)/42`)
	changeLine = regexp.MustCompile(`curl -X POST '(http://[^/]+)/admin/change`)
)

// start runs the demo binary from the repository root, as `make demo` does,
// with its data under dataDir and every address chosen by the system (the
// defaults may be taken on a shared machine), and reads the addresses from
// what it prints for the user.
func start(t *testing.T, bin, root, dataDir string) *demo {
	t.Helper()
	cmd := exec.Command(bin, "-data-dir", dataDir, "-api-addr", "127.0.0.1:0", "-query-addr", "127.0.0.1:0", "-nats-listen", "127.0.0.1:-1")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "READSIDE_REDIS_ADDR=", "READSIDE_ES_URLS=", "READSIDE_NATS_URL=") // a new user's shell
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	d := &demo{cmd: cmd, stderr: &testenv.Buffer{}, exited: make(chan error, 1)}
	cmd.Stderr = d.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-d.exited
		}
		if t.Failed() {
			t.Logf("demo's log:\n%s", d.stderr.String())
		}
	})
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		io.Copy(io.Discard, out)
	}()
	go func() { d.exited <- cmd.Wait() }()
	deadline := time.After(30 * time.Second)
	for d.query == "" || d.api == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the demo ended before printing its curl lines; its log:\n%s", d.stderr.String())
			}
			if m := detailLine.FindStringSubmatch(l); m != nil {
				d.query = m[1]
			}
			if m := changeLine.FindStringSubmatch(l); m != nil {
				d.api = m[1]
			}
		case <-deadline:
			t.Fatalf("no curl lines printed within 30s; the demo's log:\n%s", d.stderr.String())
		}
	}
	go func() {
		for range lines {
		}
	}()
	return d
}

// stop sends Ctrl-C and waits for a clean exit.
func (d *demo) stop(t *testing.T) {
	t.Helper()
	d.cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-d.exited:
		if err != nil {
			t.Fatalf("the demo exited with %v after Ctrl-C; its log:\n%s", err, d.stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("the demo did not stop within 20s of Ctrl-C")
	}
}

func get(u string) (*http.Response, []byte, error) {
	res, err := http.Get(u)
	if err != nil {
		return nil, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res, b, err
}

// eventually retries check every 200ms until it returns nil or the time is up.
func eventually(t *testing.T, within time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, within, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// shop is what the test compares of a shop document.
type shop struct {
	Name, OwnerName string
	Open            bool
	RatingCount     int64
	Lat, Lon        float64
}

// sourceShop is shop id as the sample APIs have it now.
func (d *demo) sourceShop(id string) (shop, error) {
	_, s, err := get(d.api + "/shops/" + id)
	if err != nil {
		return shop{}, err
	}
	_, o, err := get(d.api + "/owners/" + gjson.GetBytes(s, "ownerId").String())
	if err != nil {
		return shop{}, err
	}
	return shop{
		Name: gjson.GetBytes(s, "name").Str, OwnerName: gjson.GetBytes(o, "businessName").Str, Open: gjson.GetBytes(s, "open").Bool(),
		RatingCount: gjson.GetBytes(s, "rating.count").Int(), Lat: gjson.GetBytes(s, "location.lat").Float(), Lon: gjson.GetBytes(s, "location.lon").Float(),
	}, nil
}

// storedShop checks that the query API serves shop id from the store as the
// sample APIs have it now, and returns it.
func (d *demo) storedShop(id string) (shop, error) {
	want, err := d.sourceShop(id)
	if err != nil {
		return shop{}, err
	}
	got, err := d.fromStore(id)
	if err == nil && got != want {
		err = fmt.Errorf("detail %+v, the sample APIs say %+v", got, want)
	}
	return got, err
}

// fromStore is shop id as the query API serves it from the store.
func (d *demo) fromStore(id string) (shop, error) {
	res, body, err := get(d.query + "/" + id)
	if err != nil {
		return shop{}, err
	}
	got := shop{
		Name: gjson.GetBytes(body, "name").Str, OwnerName: gjson.GetBytes(body, "ownerName").Str, Open: gjson.GetBytes(body, "open").Bool(),
		RatingCount: gjson.GetBytes(body, "ratingCount").Int(), Lat: gjson.GetBytes(body, "location.lat").Float(), Lon: gjson.GetBytes(body, "location.lon").Float(),
	}
	switch {
	case res.StatusCode != http.StatusOK:
		return shop{}, fmt.Errorf("detail: %s %s", res.Status, body)
	case res.Header.Get("X-Readside-Source") != "store":
		return shop{}, fmt.Errorf("detail served from %q, not yet from the store", res.Header.Get("X-Readside-Source"))
	}
	return got, nil
}

// listedAt reports whether the list of shops within 1 m of s's location
// with open=<open> holds shop id: the search index has that state.
func (d *demo) listedAt(id string, s shop, open bool) (bool, error) {
	res, body, err := get(fmt.Sprintf("%s?near=%g,%g&within=1m&open=%t", d.query, s.Lat, s.Lon, open))
	if err != nil {
		return false, err
	}
	if res.StatusCode != http.StatusOK {
		return false, fmt.Errorf("list: %s %s", res.Status, body)
	}
	for _, it := range gjson.GetBytes(body, "items.#.id").Array() {
		if it.Str == id {
			return true, nil
		}
	}
	return false, nil
}

// A new user runs `make demo` on a fresh machine: within 60 seconds the
// query API answers detail, list near a location and search correctly from
// the embedded stores; a change in the sample API (of a shop, of its owner —
// a joined source —, a deletion) reaches the query API; Ctrl-C stops it
// cleanly and a restart keeps the data.
func TestDemoAsANewUser(t *testing.T) {
	root, err := filepath.Abs("../../../..")
	if err != nil {
		t.Fatal(err)
	}
	// make demo is this command, with no services of its own to start.
	plan, err := exec.Command("make", "-n", "-C", root, "demo").CombinedOutput()
	if err != nil || !strings.Contains(string(plan), "go run ./examples/shopdisplay/cmd/demo") {
		t.Fatalf("make -n demo does not run ./examples/shopdisplay/cmd/demo: %v\n%s", err, plan)
	}
	if strings.Contains(string(plan), "testenv") {
		t.Fatalf("make demo starts test services; it must need only Go:\n%s", plan)
	}
	bin := filepath.Join(t.TempDir(), "demo")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dataDir := filepath.Join(t.TempDir(), "data")

	began := time.Now()
	d := start(t, bin, root, dataDir)
	var s42 shop
	eventually(t, 60*time.Second-time.Since(began), "detail of shop 42 from the store", func() (err error) {
		s42, err = d.storedShop("42")
		return err
	})
	eventually(t, 60*time.Second-time.Since(began), "a list near Berlin's centre, nearest first", func() error {
		res, body, err := get(d.query + "?near=52.52,13.40&within=5km&sort=distance&limit=5")
		if err != nil {
			return err
		}
		items := gjson.GetBytes(body, "items").Array()
		if res.StatusCode != http.StatusOK || len(items) != 5 {
			return fmt.Errorf("%s, %d items: %s", res.Status, len(items), body)
		}
		last := -1.0
		for _, it := range items {
			dist := testenv.Distance(52.52, 13.40, it.Get("location.lat").Float(), it.Get("location.lon").Float())
			if dist > 5000 || dist < last {
				return fmt.Errorf("item %s is %.0f m away after one %.0f m away (within 5 km, nearest first): %s", it.Get("id"), dist, last, body)
			}
			last = dist
		}
		return nil
	})
	prefix := strings.ToLower(strings.Fields(s42.Name)[0])
	prefix = prefix[:len(prefix)-1]
	eventually(t, 60*time.Second-time.Since(began), "a search for "+prefix, func() error {
		res, body, err := get(d.query + "?q=" + url.QueryEscape(prefix) + "&limit=20")
		if err != nil {
			return err
		}
		items := gjson.GetBytes(body, "items").Array()
		if res.StatusCode != http.StatusOK || len(items) == 0 {
			return fmt.Errorf("%s, %d items: %s", res.Status, len(items), body)
		}
		for _, it := range items {
			text := strings.ToLower(it.Get("name").Str + " " + it.Get("ownerName").Str + " " + it.Get("topItems").String())
			if !strings.Contains(text, prefix) {
				return fmt.Errorf("item %s does not match %q: %s", it.Get("id"), prefix, it.Raw)
			}
		}
		return nil
	})
	t.Logf("detail, list and search answered correctly %s after start", time.Since(began).Round(time.Millisecond))

	// A change of the shop in the sample API reaches the doc store and the
	// search index; so does a change of its owner (a joined source).
	change := func(kind, id string) {
		t.Helper()
		res, err := http.Post(d.api+"/admin/change?kind="+kind+"&id="+id, "", nil)
		if err != nil || res.StatusCode != http.StatusOK {
			t.Fatalf("POST /admin/change?kind=%s&id=%s: %v %v", kind, id, err, res)
		}
		res.Body.Close()
	}
	changed := time.Now()
	before := s42
	change("shop", "42")
	eventually(t, 30*time.Second, "the changed shop 42 in the query API", func() (err error) {
		s42, err = d.storedShop("42")
		if err == nil && s42.RatingCount == before.RatingCount {
			return fmt.Errorf("still the old rating count %d", before.RatingCount)
		}
		return err
	})
	eventually(t, 30*time.Second, "the changed shop 42 in the search index", func() error {
		now, err := d.listedAt("42", s42, s42.Open)
		if err != nil || !now {
			return fmt.Errorf("not listed with open=%t: %v", s42.Open, err)
		}
		if then, err := d.listedAt("42", s42, !s42.Open); err != nil || then {
			return fmt.Errorf("still listed with open=%t: %v", !s42.Open, err)
		}
		return nil
	})
	change("owner", "4") // shop 42's owner
	eventually(t, 30*time.Second, "the new owner name of shop 42 in the query API", func() (err error) {
		got, err := d.storedShop("42")
		if err == nil && got.OwnerName == s42.OwnerName {
			return fmt.Errorf("still the old owner name %q", s42.OwnerName)
		}
		if err == nil {
			s42 = got
		}
		return err
	})
	// A deleted shop is gone from detail and from lists.
	s43, err := d.fromStore("43")
	if err != nil {
		t.Fatal(err)
	}
	change("delete", "43")
	eventually(t, 30*time.Second, "deleted shop 43 gone", func() error {
		res, body, err := get(d.query + "/43")
		if err != nil || res.StatusCode != http.StatusNotFound {
			return fmt.Errorf("detail: %v %v %s", err, res.Status, body)
		}
		for _, open := range []bool{true, false} {
			if listed, err := d.listedAt("43", s43, open); err != nil || listed {
				return fmt.Errorf("still listed (open=%t): %v", open, err)
			}
		}
		return nil
	})
	t.Logf("the changes reached the query API in %s", time.Since(changed).Round(time.Millisecond))

	// Ctrl-C, then start again: the data is kept (served from the store at
	// once). The sample APIs keep their changes in memory only, so they
	// start over while the store keeps what it had.
	d.stop(t)
	d = start(t, bin, root, dataDir)
	eventually(t, 10*time.Second, "shop 42 from the store after a restart", func() error {
		got, err := d.fromStore("42")
		if err == nil && got != s42 {
			return fmt.Errorf("after the restart %+v, want %+v", got, s42)
		}
		return err
	})
	if _, body, err := get(d.query + "?limit=3"); err != nil || len(gjson.GetBytes(body, "items").Array()) != 3 {
		t.Fatalf("list after a restart: %v %s", err, body)
	}
	d.stop(t)
	if strings.Contains(d.stderr.String(), "re-issued") {
		t.Fatalf("the restart re-issued every shop again, though the store kept them:\n%s", d.stderr.String())
	}
}
