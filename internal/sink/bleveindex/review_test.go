//go:build unix

// The tests here cut a file write short with a file size limit (RLIMIT_FSIZE),
// which only unix systems have.

package bleveindex_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/internal/sink/bleveindex"
	"github.com/readside/readside/internal/sink/sinktest"
)

// bleveCreateChild names the directory in which the child process of
// TestBleveCreationCutShort creates an index.
const bleveCreateChild = "READSIDE_TEST_BLEVE_CREATE_DIR"

// A creation of the index cut short (the process killed, or the disk full)
// must not leave behind a half-made index that no later Open can open:
// bleve writes index_meta.json first and the mapping last, so an index cut
// short between the two is refused for good.
func TestBleveCreationCutShort(t *testing.T) {
	if dir := os.Getenv(bleveCreateChild); dir != "" {
		// The child: no file may grow beyond a page, as on a full disk, so
		// bleve fails partway through creating the index.
		if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: 4096, Max: 4096}); err != nil {
			t.Fatal(err)
		}
		if b, err := bleveindex.Open(dir, bleveindex.Options{Name: "shops", Fields: bleveShopFields}); err == nil {
			b.Close()
			t.Fatal("Open succeeded despite the file size limit")
		}
		return
	}
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "shops")
	// The lock file is there from an earlier run: creating the index is what
	// fails.
	lock, err := bolt.Open(dir+".lock", 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := lock.Close(); err != nil {
		t.Fatal(err)
	}
	child := exec.Command(os.Args[0], "-test.run=^TestBleveCreationCutShort$")
	child.Env = append(os.Environ(), bleveCreateChild+"="+dir)
	if out, err := child.CombinedOutput(); err != nil {
		t.Fatalf("the child creating the index: %v\n%s", err, out)
	}

	b, err := bleveindex.Open(dir, bleveindex.Options{Name: "shops", Fields: bleveShopFields})
	if err != nil {
		t.Fatalf("Open after a creation cut short: %v", err)
	}
	defer b.Close()
	if err := b.Write(sinktest.Context(t), []sink.Doc{{ID: "a", Version: 1, Body: []byte(bleveShops["a"])}}); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if p := blevePage(t, b, sink.Query{Text: "roma", Limit: 5}, nil); !slices.Equal(p.IDs, []string{"a"}) {
		t.Fatalf("Search: %v, want [a]", p.IDs)
	}
}
