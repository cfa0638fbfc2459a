package bleveindex

import (
	"context"
	"math"

	"github.com/blevesearch/bleve/v2/geo"
	"github.com/blevesearch/bleve/v2/mapping"
	"github.com/blevesearch/bleve/v2/numeric"
	"github.com/blevesearch/bleve/v2/search"
	"github.com/blevesearch/bleve/v2/search/searcher"
	index "github.com/blevesearch/bleve_index_api"

	"github.com/readside/readside/internal/sink"
)

// earthRadius is the Earth's mean radius in metres, which Elasticsearch's
// distances use.
const earthRadius = 6371008.7714

// arcDistance is the haversine distance in metres, as Elasticsearch's
// default (arc) distance computes it.
func arcDistance(a sink.LatLon, lat, lon float64) float64 {
	rad := math.Pi / 180
	h1 := 1 - math.Cos((a.Lat-lat)*rad)
	h2 := 1 - math.Cos((a.Lon-lon)*rad)
	h := h1 + math.Cos(a.Lat*rad)*math.Cos(lat*rad)*h2
	return earthRadius * 2 * math.Asin(math.Min(1, math.Sqrt(h*0.5)))
}

// geoTerm reads a point from a geo_point field's term: only its
// full-precision term holds one.
func geoTerm(term []byte) (lat, lon float64, ok bool) {
	if valid, shift := numeric.ValidPrefixCodedTermBytes(term); !valid || shift != 0 {
		return 0, 0, false
	}
	h, err := numeric.PrefixCoded(term).Int64()
	if err != nil {
		return 0, 0, false
	}
	return geo.MortonUnhashLat(uint64(h)), geo.MortonUnhashLon(uint64(h)), true
}

// geoSort orders by the distance from a point in metres: by a document's
// nearest point ascending, its farthest descending, documents without one
// last either way. Unlike bleve's SortGeoDistance, its values go back into
// SearchAfter as they came out: bleve reads those of its own type as
// decimal numbers, which cannot stand for a missing point.
type geoSort struct {
	field string
	at    sink.LatLon
	desc  bool
	terms [][]byte
	buf   []byte
}

// noPoint is the sort value of a document without a point: infinitely far,
// as Elasticsearch sorts it, so last nearest first and first farthest first.
var noPoint = string(numeric.MustNewPrefixCodedInt64(math.MaxInt64, 0))

func (s *geoSort) UpdateVisitor(field string, term []byte) {
	if field == s.field {
		s.terms = append(s.terms, term)
	}
}

func (s *geoSort) Value(*search.DocumentMatch) string {
	best, found := 0.0, false
	for _, t := range s.terms {
		lat, lon, ok := geoTerm(t)
		if !ok {
			continue
		}
		d := arcDistance(s.at, lat, lon)
		if !found || (d < best) != s.desc {
			best, found = d, true
		}
	}
	s.terms = s.terms[:0]
	if !found {
		return noPoint
	}
	s.buf = numeric.MustNewPrefixCodedInt64Prealloc(numeric.Float64ToInt64(best), 0, s.buf)
	return string(s.buf)
}

func (s *geoSort) DecodeValue(v string) string { return v }
func (s *geoSort) Descending() bool            { return s.desc }
func (s *geoSort) RequiresDocID() bool         { return false }
func (s *geoSort) RequiresScoring() bool       { return false }
func (s *geoSort) RequiresFields() []string    { return []string{s.field} }
func (s *geoSort) Reverse()                    { s.desc = !s.desc }

func (s *geoSort) Copy() search.SearchSort {
	c := *s
	c.terms, c.buf = nil, nil
	return &c
}

// withinQuery keeps documents with a point of field at most metres from
// at, by Elasticsearch's distance.
type withinQuery struct {
	field  string
	at     sink.LatLon
	metres float64
	array  bool // the field may hold several points
}

// Searcher finds candidates with bleve's distance searcher, asked a little
// wider since its distance is not Elasticsearch's, then checks each. A
// field that may hold several points is checked in every document instead:
// bleve's searcher only looks at one point of each.
func (q *withinQuery) Searcher(ctx context.Context, r index.IndexReader, m mapping.IndexMapping, o search.SearcherOptions) (search.Searcher, error) {
	var candidates search.Searcher
	var err error
	if q.array {
		candidates, err = searcher.NewMatchAllSearcher(ctx, r, 1, o)
	} else {
		candidates, err = searcher.NewGeoPointDistanceSearcher(ctx, r, q.at.Lon, q.at.Lat, q.metres*1.01+1, q.field, 1, o)
	}
	if err != nil {
		return nil, err
	}
	dv, err := r.DocValueReader([]string{q.field})
	if err != nil {
		candidates.Close()
		return nil, err
	}
	within := false
	visit := func(_ string, term []byte) {
		if lat, lon, ok := geoTerm(term); ok && !within {
			within = arcDistance(q.at, lat, lon) <= q.metres
		}
	}
	return searcher.NewFilteringSearcher(ctx, candidates, func(_ *search.SearchContext, d *search.DocumentMatch) bool {
		within = false
		return dv.VisitDocValues(d.IndexInternalID, visit) == nil && within
	}), nil
}
