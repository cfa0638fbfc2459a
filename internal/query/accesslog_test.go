package query_test

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/readside/readside/internal/query"
)

// syncBuffer is a bytes.Buffer safe for the LogBuffer's flusher.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
	n  int // writes
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The access log's buffer writes lines whole, in batches, every interval
// and at Close.
func TestLogBuffer(t *testing.T) {
	out := &syncBuffer{}
	b := query.NewLogBuffer(out, 50*time.Millisecond)
	line := strings.Repeat("x", 1000) + "\n"
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 100 {
				b.Write([]byte(line))
			}
		})
	}
	wg.Wait()
	if !eventually(time.Second, func() bool { return len(out.String()) >= 300*len(line) }) {
		t.Errorf("after 1s the interval had written %d bytes of %d", len(out.String()), 400*len(line))
	}
	b.Write([]byte("last\n"))
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	if want := 400*len(line) + len("last\n"); len(got) != want || !strings.HasSuffix(got, "last\n") {
		t.Fatalf("wrote %d bytes, want %d ending with the last line", len(got), want)
	}
	for i, l := range strings.Split(strings.TrimSuffix(got, "last\n"), "\n")[:400] {
		if l != line[:len(line)-1] {
			t.Fatalf("line %d is cut or mixed: %.40q…", i, l)
		}
	}
	if out.n > 40 {
		t.Errorf("%d writes for 400 lines of 1 KB; want them batched", out.n)
	}
}
