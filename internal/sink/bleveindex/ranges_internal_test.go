package bleveindex

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/blevesearch/bleve/v2/numeric"
)

// TestTrieBlocks checks that the blocks of a range cover it exactly, each
// value once, and are few whatever the bounds: bleve's own numeric range
// searcher spent hours on some of them.
func TestTrieBlocks(t *testing.T) {
	f := numeric.Float64ToInt64
	maxDown := math.Nextafter(math.MaxFloat64, 0)
	ranges := [][2]int64{
		{math.MinInt64, math.MaxInt64},
		{math.MinInt64, math.MinInt64}, {math.MaxInt64, math.MaxInt64},
		{math.MinInt64, f(-math.MaxFloat64)}, // lte -MaxFloat64, which took hours
		{f(math.Inf(-1)), f(-math.MaxFloat64)}, {f(-math.MaxFloat64), f(-maxDown)},
		{f(maxDown), f(math.MaxFloat64)}, {f(math.MaxFloat64), f(math.Inf(1))},
		{f(math.Copysign(0, -1)), f(0)}, {-1, 0}, {-16, 15}, {0, 0}, {1, 1 << 62},
		{time.Date(2059, 1, 19, 23, 56, 7, 0, time.UTC).UnixNano(), time.Date(2059, 1, 19, 23, 56, 7, 999e6, time.UTC).UnixNano()},
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		a, b := int64(r.Uint64()), int64(r.Uint64())
		if r.IntN(2) == 0 {
			b = a + r.Int64N(1<<20) // a narrow range, often across a roll-over of 7-bit digits
			if b < a {
				b = math.MaxInt64
			}
		}
		ranges = append(ranges, [2]int64{min(a, b), max(a, b)})
	}
	const most = 15*2*(1<<trieStep-1) + 1<<trieStep // 15 levels of two partial blocks, and the last level
	for _, rg := range ranges {
		type block struct {
			first, last uint64 // sign bit flipped, so in the order of int64s
		}
		var blocks []block
		trieBlocks(rg[0], rg[1], func(v int64, shift uint) {
			u := uint64(v) ^ 1<<63
			if shift%trieStep != 0 || shift > 60 || u&(1<<shift-1) != 0 {
				t.Fatalf("%d..%d: block %d at shift %d is not one bleve indexes", rg[0], rg[1], v, shift)
			}
			blocks = append(blocks, block{u, u | (1<<shift - 1)})
		})
		if len(blocks) > most {
			t.Errorf("%d..%d: %d blocks, more than %d", rg[0], rg[1], len(blocks), most)
		}
		slices.SortFunc(blocks, func(a, b block) int { return cmp.Compare(a.first, b.first) })
		next := uint64(rg[0]) ^ 1<<63
		for i, b := range blocks {
			if b.first != next {
				t.Fatalf("%d..%d: block %d starts at %d, want %d", rg[0], rg[1], i, int64(b.first^1<<63), int64(next^1<<63))
			}
			next = b.last + 1
		}
		if last := blocks[len(blocks)-1].last; last != uint64(rg[1])^1<<63 {
			t.Fatalf("%d..%d: the blocks end at %d", rg[0], rg[1], int64(last^1<<63))
		}
	}
	trieBlocks(1, 0, func(v int64, shift uint) { t.Fatalf("1..0: block %d at shift %d", v, shift) })
}
