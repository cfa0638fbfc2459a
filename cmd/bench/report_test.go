package main

import (
	"io"
	"strings"
	"testing"
)

func TestReportRatiosAreToTheirOwnRound(t *testing.T) {
	all := []result{
		{row: "2. e2e", events: 1000, seconds: 1, fetches: 1000, ref: "min(1a, 1b)", refRate: 2000},
		{row: "2. e2e", events: 1000, seconds: 2, fetches: 1000, ref: "min(1a, 1b)", refRate: 1000},
		{row: "2. e2e", events: 1000, seconds: 0.5, fetches: 500, ref: "min(1a, 1b)", refRate: 4000},
	}
	var b strings.Builder
	if err := writeReport(&b, []string{"header"}, all); err != nil {
		t.Fatal(err)
	}
	// Every round ran at half its own baseline, though the rates differ 4×.
	want := "| 2. e2e | 1,000 | – | 1.00 | 1,000 (500–2,000) | min(1a, 1b) = 2,000/s | 0.50 | 1.000 |"
	if !strings.Contains(b.String(), want) {
		t.Errorf("report lacks %q:\n%s", want, b.String())
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	_, err := parse([]string{"-scenarios", "e2e,nope", "-events", "0", "-latency-fetch-concurrency", "x"}, io.Discard)
	if err == nil {
		t.Fatal("parse accepted bad flags")
	}
	for _, want := range []string{`unknown scenario "nope"`, "-events must be at least 1", `"x" is not a positive integer`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}
