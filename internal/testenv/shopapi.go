package testenv

import (
	"encoding/json"
	"fmt"
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
	Loc     [2]float64 `json:"location"` // [lon, lat]
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
	shop, ok := a.shops[id]
	bad := a.bad[id]
	a.mu.Unlock()
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
	s.City = []string{"Berlin", "Seoul", "Lisbon", "Austin"}[len(id)%4]
	s.Rating = float64(len(name)%50) / 10
	s.Open = len(name)%2 == 0
	s.Tags = strings.Fields("pizza " + name)
	s.Loc = [2]float64{13.4 + float64(len(id))/100, 52.5}
	a.shops[id] = s
	return s
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

// FailAll makes every request answer status (0 to answer normally again).
func (a *ShopAPI) FailAll(status int) { a.status.Store(int32(status)) }

// SetLatency delays every answer by d.
func (a *ShopAPI) SetLatency(d time.Duration) { a.latency.Store(int64(d)) }

// Fetches is how many requests the API has received.
func (a *ShopAPI) Fetches() int64 { return a.fetches.Load() }

// PeakConcurrency is the most requests the API served at once.
func (a *ShopAPI) PeakConcurrency() int64 { return a.peak.Load() }

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
