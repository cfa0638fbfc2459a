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
	"time"

	"github.com/tidwall/gjson"
)

// pageSize is the ids of a multi-get and the page of a list or search.
const pageSize = 25

// request makes the path and query of one request, from the run's documents.
type request func(r *rand.Rand, d *dataset) string

// kinds are the requests of each endpoint, as the Lua script of wrk makes
// them too (see script); every URL fits the API and the baseline alike.
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

// endpoints are the endpoint scenarios of -scenarios, in order.
func (b *bench) endpoints() []string {
	var out []string
	for _, sc := range b.s.scenarios {
		if slices.Contains(endpoints, sc) {
			out = append(out, sc)
		}
	}
	return out
}

// target is one row of the table: an endpoint on one server.
type target struct {
	row  string
	kind string
	p    *proc
	ref  string // the row of the baseline it is compared with; "" for a baseline
}

// group is the rows of one endpoint, baseline first.
func (b *bench) group(kind string) []target {
	g := []target{
		{row: kind + " baseline", kind: kind, p: b.baseline},
		{row: kind, kind: kind, p: b.api, ref: kind + " baseline"},
	}
	if kind == "detail" {
		for _, v := range b.variants {
			g = append(g, target{row: v.row, kind: kind, p: v.p, ref: kind + " baseline"})
		}
	}
	return g
}

// warm loads every server with every endpoint once for -warmup, so that
// the first round does not pay for Elasticsearch's JIT and cold caches.
func (b *bench) warm(ctx context.Context, names []string) error {
	if b.s.warmup == 0 {
		return nil
	}
	b.progress("warming up: %s per server and endpoint", b.s.warmup)
	for _, name := range names {
		for _, t := range b.group(name) {
			if _, err := b.runWrk(ctx, t.p, t.kind, b.s.warmup, b.s.conns, b.s.seed); err != nil {
				return fmt.Errorf("warm-up, %s: %w", t.row, err)
			}
		}
	}
	return nil
}

// round measures every endpoint on every server once: for each endpoint the
// baseline and the API one right after the other, the baseline first in odd
// rounds and last in even ones.
func (b *bench) round(ctx context.Context, names []string, round int) ([]result, error) {
	var out []result
	for _, name := range names {
		g := b.group(name)
		order := slices.Clone(g)
		if round%2 == 0 {
			slices.Reverse(order)
		}
		rs := make(map[string]result, len(g))
		for _, t := range order {
			l, err := b.runWrk(ctx, t.p, t.kind, b.s.duration, b.s.conns, b.s.seed+round)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", t.row, err)
			}
			rs[t.row] = result{row: t.row, ref: t.ref, round: round, load: l}
		}
		for _, t := range g {
			r := rs[t.row]
			if t.ref != "" {
				r.refRate, r.refP99 = rs[t.ref].rate(), rs[t.ref].w.p99
			}
			b.progress("round %d: %-22s %s", round, r.row+":", r.summary())
			out = append(out, r)
		}
	}
	return out, nil
}

// client is an HTTP client with keep-alive connections and no compression.
func client(conns int, timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		MaxIdleConns: conns, MaxIdleConnsPerHost: conns,
		IdleConnTimeout: 90 * time.Second, DisableCompression: true,
	}}
}

// get sends one GET and copies the body to out; code is 0 on a transport error.
func get(ctx context.Context, c *http.Client, u string, out io.Writer) (int, error) {
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
	c := client(1, 10*time.Second)
	defer c.CloseIdleConnections()
	r := rand.New(rand.NewPCG(3, 4))
	path := "/v1/" + b.ns
	for _, kind := range endpoints {
		for range 20 {
			p := path + kinds[kind](r, &b.data)
			var want bytes.Buffer
			if code, err := get(ctx, c, b.baseline.url+p, &want); err != nil || code != http.StatusOK {
				return fmt.Errorf("check: baseline %s: %d %v %s", p, code, err, want.Bytes())
			}
			for _, api := range b.apis() {
				var got bytes.Buffer
				if code, err := get(ctx, c, api.url+p, &got); err != nil || code != http.StatusOK {
					return fmt.Errorf("check: %s %s: %d %v %s", api.name, p, code, err, got.Bytes())
				}
				if kind == "detail" {
					if !bytes.Equal(want.Bytes(), got.Bytes()) {
						return fmt.Errorf("check: %s: the API answers\n%s\nthe baseline\n%s", p, got.Bytes(), want.Bytes())
					}
					continue
				}
				w, g := gjson.GetBytes(want.Bytes(), "items").Raw, gjson.GetBytes(got.Bytes(), "items").Raw
				if w != g || gjson.Get(w, "#").Int() == 0 {
					return fmt.Errorf("check: %s: the API's items (%d) differ from the baseline's (%d), or there are none",
						p, gjson.Get(g, "#").Int(), gjson.Get(w, "#").Int())
				}
			}
		}
	}
	return nil
}
