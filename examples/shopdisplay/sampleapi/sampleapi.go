// Package sampleapi is the set of source APIs of the shop display example: a
// food-delivery app's shop, owner, menu and ads services, in one small HTTP
// handler.
//
// Data is deterministic: shop i (1 ≤ i ≤ Shops) and everything about it is
// derived from i and the seed by hashing, on the fly, so a hundred thousand
// shops cost no memory. Only entities that changed are remembered: their
// revision and version. Owner i/10 owns shop i, so an owner has about ten
// shops (owner 0 has shops 1–9).
//
// Endpoints (every answer is JSON; unknown or deleted entities answer 404):
//
//	GET /shops/{id}                 a shop
//	GET /shops?ids=1,2,3            {"items": [shop...]}, unknown ids absent (at most 1000 ids)
//	GET /shops?cursor=C&limit=L     {"items": [{"id": ..}...], "next": "C2"}, no next on the last page
//	GET /owners/{id}                an owner
//	GET /shops/{id}/menu/summary    the shop's menu summary
//	GET /ads?shopId={id}            the shop's active campaign rank, null without one
//
// For tests and demos, each source ("shops", "owners", "menu", "ads") can be
// made to fail (SetDown), and requests are counted. Mutations (ChangeShop,
// DeleteShop, ChangeOwner, ChangeMenu, ChangeAds) move an entity to its next
// revision and return the subject of the zero-payload event announcing it.
// New keeps the changes in memory, so a new process starts from the data
// derived from the ids again; Open keeps them in a file too, so a restarted
// process serves what the last one served.
//
// An API is safe for concurrent use.
package sampleapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// The sources, as SetDown and Requests name them.
const (
	SourceShops  = "shops"  // /shops/{id} and /shops?...
	SourceOwners = "owners" // /owners/{id}
	SourceMenu   = "menu"   // /shops/{id}/menu/summary
	SourceAds    = "ads"    // /ads?shopId=
)

var sourceNames = [...]string{srcShops: SourceShops, srcOwners: SourceOwners, srcMenu: SourceMenu, srcAds: SourceAds}

// Indexes of the sources in API.down and API.requests.
const (
	srcShops = iota
	srcOwners
	srcMenu
	srcAds
)

func sourceIndex(name string) (int, bool) {
	for i, n := range sourceNames {
		if n == name {
			return i, true
		}
	}
	return 0, false
}

// ErrUnknown is returned by a mutation of an entity that does not exist. A
// mutation of an API made by Open also fails when its journal cannot keep
// the change.
var ErrUnknown = errors.New("sampleapi: no such entity")

// DefaultShops is the number of shops when Options.Shops is 0.
const DefaultShops = 100000

// MaxBatch is the most ids GET /shops?ids= takes; more answer 400.
const MaxBatch = 1000

// Options configure an API.
type Options struct {
	Shops int    // how many shops, with ids 1..Shops [DefaultShops]
	Seed  uint64 // another seed, other data
}

// state is what a mutation changed about one entity.
type state struct {
	rev     int   // 0: as derived from the id alone
	version int64 // 0: the base version
	deleted bool
}

// baseVersion is the version of every entity that never changed. Mutations
// take their versions from one counter above it, so versions only grow,
// across a deletion and a re-creation too.
const baseVersion = 1

func (s state) versionOrBase() int64 {
	if s.version == 0 {
		return baseVersion
	}
	return s.version
}

// API is the sample source APIs. Create it with New; it is an http.Handler.
type API struct {
	n    int
	seed uint64
	mux  *http.ServeMux

	mu      sync.RWMutex
	clock   int64 // the last version given
	changed [4]map[int]state

	down        [4]atomic.Int32 // per source: the status to answer, 0 for normal
	requests    [4]atomic.Int64
	shopGets    atomic.Int64
	shopBatches atomic.Int64
	shopLists   atomic.Int64
	fetchMu     sync.Mutex
	shopFetches map[int]int64 // per shop: single GETs plus batch requests naming it

	journal *journal // nil: changes are kept in memory only (see Open)
}

// Indexes into API.changed: which entities the maps remember.
const (
	changedShops = iota
	changedOwners
	changedMenus
	changedAds
)

// New returns the sample APIs.
func New(o Options) *API {
	if o.Shops <= 0 {
		o.Shops = DefaultShops
	}
	a := &API{n: o.Shops, seed: o.Seed, clock: baseVersion, shopFetches: map[int]int64{}}
	for i := range a.changed {
		a.changed[i] = map[int]state{}
	}
	a.mux = http.NewServeMux()
	a.mux.HandleFunc("GET /shops/{id}", a.serveShop)
	a.mux.HandleFunc("GET /shops", a.serveShops)
	a.mux.HandleFunc("GET /owners/{id}", a.serveOwner)
	a.mux.HandleFunc("GET /shops/{id}/menu/summary", a.serveMenu)
	a.mux.HandleFunc("GET /ads", a.serveAds)
	return a
}

// ServeHTTP serves the endpoints listed in the package documentation.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// Shops is the number of shops; their ids are 1..Shops.
func (a *API) Shops() int { return a.n }

// Owners is the number of owners; their ids are 0..Owners-1.
func (a *API) Owners() int { return a.n/10 + 1 }

// ShopsOf returns the ids of owner's shops, deleted ones included.
func (a *API) ShopsOf(owner int) []int {
	var ids []int
	for id := max(1, owner*10); id <= min(a.n, owner*10+9); id++ {
		ids = append(ids, id)
	}
	return ids
}

// Shop returns shop id as GET /shops/{id} answers it, and false when it
// does not exist (unknown or deleted).
func (a *API) Shop(id int) (Shop, bool) {
	st, ok := a.shopState(id)
	if !ok {
		return Shop{}, false
	}
	return a.makeShop(id, st), true
}

// Owner returns owner id, and false when it does not exist.
func (a *API) Owner(id int) (Owner, bool) {
	if id < 0 || id >= a.Owners() {
		return Owner{}, false
	}
	return a.makeOwner(id, a.state(changedOwners, id)), true
}

// Menu returns the menu summary of shop id, and false when the shop does not exist.
func (a *API) Menu(shopID int) (Menu, bool) {
	if _, ok := a.shopState(shopID); !ok {
		return Menu{}, false
	}
	return a.makeMenu(shopID, a.state(changedMenus, shopID)), true
}

// Ads returns the ads of shop id, and false when the shop does not exist.
func (a *API) Ads(shopID int) (Ads, bool) {
	if _, ok := a.shopState(shopID); !ok {
		return Ads{}, false
	}
	return a.makeAds(shopID, a.state(changedAds, shopID)), true
}

func (a *API) state(kind, id int) state {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.changed[kind][id]
}

func (a *API) shopState(id int) (state, bool) {
	if id < 1 || id > a.n {
		return state{}, false
	}
	st := a.state(changedShops, id)
	return st, !st.deleted
}

// ChangeShop moves shop id to its next revision (it toggles whether the
// shop is open and moves its rating) and returns "shop.changed.<id>". A
// deleted shop is re-created, with a higher version than before.
func (a *API) ChangeShop(id int) (string, error) {
	if id < 1 || id > a.n {
		return "", fmt.Errorf("%w: shop %d", ErrUnknown, id)
	}
	return "shop.changed." + strconv.Itoa(id), a.bump(changedShops, id, false)
}

// DeleteShop deletes shop id (its menu and ads go with it) and returns
// "shop.changed.<id>".
func (a *API) DeleteShop(id int) (string, error) {
	if id < 1 || id > a.n {
		return "", fmt.Errorf("%w: shop %d", ErrUnknown, id)
	}
	return "shop.changed." + strconv.Itoa(id), a.bump(changedShops, id, true)
}

// ChangeOwner gives owner id another business name and phone number and
// returns "owner.changed.<id>".
func (a *API) ChangeOwner(id int) (string, error) {
	if id < 0 || id >= a.Owners() {
		return "", fmt.Errorf("%w: owner %d", ErrUnknown, id)
	}
	return "owner.changed." + strconv.Itoa(id), a.bump(changedOwners, id, false)
}

// ChangeMenu gives shop id's menu another minimum order price and top items
// and returns "menu.changed.<shopId>".
func (a *API) ChangeMenu(shopID int) (string, error) {
	if shopID < 1 || shopID > a.n {
		return "", fmt.Errorf("%w: shop %d", ErrUnknown, shopID)
	}
	return "menu.changed." + strconv.Itoa(shopID), a.bump(changedMenus, shopID, false)
}

// ChangeAds gives shop id another campaign rank (or none) and returns
// "ads.changed.<shopId>".
func (a *API) ChangeAds(shopID int) (string, error) {
	if shopID < 1 || shopID > a.n {
		return "", fmt.Errorf("%w: shop %d", ErrUnknown, shopID)
	}
	return "ads.changed." + strconv.Itoa(shopID), a.bump(changedAds, shopID, false)
}

// bump moves an entity to its next revision with the next version; a
// deletion keeps the revision and takes a version too. With a journal, the
// change is kept there first: one that cannot be kept is not made.
func (a *API) bump(kind, id int, deleted bool) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.changed[kind][id]
	st.version = a.clock + 1
	if !deleted {
		st.rev++
	}
	st.deleted = deleted
	if a.journal != nil {
		if err := a.journal.record(kind, id, st); err != nil {
			return err
		}
	}
	a.clock = st.version
	a.changed[kind][id] = st
	return nil
}

// SetDown makes every endpoint of source ("shops", "owners", "menu" or
// "ads") answer status, such as 503; 0 makes it answer normally again.
func (a *API) SetDown(source string, status int) error {
	i, ok := sourceIndex(source)
	if !ok {
		return fmt.Errorf("sampleapi: unknown source %q: use one of %s", source, strings.Join(sourceNames[:], ", "))
	}
	if status != 0 && (status < 100 || status > 599) {
		return fmt.Errorf("sampleapi: %d is not an HTTP status", status)
	}
	a.down[i].Store(int32(status))
	return nil
}

// Requests is how many requests source has received, failed ones included.
func (a *API) Requests(source string) int64 {
	i, ok := sourceIndex(source)
	if !ok {
		return 0
	}
	return a.requests[i].Load()
}

// ShopGets is how many single-shop requests (GET /shops/{id}) were received.
func (a *API) ShopGets() int64 { return a.shopGets.Load() }

// ShopBatches is how many batch requests (GET /shops?ids=) were received.
func (a *API) ShopBatches() int64 { return a.shopBatches.Load() }

// ShopLists is how many list pages (GET /shops?cursor=) were requested.
func (a *API) ShopLists() int64 { return a.shopLists.Load() }

// ShopFetches is how often shop id was asked for, alone or in a batch.
func (a *API) ShopFetches(id int) int64 {
	a.fetchMu.Lock()
	defer a.fetchMu.Unlock()
	return a.shopFetches[id]
}

// countFetches counts a request for each of ids.
func (a *API) countFetches(ids ...int) {
	a.fetchMu.Lock()
	defer a.fetchMu.Unlock()
	for _, id := range ids {
		a.shopFetches[id]++
	}
}

// begin counts a request to source and answers the failure set for it, if
// any; it reports whether the handler should go on.
func (a *API) begin(w http.ResponseWriter, source int) bool {
	a.requests[source].Add(1)
	if status := a.down[source].Load(); status != 0 {
		http.Error(w, sourceNames[source]+" is down on purpose", int(status))
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func notFound(w http.ResponseWriter, what string) {
	http.Error(w, "no such "+what, http.StatusNotFound)
}

// parseID reads a decimal id; anything else is no id.
func parseID(s string) (int, bool) {
	id, err := strconv.Atoi(s)
	return id, err == nil && strconv.Itoa(id) == s
}

func (a *API) serveShop(w http.ResponseWriter, r *http.Request) {
	a.shopGets.Add(1)
	id, ok := parseID(r.PathValue("id"))
	if ok {
		a.countFetches(id)
	}
	if !a.begin(w, srcShops) {
		return
	}
	shop, exists := a.Shop(id)
	if !ok || !exists {
		notFound(w, "shop")
		return
	}
	writeJSON(w, shop)
}

// serveShops is the batch endpoint (?ids=) or the list endpoint (?cursor=,
// ?limit=), by which parameter is present.
func (a *API) serveShops(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if !q.Has("ids") {
		a.serveList(w, r)
		return
	}
	a.shopBatches.Add(1)
	var ids []int
	seen := map[int]bool{}
	for _, s := range strings.Split(q.Get("ids"), ",") {
		if id, ok := parseID(s); ok && !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	a.countFetches(ids...)
	if !a.begin(w, srcShops) {
		return
	}
	if len(ids) > MaxBatch {
		http.Error(w, fmt.Sprintf("at most %d ids per request", MaxBatch), http.StatusBadRequest)
		return
	}
	items := make([]Shop, 0, len(ids))
	for _, id := range ids {
		if shop, ok := a.Shop(id); ok {
			items = append(items, shop)
		}
	}
	writeJSON(w, struct {
		Items []Shop `json:"items"`
	}{items})
}

// serveList answers a page of shop ids. The cursor is the id to start from
// (empty: the first); clients treat it as opaque.
func (a *API) serveList(w http.ResponseWriter, r *http.Request) {
	a.shopLists.Add(1)
	if !a.begin(w, srcShops) {
		return
	}
	q := r.URL.Query()
	from, limit := 1, 100
	if c := q.Get("cursor"); c != "" {
		var ok bool
		if from, ok = parseID(c); !ok || from < 1 {
			http.Error(w, "bad cursor", http.StatusBadRequest)
			return
		}
	}
	if l := q.Get("limit"); l != "" {
		var ok bool
		if limit, ok = parseID(l); !ok || limit < 1 || limit > MaxBatch {
			http.Error(w, fmt.Sprintf("limit must be between 1 and %d", MaxBatch), http.StatusBadRequest)
			return
		}
	}
	type item struct {
		ID int `json:"id"`
	}
	page := struct {
		Items []item `json:"items"`
		Next  string `json:"next,omitempty"`
	}{Items: make([]item, 0, min(limit, max(a.n-from+1, 0)))}
	id := from
	for ; id <= a.n && len(page.Items) < limit; id++ {
		if _, ok := a.shopState(id); ok {
			page.Items = append(page.Items, item{id})
		}
	}
	if id <= a.n {
		page.Next = strconv.Itoa(id)
	}
	writeJSON(w, page)
}

func (a *API) serveOwner(w http.ResponseWriter, r *http.Request) {
	if !a.begin(w, srcOwners) {
		return
	}
	id, ok := parseID(r.PathValue("id"))
	owner, exists := a.Owner(id)
	if !ok || !exists {
		notFound(w, "owner")
		return
	}
	writeJSON(w, owner)
}

func (a *API) serveMenu(w http.ResponseWriter, r *http.Request) {
	if !a.begin(w, srcMenu) {
		return
	}
	id, ok := parseID(r.PathValue("id"))
	menu, exists := a.Menu(id)
	if !ok || !exists {
		notFound(w, "shop")
		return
	}
	writeJSON(w, menu)
}

func (a *API) serveAds(w http.ResponseWriter, r *http.Request) {
	if !a.begin(w, srcAds) {
		return
	}
	id, ok := parseID(r.URL.Query().Get("shopId"))
	if !ok {
		http.Error(w, "shopId must be a shop id", http.StatusBadRequest)
		return
	}
	ads, exists := a.Ads(id)
	if !exists {
		notFound(w, "shop")
		return
	}
	writeJSON(w, ads)
}
