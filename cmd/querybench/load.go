package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tidwall/gjson"

	"github.com/readside/readside/internal/benchkit"
)

// pageSize is the ids of a multi-get and the page of a list or search.
const pageSize = 25

// request makes the path and query of one request, from the run's documents.
type request func(r *rand.Rand, d *dataset) string

// kinds are the requests of each scenario; every URL fits the API and the
// baseline alike.
var kinds = map[string]request{
	"detail": func(r *rand.Rand, d *dataset) string {
		return "/" + d.ids[r.IntN(len(d.ids))]
	},
	"multiget": func(r *rand.Rand, d *dataset) string {
		ids := make([]string, 0, pageSize)
		for len(ids) < pageSize {
			if id := d.ids[r.IntN(len(d.ids))]; !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
		return "?ids=" + strings.Join(ids, ",")
	},
	"list": func(r *rand.Rand, d *dataset) string {
		return "?city=" + url.QueryEscape(d.cities[r.IntN(len(d.cities))]) + "&sort=-rating&limit=25"
	},
	"search": func(r *rand.Rand, d *dataset) string {
		return "?q=" + url.QueryEscape(d.prefixes[r.IntN(len(d.prefixes))]) + "&limit=25"
	},
}

// scenario is one row of the table: a kind of request against one server.
type scenario struct {
	row  string
	kind string // a key of kinds
	base string // the server's base URL
	ref  string // the row whose rate this one is compared with; "" for a baseline
}

// group is the rows of one scenario name, baseline first. They are measured
// in turns (see measure), so that they see the same drift of the machine.
func (b *bench) group(name string) []scenario {
	api, bl := b.srv.api+"/v1/"+b.ns, b.srv.baseline+"/v1/"+b.ns
	g := []scenario{
		{row: name + " baseline", kind: name, base: bl},
		{row: name, kind: name, base: api, ref: name + " baseline"},
	}
	if name == "detail" && b.s.accessLog {
		g = append(g, scenario{row: "detail, access log on", kind: name, base: b.srv.apiLogged + "/v1/" + b.ns, ref: name + " baseline"})
	}
	return g
}

// round measures every scenario once.
func (b *bench) round(ctx context.Context, round int) ([]result, error) {
	var out []result
	for _, name := range b.s.Scenarios {
		b.progress("round %d: %s", round, name)
		rs, err := b.measure(ctx, b.group(name), b.s.warmup, b.s.duration)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		for i := range rs {
			if ref := rs[i].ref; ref != "" {
				rs[i].refRate = rs[slices.IndexFunc(rs, func(x result) bool { return x.row == ref })].rate()
			}
			b.progress("  %s: %s", rs[i].row, rs[i].summary())
		}
		out = append(out, rs...)
	}
	return out, nil
}

// warm loads every server briefly once, so that the first baseline measured
// does not pay for Elasticsearch's JIT and cold caches alone.
func (b *bench) warm(ctx context.Context) error {
	if b.s.warmup == 0 {
		return nil
	}
	b.progress("warming up")
	for _, name := range b.s.Scenarios {
		if _, err := b.measure(ctx, b.group(name), 0, b.s.warmup); err != nil {
			return fmt.Errorf("warm-up, %s: %w", name, err)
		}
	}
	return nil
}

// client is a load generator's HTTP client: one keep-alive connection per
// worker, no compression.
func client(conns int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		MaxIdleConns: conns, MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns,
		IdleConnTimeout: 90 * time.Second, DisableCompression: true,
	}}
}

// measure runs a closed loop of -conns workers, each sending its next request
// when the last one is answered, against each server of the group: for warm
// (not counted), then for dur in -slices turns (baseline, API, baseline,
// API, ...), which are added up.
func (b *bench) measure(ctx context.Context, group []scenario, warm, dur time.Duration) ([]result, error) {
	clients := make([]*http.Client, len(group))
	for i := range group {
		clients[i] = client(b.s.conns)
		defer clients[i].CloseIdleConnections()
		if warm > 0 {
			if _, err := b.loop(ctx, clients[i], group[i], warm); err != nil {
				return nil, err
			}
		}
	}
	out := make([]result, len(group))
	statuses := make([]map[int]int, len(group))
	for i, sc := range group {
		out[i] = result{row: sc.row, ref: sc.ref}
		statuses[i] = map[int]int{}
	}
	turns := min(b.s.slices, max(1, int(dur/(250*time.Millisecond))))
	for range turns {
		for i, sc := range group {
			r := &out[i]
			cpu := benchkit.SampleCPU(b.stores.PIDs)
			began := time.Now()
			ws, err := b.loop(ctx, clients[i], sc, dur/time.Duration(turns))
			if err != nil {
				return nil, err
			}
			r.seconds += time.Since(began).Seconds()
			r.cpu = r.cpu.Add(cpu.Since())
			for _, w := range ws {
				r.requests += len(w.lat)
				r.errors += w.errs
				r.lat = append(r.lat, w.lat...)
				for code, n := range w.statuses {
					statuses[i][code] += n
				}
				if w.firstErr != "" && len(r.notes) == 0 {
					r.notes = append(r.notes, "first error: "+w.firstErr)
				}
			}
		}
	}
	for i := range out {
		for code, n := range statuses[i] {
			if code != http.StatusOK {
				out[i].notes = append(out[i].notes, fmt.Sprintf("%d answers %d", n, code))
			}
		}
		slices.Sort(out[i].lat)
	}
	return out, nil
}

// worker is what one load generator worker saw.
type worker struct {
	lat      []time.Duration // of every answered request, errors included
	errs     int             // transport errors and answers other than 200
	statuses map[int]int
	firstErr string
}

func (b *bench) loop(ctx context.Context, c *http.Client, sc scenario, dur time.Duration) ([]*worker, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	end := time.Now().Add(dur)
	ws := make([]*worker, b.s.conns)
	var wg sync.WaitGroup
	for i := range ws {
		w := &worker{lat: make([]time.Duration, 0, 4096), statuses: map[int]int{}}
		ws[i] = w
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(i)))
			gen := kinds[sc.kind]
			for ctx.Err() == nil && time.Now().Before(end) {
				u := sc.base + gen(r, &b.data)
				t := time.Now()
				code, err := get(ctx, c, u, io.Discard)
				if ctx.Err() != nil {
					return
				}
				w.lat = append(w.lat, time.Since(t))
				w.statuses[code]++
				if err != nil || code != http.StatusOK {
					w.errs++
					if w.firstErr == "" {
						w.firstErr = fmt.Sprintf("%s: %d %v", u, code, err)
					}
				}
			}
		})
	}
	wg.Wait()
	return ws, ctx.Err()
}

// get sends one GET and copies the body to out; code is 0 on a transport error.
func get(ctx context.Context, c *http.Client, u string, out io.Writer) (code int, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	res, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	_, err = io.Copy(out, res.Body)
	return res.StatusCode, err
}

// check asks the baseline and the API the same requests and compares the
// answers, so that a baseline doing less than the API (or the API falling
// back to the sources) is caught before anything is measured.
func (b *bench) check(ctx context.Context) error {
	c := client(1)
	defer c.CloseIdleConnections()
	r := rand.New(rand.NewPCG(3, 4))
	api, bl := b.srv.api+"/v1/"+b.ns, b.srv.baseline+"/v1/"+b.ns
	for _, kind := range []string{"detail", "multiget", "list", "search"} {
		for range 20 {
			p := kinds[kind](r, &b.data)
			var want, got bytes.Buffer
			if code, err := get(ctx, c, bl+p, &want); err != nil || code != http.StatusOK {
				return fmt.Errorf("check: baseline %s: %d %v %s", p, code, err, want.Bytes())
			}
			if code, err := get(ctx, c, api+p, &got); err != nil || code != http.StatusOK {
				return fmt.Errorf("check: API %s: %d %v %s", p, code, err, got.Bytes())
			}
			if kind == "detail" {
				if !bytes.Equal(want.Bytes(), got.Bytes()) {
					return fmt.Errorf("check: %s: the API answers\n%s\nthe baseline\n%s", p, got.Bytes(), want.Bytes())
				}
				continue
			}
			w, g := gjson.GetBytes(want.Bytes(), "items").Raw, gjson.GetBytes(got.Bytes(), "items").Raw
			if w != g || gjson.Get(w, "#").Int() != pageSize {
				return fmt.Errorf("check: %s: the API's items (%d) differ from the baseline's (%d), or are not %d",
					p, gjson.Get(g, "#").Int(), gjson.Get(w, "#").Int(), pageSize)
			}
		}
	}
	return nil
}
