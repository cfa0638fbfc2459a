package sampleapi_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/readside/readside/examples/shopdisplay/sampleapi"
)

// everything is what the API serves about the shops and owners of ids.
func everything(t *testing.T, api *sampleapi.API, ids ...int) string {
	t.Helper()
	var b strings.Builder
	for _, id := range ids {
		s, ok := api.Shop(id)
		o, _ := api.Owner(id / 10)
		m, _ := api.Menu(id)
		a, _ := api.Ads(id)
		b.WriteString(mustJSON(t, []any{id, ok, s, o, m, a}) + "\n")
	}
	return b.String()
}

// An API made by Open serves after a restart what it served before: shops
// changed, deleted and re-created, owners, menus and ads changed; versions
// go on growing from where they were.
func TestOpenKeepsChangesAcrossRestarts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dir", "changes.jsonl")
	o := sampleapi.Options{Shops: 200, Seed: 3}
	api, err := sampleapi.Open(path, o)
	if err != nil {
		t.Fatal(err)
	}
	ids := []int{41, 42, 43, 44, 45}
	fresh := everything(t, api, ids...)
	for _, change := range []func() (string, error){
		func() (string, error) { return api.ChangeShop(42) },
		func() (string, error) { return api.DeleteShop(43) },
		func() (string, error) { return api.DeleteShop(44) },
		func() (string, error) { return api.ChangeShop(44) }, // re-created
		func() (string, error) { return api.ChangeOwner(4) },
		func() (string, error) { return api.ChangeOwner(4) },
		func() (string, error) { return api.ChangeMenu(45) },
		func() (string, error) { return api.ChangeAds(41) },
	} {
		if _, err := change(); err != nil {
			t.Fatal(err)
		}
	}
	changed := everything(t, api, ids...)
	if changed == fresh {
		t.Fatal("the changes changed nothing")
	}
	s44, _ := api.Shop(44)
	if err := api.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := api.ChangeShop(1); err == nil {
		t.Error("a change after Close succeeded")
	}

	for restart := range 2 { // the second reads the compacted file
		api, err = sampleapi.Open(path, o)
		if err != nil {
			t.Fatal(err)
		}
		if got := everything(t, api, ids...); got != changed {
			t.Fatalf("restart %d serves\n%s\nbefore it served\n%s", restart, got, changed)
		}
		if restart == 0 {
			if _, err := api.ChangeShop(44); err != nil {
				t.Fatal(err)
			}
			if s, _ := api.Shop(44); s.Version <= s44.Version {
				t.Fatalf("a change after the restart has version %d, not above %d", s.Version, s44.Version)
			}
			changed = everything(t, api, ids...)
		}
		api.Close()
	}

	// New, or another number of shops: the data derived from the ids.
	if got := everything(t, sampleapi.New(o), ids...); got != fresh {
		t.Errorf("New serves\n%s\nwant the fresh data\n%s", got, fresh)
	}
	if _, err := sampleapi.Open(path, sampleapi.Options{Shops: 300, Seed: 3}); err == nil || !strings.Contains(err.Error(), "200 shops") {
		t.Errorf("Open with another number of shops: %v, want an error naming the journal's 200 shops", err)
	}
}

// A line cut short by a crash is dropped: its change never returned.
func TestOpenDropsALastLineCutShort(t *testing.T) {
	path := filepath.Join(t.TempDir(), "changes.jsonl")
	o := sampleapi.Options{Shops: 100}
	api, err := sampleapi.Open(path, o)
	if err != nil {
		t.Fatal(err)
	}
	api.ChangeOwner(3)
	want, _ := api.Owner(3)
	api.Close()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"kind":"owner","id":3,"rev":2,"vers`)
	f.Close()

	api, err = sampleapi.Open(path, o)
	if err != nil {
		t.Fatal(err)
	}
	defer api.Close()
	if got, _ := api.Owner(3); !reflect.DeepEqual(got, want) {
		t.Errorf("owner 3 %+v, want %+v", got, want)
	}
}
