package testenv

import (
	"math"
	"slices"
	"strings"
	"unicode"
)

// The models below compute what a search engine must answer, independently
// of the engines' code, for tests to compare with.

// Distance is the arc distance in metres between two points, as
// Elasticsearch computes it (haversine on a sphere of the Earth's mean
// radius).
func Distance(lat1, lon1, lat2, lon2 float64) float64 {
	const r = 6371008.7714
	rad := math.Pi / 180
	dlat, dlon := (lat2-lat1)*rad, (lon2-lon1)*rad
	h := math.Sin(dlat/2)*math.Sin(dlat/2) + math.Cos(lat1*rad)*math.Cos(lat2*rad)*math.Sin(dlon/2)*math.Sin(dlon/2)
	return 2 * r * math.Asin(math.Min(1, math.Sqrt(h)))
}

// Words splits text as Elasticsearch's standard analyzer does for plain
// words: lower-cased runs of letters and digits.
func Words(text string) []string {
	return strings.FieldsFunc(strings.ToLower(text), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
}

// TextMatches reports whether q matches a document whose searchable fields
// hold fields, as multi_match bool_prefix with operator and does: within one
// field, every word of q but the last is a word of the field, and the last is
// a prefix of one.
func TextMatches(q string, fields ...string) bool {
	qw := Words(q)
	if len(qw) == 0 {
		return false
	}
	for _, field := range fields {
		fw := Words(field)
		if !slices.ContainsFunc(qw[:len(qw)-1], func(w string) bool { return !slices.Contains(fw, w) }) &&
			slices.ContainsFunc(fw, func(f string) bool { return strings.HasPrefix(f, qw[len(qw)-1]) }) {
			return true
		}
	}
	return false
}
