package testenv

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Shop is the state the fake shop API holds for one shop.
type Shop struct {
	ID      string     `json:"id"`
	Name    string     `json:"name"`
	Version int64      `json:"version"`
	City    string     `json:"city"`
	Rating  float64    `json:"rating"`
	Open    bool       `json:"open"`
	Tags    []string   `json:"tags"`
	Loc     [2]float64 `json:"location"`        // [lon, lat]
	Seats   *int       `json:"seats,omitempty"` // absent for some shops
	Opened  any        `json:"opened"`          // "2019-03-14", an RFC 3339 time or epoch millis
	Price   *float64   `json:"price,omitempty"` // absent for some shops
	Cuisine string     `json:"cuisine"`         // free text
	Hours   any        `json:"hours"`           // an object, kept as is
	Serial  int64      `json:"serial"`          // a large integer, beyond float64's precision
}

// ShopAPI is a fake domain service: GET /shops/{id} answers a shop's current
// state, 404 for an unknown shop, and whatever failure a test sets. It stands
// for the users' code, the one part of the system tests may fake.
type ShopAPI struct {
	*httptest.Server
	mu      sync.Mutex
	shops   map[string]Shop
	last    map[string]int64 // the last version of every shop, deleted ones too
	bad     map[string]int   // id → status to answer
	perID   map[string]int
	fetches atomic.Int64
	status  atomic.Int32 // non-zero: answer every request with it
	latency atomic.Int64 // added to every answer, in nanoseconds
	active  atomic.Int64
	peak    atomic.Int64
	hook    atomic.Pointer[func(id string, exists bool)]
	traces  []string // the traceparent header of every request that had one
}

// NewShopAPI starts a fake shop API; Close it when done.
func NewShopAPI() *ShopAPI {
	a := &ShopAPI{shops: map[string]Shop{}, last: map[string]int64{}, bad: map[string]int{}, perID: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /shops/{id}", a.serve)
	a.Server = httptest.NewServer(mux)
	return a
}

func (a *ShopAPI) serve(w http.ResponseWriter, r *http.Request) {
	n := a.active.Add(1)
	defer a.active.Add(-1)
	for p := a.peak.Load(); n > p && !a.peak.CompareAndSwap(p, n); p = a.peak.Load() {
	}
	a.fetches.Add(1)
	if d := time.Duration(a.latency.Load()); d > 0 {
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
	}
	id := r.PathValue("id")
	a.mu.Lock()
	a.perID[id]++
	if tp := r.Header.Get("traceparent"); tp != "" {
		a.traces = append(a.traces, tp)
	}
	shop, ok := a.shops[id]
	bad := a.bad[id]
	a.mu.Unlock()
	if h := a.hook.Load(); h != nil {
		(*h)(id, ok)
	}
	switch {
	case a.status.Load() != 0:
		http.Error(w, "failing on purpose", int(a.status.Load()))
	case bad != 0:
		http.Error(w, "rejected on purpose", bad)
	case !ok:
		http.Error(w, "no such shop", http.StatusNotFound)
	default:
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(shop)
	}
}

// Put stores a shop, bumping its version, and returns the new state.
func (a *ShopAPI) Put(id, name string) Shop {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.shops[id]
	a.last[id]++ // versions move on across a deletion, as a real source's do
	s.ID, s.Name, s.Version = id, name, a.last[id]
	derive(&s)
	a.shops[id] = s
	return s
}

// derive fills a shop's other fields from its id and name: deterministic, and
// spread enough that filters, sorts and distances tell shops apart.
func derive(s *Shop) {
	h := fnv.New64a()
	h.Write([]byte(s.ID))
	x := h.Sum64()
	// FNV barely moves its high bits for ids that differ in the last byte: mix (splitmix64).
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	bits := func(n uint) uint64 { v := x % (1 << n); x >>= n; return v }
	s.City = []string{"Berlin", "Seoul", "Lisbon", "Austin"}[bits(2)]
	s.Rating = float64(bits(6)%51) / 10 // 0 to 5
	s.Open = bits(1) == 0
	s.Tags = append(strings.Fields(s.Name), []string{"vegan", "halal", "kosher", "late"}[bits(2)])
	// Around Berlin, within about 7 km east-west and 11 km north-south.
	s.Loc = [2]float64{13.4 + float64(int(bits(8)%201)-100)/1000, 52.5 + float64(int(bits(8)%201)-100)/1000}
	s.Seats = nil
	if seats := int(bits(7)); seats%6 != 0 {
		s.Seats = &seats
	}
	day := time.Date(2015, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, int(bits(12)))
	switch bits(2) {
	case 0:
		s.Opened = day.Format(time.DateOnly)
	case 1:
		s.Opened = day.Add(time.Duration(bits(10)) * time.Minute).Format(time.RFC3339)
	default:
		s.Opened = day.UnixMilli()
	}
	s.Price = nil
	if p := bits(9); p%5 != 0 {
		price := float64(p)/10 + 5
		s.Price = &price
	}
	s.Cuisine = []string{"Neapolitan pizza", "Korean barbecue", "Vegan bowls", "Street tacos", "Sushi and ramen", "Burgers and fries"}[bits(3)%6]
	s.Hours = map[string]string{"mon": "10-22", "sun": []string{"closed", "12-20"}[bits(1)]}
	s.Serial = 1<<60 + int64(bits(10))
}

// Delete removes a shop: it answers 404 from now on.
func (a *ShopAPI) Delete(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.shops, id)
}

// Get returns a shop's current state.
func (a *ShopAPI) Get(id string) (Shop, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	s, ok := a.shops[id]
	return s, ok
}

// Body is the JSON the API answers for a shop.
func (a *ShopAPI) Body(id string) []byte {
	s, _ := a.Get(id)
	b, _ := json.Marshal(s)
	return append(b, '\n')
}

// Reject makes the API answer status for id (0 to stop).
func (a *ShopAPI) Reject(id string, status int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if status == 0 {
		delete(a.bad, id)
	} else {
		a.bad[id] = status
	}
}

// OnAnswer calls fn for every request of a shop, after its state was read
// and before it is answered (nil to stop): a test widens a race there, e.g.
// re-creating a shop while a 404 for it is on its way.
func (a *ShopAPI) OnAnswer(fn func(id string, exists bool)) {
	if fn == nil {
		a.hook.Store(nil)
		return
	}
	a.hook.Store(&fn)
}

// TraceParents returns the traceparent headers the API received, in order.
func (a *ShopAPI) TraceParents() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.traces...)
}

// FailAll makes every request answer status (0 to answer normally again).
func (a *ShopAPI) FailAll(status int) { a.status.Store(int32(status)) }

// SetLatency delays every answer by d.
func (a *ShopAPI) SetLatency(d time.Duration) { a.latency.Store(int64(d)) }

// Fetches is how many requests the API has received.
func (a *ShopAPI) Fetches() int64 { return a.fetches.Load() }

// PeakConcurrency is the most requests the API served at once.
func (a *ShopAPI) PeakConcurrency() int64 { return a.peak.Load() }

// ResetPeak returns PeakConcurrency and starts counting it afresh.
func (a *ShopAPI) ResetPeak() int64 { return a.peak.Swap(a.active.Load()) }

// FetchesOf is how many requests asked for id.
func (a *ShopAPI) FetchesOf(id string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.perID[id]
}

// ShopDefinition is a projection definition of shops, named ns, triggered by
// "<ns>.shop.changed.<id>" (id in the subject) and "<ns>.shop.events" (id in
// the body's "shopId"), reading apiURL. With versioned, documents carry the
// shop's version; without, the event's stream sequence.
func ShopDefinition(ns, apiURL string, versioned bool) string {
	version := ""
	if versioned {
		version = "version: shop.version\n"
	}
	return fmt.Sprintf(`name: %[1]s
triggers:
  - subject: %[1]s.shop.changed.*
  - subject: %[1]s.shop.events
    id: body.shopId
sources:
  - name: shop
    url: %[2]s/shops/{id}
    timeout: 2s
%[3]sfields:
  - {name: name, from: shop.name, type: text, search: true, sort: true}
  - {name: version, from: shop.version, type: integer}
  - {name: city, from: shop.city, type: keyword, filter: true}
  - {name: rating, from: shop.rating, type: float, sort: true}
  - {name: open, from: shop.open, type: boolean, filter: true}
  - {name: tags, from: shop.tags, type: keyword, array: true, filter: true}
  - {name: location, from: shop.location, type: geo_point}
redis:
  key: "%[1]s:shop:{id}"
elasticsearch:
  alias: %[1]s-shops
`, ns, apiURL, version)
}
