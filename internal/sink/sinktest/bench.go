package sinktest

import (
	"fmt"
	"strings"
)

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
