package bleveindex_test

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/internal/sink/bleveindex"
	"github.com/readside/readside/internal/sink/sinktest"
	"github.com/readside/readside/projections"
)

func TestBlevePersists(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "shops")
	var logs bytes.Buffer
	o := bleveindex.Options{Name: "shops", Fields: bleveShopFields, Log: slog.New(slog.NewTextHandler(&logs, nil))}
	b, err := bleveindex.Open(dir, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	built := time.UnixMilli(1_700_000_000_123)
	if err := b.Write(sinktest.Context(t), []sink.Doc{
		{ID: "a", Version: 7, Body: []byte(bleveShops["a"]), BuiltAt: built},
		{ID: "gone", Version: 9, Deleted: true},
	}); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if b, err = bleveindex.Open(dir, o); err != nil {
		t.Fatalf("Open again: %v", err)
	}
	defer b.Close()
	got, err := b.Get(sinktest.Context(t), "a")
	if err != nil || got.Version != 7 || !got.BuiltAt.Equal(built) || !bytes.Equal(got.Body, []byte(bleveShops["a"])) {
		t.Fatalf("Get(a) = %+v, %v", got, err)
	}
	if got, err := b.Get(sinktest.Context(t), "gone"); err != nil || !got.Deleted || got.Version != 9 {
		t.Fatalf("Get(gone) = %+v, %v", got, err)
	}
	if p := blevePage(t, b, sink.Query{Text: "roma", Limit: 5}, nil); !slices.Equal(p.IDs, []string{"a"}) {
		t.Fatalf("search after reopening: %v", p.IDs)
	}
	if strings.Contains(logs.String(), "re-index") {
		t.Fatalf("reopened with the same fields, but: %s", logs.String())
	}
}

func TestBleveReindexesWhenFieldsChange(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "shops")
	before := []projections.Field{
		{Name: "name", Type: projections.Text, Search: true},
		{Name: "city", Type: projections.Keyword, Filter: true},
	}
	b, err := bleveindex.Open(dir, bleveindex.Options{Name: "shops", Fields: before})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	var docs []sink.Doc
	for id, body := range bleveShops {
		docs = append(docs, sink.Doc{ID: id, Version: 5, Body: []byte(body)})
	}
	docs = append(docs, sink.Doc{ID: "gone", Version: 5, Deleted: true})
	if err := b.Write(sinktest.Context(t), docs); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	// seats becomes sortable, city an integer that no shop's city fits, and
	// name stops being searchable.
	after := []projections.Field{
		{Name: "name", Type: projections.Text, Filter: true},
		{Name: "city", Type: projections.Integer, Filter: true},
		{Name: "seats", Type: projections.Integer, Filter: true, Sort: true},
	}
	var logs bytes.Buffer
	b, err = bleveindex.Open(dir, bleveindex.Options{Name: "shops", Fields: after, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatalf("Open with other fields: %v", err)
	}
	defer b.Close()
	if !strings.Contains(logs.String(), "re-indexed") || !strings.Contains(logs.String(), "docs=7") {
		t.Errorf("logs do not tell of the re-index: %s", logs.String())
	}
	for _, c := range []struct {
		q    sink.Query
		want string
	}{
		{sink.Query{Sort: sortBy("seats")}, "beafdc"},
		{sink.Query{Filters: []sink.Filter{filterEq("name", "Sushi Bar")}}, "e"},
		{sink.Query{Filters: []sink.Filter{filterCmp("city", "gte", int64(0))}}, ""},
	} {
		c.q.Limit = 10
		if got := strings.Join(blevePage(t, b, c.q, nil).IDs, ""); got != c.want {
			t.Errorf("%+v: got %q, want %q", c.q, got, c.want)
		}
	}
	if _, err := b.Search(sinktest.Context(t), sink.Query{Text: "pizza", Limit: 10}); !errors.Is(err, sink.ErrBadQuery) {
		t.Errorf("text search with no searchable field: %v, want ErrBadQuery", err)
	}
	// The guard's versions came along.
	if err := b.Write(sinktest.Context(t), []sink.Doc{{ID: "gone", Version: 4, Body: []byte(`{}`)}, {ID: "a", Version: 4, Body: []byte(`{}`)}}); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if got, err := b.Get(sinktest.Context(t), "gone"); err != nil || !got.Deleted || got.Version != 5 {
		t.Errorf("Get(gone) = %+v, %v; want the tombstone at 5", got, err)
	}
	if got, err := b.Get(sinktest.Context(t), "a"); err != nil || got.Version != 5 || !bytes.Equal(got.Body, []byte(bleveShops["a"])) {
		t.Errorf("Get(a) = %+v, %v; want version 5 as written", got, err)
	}
	for _, leftover := range []string{dir + ".old", dir + ".reindex"} {
		if _, err := os.Stat(leftover); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s stayed behind: %v", leftover, err)
		}
	}
}

func TestBleveRecoversAnInterruptedSwap(t *testing.T) {
	t.Parallel()
	b, dir := openBleve(t, bleveShopFields)
	if err := b.Write(sinktest.Context(t), []sink.Doc{{ID: "a", Version: 1, Body: []byte(bleveShops["a"])}}); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// Stopped after moving the old index away, with half a new one beside it.
	if err := os.Rename(dir, dir+".old"); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir+".reindex", 0o750); err != nil {
		t.Fatal(err)
	}
	b, err := bleveindex.Open(dir, bleveindex.Options{Name: "shops", Fields: bleveShopFields})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer b.Close()
	if p := blevePage(t, b, sink.Query{Text: "roma", Limit: 5}, nil); !slices.Equal(p.IDs, []string{"a"}) {
		t.Fatalf("after recovery: %v", p.IDs)
	}
	for _, leftover := range []string{dir + ".old", dir + ".reindex"} {
		if _, err := os.Stat(leftover); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s stayed behind: %v", leftover, err)
		}
	}
}

func TestBleveRefusesADirectoryOfSomethingElse(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := bleveindex.Open(dir, bleveindex.Options{Name: "shops", Fields: bleveShopFields}); err == nil || !strings.Contains(err.Error(), "no bleve index") {
		t.Fatalf("Open = %v, want a refusal", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "notes.txt")); err != nil {
		t.Fatalf("the directory's file: %v", err)
	}
}

func TestBleveOneProcessAtATime(t *testing.T) {
	t.Parallel()
	first, dir := openBleve(t, bleveShopFields)
	b, err := bleveindex.Open(dir, bleveindex.Options{Name: "shops", Fields: bleveShopFields})
	if err == nil {
		b.Close()
		t.Fatal("a second Open of the same directory succeeded")
	}
	if !strings.Contains(err.Error(), "another process") {
		t.Fatalf("Open = %v, want it to say another process holds the index", err)
	}
	if err := first.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	b, err = bleveindex.Open(dir, bleveindex.Options{Name: "shops", Fields: bleveShopFields})
	if err != nil {
		t.Fatalf("Open once the first closed: %v", err)
	}
	b.Close()
}
