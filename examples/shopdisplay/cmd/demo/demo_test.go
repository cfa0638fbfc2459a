package main_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/readside/readside/examples/shopdisplay/sampleapi"
	"github.com/readside/readside/internal/testenv"
)

// demo is a running demo process and what it printed.
type demo struct {
	cmd    *exec.Cmd
	query  string // the query API's base URL of the projection, from the printed curl lines
	api    string // the sample APIs' base URL
	admin  string // the projector's admin address, from the printed status page URL
	stdout *testenv.Buffer
	stderr *testenv.Buffer
	exited chan error
}

var (
	detailLine = regexp.MustCompile(`curl -i (http://\S+)/42`)
	changeLine = regexp.MustCompile(`curl -X POST '(http://[^/]+)/admin/change`)
	statusLine = regexp.MustCompile(`(?m)^\s*(http://\S+)/status\s`)
)

// start runs the demo binary from the repository root, as `make demo` does,
// with its data under dataDir, every address chosen by the system (the
// defaults may be taken on a shared machine) and flags, and reads the
// addresses from what it prints for the user.
func start(t *testing.T, bin, root, dataDir string, flags ...string) *demo {
	t.Helper()
	args := append([]string{"-data-dir", dataDir, "-api-addr", "127.0.0.1:0", "-query-addr", "127.0.0.1:0", "-metrics-addr", "127.0.0.1:0", "-nats-listen", "127.0.0.1:-1"}, flags...)
	cmd := exec.Command(bin, args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "READSIDE_REDIS_ADDR=", "READSIDE_ES_URLS=", "READSIDE_NATS_URL=") // a new user's shell
	d := &demo{cmd: cmd, stdout: &testenv.Buffer{}, stderr: &testenv.Buffer{}, exited: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = d.stdout, d.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-d.exited
		}
		if t.Failed() {
			t.Logf("demo's output:\n%s\ndemo's log:\n%s", d.stdout.String(), d.stderr.String())
		}
	})
	out := d.waitFor(t, 30*time.Second, regexp.MustCompile(`(?s)curl -i .*/admin/change.*/status`))
	d.query = detailLine.FindStringSubmatch(out)[1]
	d.api = changeLine.FindStringSubmatch(out)[1]
	d.admin = statusLine.FindStringSubmatch(out)[1]
	return d
}

// waitFor waits until the demo has printed what re matches, and returns
// what it printed so far.
func (d *demo) waitFor(t *testing.T, within time.Duration, re *regexp.Regexp) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		out := d.stdout.String()
		if re.MatchString(out) {
			return out
		}
		select {
		case err := <-d.exited:
			d.exited <- err
			t.Fatalf("the demo ended (%v) before printing %s; it printed:\n%s\nits log:\n%s", err, re, out, d.stderr.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the demo did not print %s within %s; it printed:\n%s", re, within, out)
		}
	}
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
	TopItems        string // comma-separated
	MinOrderPrice   float64
	AdRank          int64 // -1: no active campaign
}

// errGone is the sample APIs' answer for a deleted shop.
var errGone = errors.New("the sample APIs answer 404: deleted")

// sourceShop is shop id as the sample APIs have it now.
func (d *demo) sourceShop(id string) (shop, error) {
	var body [4][]byte
	for i, path := range []string{"/shops/" + id, "", "/shops/" + id + "/menu/summary", "/ads?shopId=" + id} {
		if i == 1 {
			path = "/owners/" + gjson.GetBytes(body[0], "ownerId").String()
		}
		res, b, err := get(d.api + path)
		switch {
		case err != nil:
			return shop{}, err
		case res.StatusCode == http.StatusNotFound && i == 0:
			return shop{}, errGone
		case res.StatusCode != http.StatusOK:
			return shop{}, fmt.Errorf("GET %s: %s %s", path, res.Status, b)
		}
		body[i] = b
	}
	s, o, m, a := body[0], body[1], body[2], body[3]
	return shop{
		Name: gjson.GetBytes(s, "name").Str, OwnerName: gjson.GetBytes(o, "businessName").Str, Open: gjson.GetBytes(s, "open").Bool(),
		RatingCount: gjson.GetBytes(s, "rating.count").Int(), Lat: gjson.GetBytes(s, "location.lat").Float(), Lon: gjson.GetBytes(s, "location.lon").Float(),
		TopItems: joined(gjson.GetBytes(m, "topItems")), MinOrderPrice: gjson.GetBytes(m, "minOrderPrice").Float(), AdRank: rank(gjson.GetBytes(a, "activeRank")),
	}, nil
}

// freshShop is shop id as the sample APIs derive it from its id alone,
// before any change; false when it does not exist.
func freshShop(api *sampleapi.API, id int) shop {
	s, _ := api.Shop(id)
	o, _ := api.Owner(s.OwnerID)
	m, _ := api.Menu(id)
	a, _ := api.Ads(id)
	r := int64(-1)
	if a.ActiveRank != nil {
		r = int64(*a.ActiveRank)
	}
	return shop{
		Name: s.Name, OwnerName: o.BusinessName, Open: s.Open, RatingCount: int64(s.Rating.Count), Lat: s.Location.Lat, Lon: s.Location.Lon,
		TopItems: strings.Join(m.TopItems, ","), MinOrderPrice: m.MinOrderPrice, AdRank: r,
	}
}

func joined(r gjson.Result) string {
	var items []string
	for _, it := range r.Array() {
		items = append(items, it.Str)
	}
	return strings.Join(items, ",")
}

func rank(r gjson.Result) int64 {
	if r.Type != gjson.Number {
		return -1
	}
	return r.Int()
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
		TopItems: joined(gjson.GetBytes(body, "topItems")), MinOrderPrice: gjson.GetBytes(body, "minOrderPrice").Float(), AdRank: rank(gjson.GetBytes(body, "adRank")),
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
// a joined source —, a deletion) reaches the query API; the fill reports
// its progress; Ctrl-C stops it cleanly.
func TestDemoAsANewUser(t *testing.T) {
	root, err := filepath.Abs("../../../..")
	if err != nil {
		t.Fatal(err)
	}
	// make demo is this command, with no services of its own to start.
	plan := recipe(t, root)
	if !strings.Contains(plan, "go build -o .demo/bin/demo ./examples/shopdisplay/cmd/demo") || !strings.Contains(plan, "exec .demo/bin/demo") {
		t.Fatalf("make -n demo does not build ./examples/shopdisplay/cmd/demo and exec it:\n%s", plan)
	}
	if strings.Contains(plan, "testenv") {
		t.Fatalf("make demo starts test services; it must need only Go:\n%s", plan)
	}
	bin := build(t)
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

	// The fill says how far it is, every 5 s by default, of the shops the
	// source listed when it started (the test and the changer delete some,
	// maybe before the listing).
	out := d.waitFor(t, 30*time.Second, regexp.MustCompile(`(?m)^Filling: \d+ of (99\d{3}|100000) documents in \(\d+/s\), \d+s$`))
	t.Logf("the fill's first progress line: %s", regexp.MustCompile(`(?m)^Filling: .*$`).FindString(out))
	d.stop(t)
	if !strings.Contains(d.stderr.String(), "demo stopped") {
		t.Fatalf("no clean stop in the demo's log:\n%s", d.stderr.String())
	}
}

// built is the demo binary, built once for the tests of this package.
var built struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// build builds the demo binary once and returns its path.
func build(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "demo-test"); built.err != nil {
			return
		}
		built.bin = filepath.Join(built.dir, "demo")
		if out, err := exec.Command("go", "build", "-o", built.bin, ".").CombinedOutput(); err != nil {
			built.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.bin
}

// recipe is what `make demo` runs, as make -n prints it.
func recipe(t *testing.T, root string, vars ...string) string {
	t.Helper()
	plan, err := exec.Command("make", append([]string{"-n", "-s", "-C", root, "demo"}, vars...)...).Output()
	if err != nil {
		t.Fatalf("make -n demo: %v\n%s", err, plan)
	}
	return strings.TrimSpace(string(plan))
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../../../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// -help shows the defaults the demo runs with, not the daemons'.
func TestDemoHelpShowsItsDefaults(t *testing.T) {
	cmd := exec.Command(build(t), "-help")
	cmd.Env = append(os.Environ(), "READSIDE_DATA_DIR=/elsewhere", "READSIDE_REDIS_ADDR=10.0.0.1:6379")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("-help: %v\n%s", err, out)
	}
	help := string(out)
	for _, want := range []string{
		`-data-dir string` + "\n" + `.*\(default "\.demo"\)`,
		`-nats-url string` + "\n" + `.*\(default "embedded"\)`,
		`-redis-addr value` + "\n" + `.*\(default embedded\)`,
		`-es-urls value` + "\n" + `.*\(default embedded\)`,
		`-metrics-addr string` + "\n" + `.*/status.*\(default "127\.0\.0\.1:9464"\)`,
		`-progress-every duration` + "\n" + `.*\(default 5s\)`,
	} {
		if !regexp.MustCompile(want).MatchString(help) {
			t.Errorf("-help does not match %q", want)
		}
	}
	for _, daemons := range []string{"readside-data", "127.0.0.1:6379", "127.0.0.1:9200", "nats://127.0.0.1:4222", "/elsewhere", "10.0.0.1", "READSIDE_DATA_DIR", "READSIDE_REDIS_ADDR"} {
		if strings.Contains(help, daemons) {
			t.Errorf("-help shows %q, which the demo does not use", daemons)
		}
	}
	if t.Failed() {
		t.Logf("-help:\n%s", help)
	}
}

var (
	reissuing = regexp.MustCompile(`(?m)^Filling the read model: re-issuing all (\d+) shops to the projector; a line every \S+ until every document is in\.$`)
	progress  = regexp.MustCompile(`(?m)^Filling: (\d+) of (\d+) documents in \((\d+)/s\), \S+$`)
	done      = regexp.MustCompile(`(?m)^Filled: all (\d+) documents are in, (\S+) after the start \((\d+)/s\)(; (\d+) of them deleted meanwhile by the sample APIs' changes)?\.$`)
)

// The fill tells how far it is and when every document is in, and it says
// so only when it is true; the sample APIs keep their changes across a
// restart — the changer's and the admin endpoint's: deletions, new owner
// names, menus, ads —, so the restarted demo's read model matches its
// sources, without a fill or a replay.
func TestDemoFillAndRestart(t *testing.T) {
	const shops = 2000
	root, bin, dataDir := repoRoot(t), build(t), filepath.Join(t.TempDir(), "data")
	d := start(t, bin, root, dataDir, "-shops", strconv.Itoa(shops), "-rate", "100", "-progress-every", "200ms")

	out := d.waitFor(t, 2*time.Minute, done)
	m := reissuing.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no line says the fill started:\n%s", out)
	}
	listed, _ := strconv.Atoi(m[1])
	if listed > shops || listed < shops-50 {
		t.Fatalf("the fill re-issued %d shops of %d", listed, shops)
	}
	lines := progress.FindAllStringSubmatch(out, -1)
	if len(lines) == 0 {
		t.Fatalf("no progress line before the done line:\n%s", out)
	}
	last := -1
	for _, l := range lines {
		in, _ := strconv.Atoi(l[1])
		total, _ := strconv.Atoi(l[2])
		if total != listed || in < last || in > total {
			t.Fatalf("progress line %q: want documents in growing, up to %d", l[0], listed)
		}
		last = in
	}
	m = done.FindStringSubmatch(out)
	if n, _ := strconv.Atoi(m[1]); n != listed {
		t.Fatalf("done line %q: want all %d listed shops", m[0], listed)
	}
	if strings.Count(out, "Filled:") != 1 {
		t.Fatalf("more than one done line:\n%s", out)
	}
	// The status page the demo prints serves the projection's consumers.
	res, err := http.Get(d.admin + "/status")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !bytes.Contains(page, []byte(`data-kind="live"`)) {
		t.Errorf("GET %s/status: %s, want the status page with the live consumer:\n%.2000s", d.admin, res.Status, page)
	}
	t.Logf("%d progress lines, then: %s", len(lines), m[0])

	// The done line is true: every listed shop is in the doc store (or its
	// tombstone, for one deleted since); the query API serves the ids from
	// the store without asking the sources.
	for from := 1; from <= shops; from += 100 {
		var ids []string
		for id := from; id < from+100; id++ {
			ids = append(ids, strconv.Itoa(id))
		}
		res, body, err := get(d.query + "?ids=" + strings.Join(ids, ","))
		if err != nil || res.StatusCode != http.StatusOK || res.Header.Get("X-Readside-Source") != "store" {
			t.Fatalf("ids %d–%d after the done line: %v %v, served from %q, want every one from the store: %.300s",
				from, from+99, err, res.Status, res.Header.Get("X-Readside-Source"), body)
		}
	}

	// Changes before the restart: the changer's (100 a second) and ours.
	for _, c := range []string{"kind=delete&id=43", "kind=owner&id=4", "kind=menu&id=45", "kind=ads&id=46"} {
		res, err := http.Post(d.api+"/admin/change?"+c, "", nil)
		if err != nil || res.StatusCode != http.StatusOK {
			t.Fatalf("POST /admin/change?%s: %v %v", c, err, res)
		}
		res.Body.Close()
	}
	time.Sleep(2 * time.Second) // the changer goes on meanwhile
	d.stop(t)

	// No changes after the restart: the sources stand still to be compared.
	d = start(t, bin, root, dataDir, "-shops", strconv.Itoa(shops), "-rate", "0")
	out = d.waitFor(t, 10*time.Second, regexp.MustCompile(`(?m)^The read model was filled at \S+; it and the sample APIs' changes are as the last run left them\.$`))
	if strings.Contains(out, "Filling") {
		t.Fatalf("the restart fills again, though the read model was kept:\n%s", out)
	}

	// The sources kept the changes: many shops differ from the data derived
	// from their ids alone.
	fresh := sampleapi.New(sampleapi.Options{Shops: shops})
	var changed, deleted, renamed []int
	now := make(map[int]shop, shops)
	for id := 1; id <= shops; id++ {
		s, err := d.sourceShop(strconv.Itoa(id))
		switch {
		case errors.Is(err, errGone):
			deleted = append(deleted, id)
			continue
		case err != nil:
			t.Fatal(err)
		}
		now[id] = s
		if f := freshShop(fresh, id); s != f {
			changed = append(changed, id)
			if s.OwnerName != f.OwnerName {
				renamed = append(renamed, id)
			}
		}
	}
	t.Logf("after the restart, the sources have %d shops changed (%d with a new owner name) and %d deleted", len(changed), len(renamed), len(deleted))
	// (The changer may have re-created shop 43, or deleted one of owner 4's.)
	ours := (slices.Contains(deleted, 43) || slices.Contains(changed, 43)) && slices.ContainsFunc(renamed, func(id int) bool { return id/10 == 4 })
	if !ours || len(deleted) < 2 || len(changed) < 100 {
		t.Fatalf("the sample APIs lost the changes made before the restart: deleted %v, renamed %d, changed %d (want 43 deleted or changed, owner 4's shops renamed, hundreds changed)",
			deleted, len(renamed), len(changed))
	}

	// And the read model matches them: every changed shop as the sources
	// have it, every deleted one gone.
	eventually(t, 30*time.Second, "the read model matches the sources after the restart", func() error {
		var wrong []string
		for _, id := range changed {
			got, err := d.fromStore(strconv.Itoa(id))
			if err != nil || got != now[id] {
				wrong = append(wrong, fmt.Sprintf("shop %d: %+v %v, the sources say %+v", id, got, err, now[id]))
			}
		}
		for _, id := range deleted {
			if res, body, err := get(d.query + "/" + strconv.Itoa(id)); err != nil || res.StatusCode != http.StatusNotFound {
				wrong = append(wrong, fmt.Sprintf("deleted shop %d: %v %v %.100s", id, err, res.Status, body))
			}
		}
		if len(wrong) > 0 {
			return fmt.Errorf("%d of %d changed or deleted shops are wrong, e.g. %s", len(wrong), len(changed)+len(deleted), wrong[0])
		}
		return nil
	})
	d.stop(t)
}

// Ctrl-C on `make demo` leaves no error on the terminal: the recipe execs
// the demo, which stops cleanly with status 0, so make has nothing to
// report. The terminal's Ctrl-C is a SIGINT to the foreground process
// group: make, and the demo in place of the recipe's shell.
func TestDemoCtrlCThroughMake(t *testing.T) {
	root := repoRoot(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	flags := "DEMO_FLAGS=-data-dir " + dataDir + " -shops 300 -rate 0 -progress-every 200ms" +
		" -api-addr 127.0.0.1:0 -query-addr 127.0.0.1:0 -metrics-addr 127.0.0.1:0 -nats-listen 127.0.0.1:-1"

	// ctrlC runs cmd in a process group of its own, as a shell runs a
	// foreground job, waits until it printed what re matches, sends SIGINT
	// to the group and returns how it ended and what it printed.
	ctrlC := func(cmd *exec.Cmd, re *regexp.Regexp) (syscall.WaitStatus, string) {
		t.Helper()
		term := &testenv.Buffer{}
		cmd.Dir, cmd.Stdout, cmd.Stderr = root, term, term
		cmd.Env = append(os.Environ(), "READSIDE_REDIS_ADDR=", "READSIDE_ES_URLS=", "READSIDE_NATS_URL=")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		t.Cleanup(func() {
			if cmd.ProcessState == nil {
				syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				<-exited
			}
		})
		for deadline := time.Now().Add(2 * time.Minute); !re.MatchString(term.String()); {
			select {
			case err := <-exited:
				t.Fatalf("%s ended (%v) before printing %s:\n%s", cmd, err, re, term)
			case <-time.After(100 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s did not print %s within 2 minutes:\n%s", cmd, re, term)
			}
		}
		if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			t.Fatalf("%s did not stop within 30s of Ctrl-C:\n%s", cmd, term)
		}
		out := term.String()
		for _, bad := range []string{"Error", "make: ***", "signal: interrupt", "level=ERROR"} {
			if strings.Contains(out, bad) {
				t.Errorf("after Ctrl-C, the terminal shows %q:\n%s", bad, out)
			}
		}
		if !strings.Contains(out, `msg="demo stopped"`) {
			t.Errorf("the demo did not stop cleanly:\n%s", out)
		}
		return cmd.ProcessState.Sys().(syscall.WaitStatus), out
	}

	// make demo, as a user types it, until every document is in.
	ws, _ := ctrlC(exec.Command("make", "-C", root, "demo", flags), done)
	t.Logf("make demo after Ctrl-C: %s", ended(ws))
	// GNU make, having got the SIGINT itself, waits for the recipe and then
	// ends by the same signal, whatever the recipe's status (a shell shows
	// no message for it and $? is 130, as for any program stopped by
	// Ctrl-C); a recipe that failed would have its "Error" printed, checked
	// above.
	if !(ws.Exited() && ws.ExitStatus() == 0) && !(ws.Signaled() && ws.Signal() == syscall.SIGINT) {
		t.Errorf("make demo ended with %s after Ctrl-C", ended(ws))
	}

	// The Makefile's entry point, the recipe make runs, exits 0.
	line := recipe(t, root, flags)
	ws, _ = ctrlC(exec.Command("sh", "-c", line), regexp.MustCompile(`(?m)^The read model was filled at `))
	if !ws.Exited() || ws.ExitStatus() != 0 {
		t.Errorf("the recipe of make demo (%s) ended with %s after Ctrl-C, want exit status 0", line, ended(ws))
	}
}

// ended says how a process ended.
func ended(ws syscall.WaitStatus) string {
	if ws.Signaled() {
		return "signal " + ws.Signal().String()
	}
	return "exit status " + strconv.Itoa(ws.ExitStatus())
}
