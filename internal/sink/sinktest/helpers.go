package sinktest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/readside/readside/internal/sink"
)

// The helpers below serve the drivers' own tests, beside the suites.

// Context is a context for one test's calls to a store: it ends after 30
// seconds, so a store that hangs fails the test rather than the run, or when
// the test ends. It outlives t.Context, so cleanups may use it.
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// JSONDoc is a small document of id at version v whose body holds both.
func JSONDoc(id string, v int64) sink.Doc {
	return sink.Doc{ID: id, Version: v, Body: fmt.Appendf(nil, `{"id":%q,"v":%d}`, id, v)}
}

// BenchWrite benchmarks write with batches of 100 documents of about 1 KB
// (BenchBody), each batch a newer version of the same documents than the
// last, so that every one passes the write guard and is written.
func BenchWrite(b *testing.B, write func(ctx context.Context, docs []sink.Doc) error) {
	ctx := Context(b)
	const batch = 100
	docs := make([]sink.Doc, batch)
	for i := range docs {
		docs[i] = sink.Doc{ID: fmt.Sprint("bench-", i), Body: BenchBody(i)}
	}
	b.SetBytes(int64(batch * len(docs[0].Body)))
	b.ReportAllocs()
	v := int64(0)
	for b.Loop() {
		v++
		for i := range docs {
			docs[i].Version = v
		}
		if err := write(ctx, docs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(v*batch)/b.Elapsed().Seconds(), "docs/s")
}

// BenchBody is a flat JSON document of about 1 KB, different for every i,
// for the drivers' write benchmarks.
func BenchBody(i int) []byte {
	var sb strings.Builder
	fmt.Fprintf(&sb, `{"id":"bench-%d","name":"Shop number %d","city":"Seoul","rating":4.5,"open":true`, i, i)
	for f := 0; sb.Len() < 1000; f++ {
		fmt.Fprintf(&sb, `,"field_%02d":"value of field %02d for the benchmark doc"`, f, f)
	}
	sb.WriteString("}")
	return []byte(sb.String())
}
