package main

import (
	"io"
	"slices"
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
	for _, want := range []string{`unknown scenario "nope"`, "-events must be at least 1", `"x" is not an integer of 0 or more`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}

func TestReportGivesEmbeddedRowsTheirRatioToTheServersOfTheirRound(t *testing.T) {
	servers := "2. e2e"
	embedded := "2. e2e, embedded stores"
	all := []result{
		{row: servers, events: 1000, seconds: 1, fetches: 1000},
		{row: embedded, events: 1000, seconds: 0.5, fetches: 1000, serversRate: 1000},
		{row: servers, events: 1000, seconds: 4, fetches: 1000},
		{row: embedded, events: 1000, seconds: 2, fetches: 1000, serversRate: 250},
	}
	var b strings.Builder
	if err := writeReport(&b, []string{"header"}, all); err != nil {
		t.Fatal(err)
	}
	// Twice the rate of the servers in both rounds, though the rounds differ 4×.
	for _, want := range []string{
		"| compared with | ratio | embedded / servers | fetches/event |",
		"| 2. e2e | 1,000 | – | 2.50 | 625 (250–1,000) | – | – | – | 1.000 |",
		"| 2. e2e, embedded stores | 1,000 | – | 1.25 | 1,250 (500–2,000) | – | – | 2.00 | 1.000 |",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
}

func TestReportWithoutEmbeddedRowsHasNoEmbeddedColumn(t *testing.T) {
	var b strings.Builder
	if err := writeReport(&b, []string{"header"}, []result{{row: "2. e2e", events: 1, seconds: 1, fetches: 1}}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "embedded / servers") {
		t.Errorf("report of the servers alone mentions embedded stores:\n%s", b.String())
	}
}

func TestParseBackends(t *testing.T) {
	for _, tc := range []struct {
		flag string
		want []storeSet
	}{
		{"servers", []storeSet{servers}},
		{"embedded", []storeSet{embedded}},
		{"both", []storeSet{servers, embedded}},
	} {
		s, err := parse([]string{"-backends", tc.flag}, io.Discard)
		if err != nil || !slices.Equal(s.backends, tc.want) {
			t.Errorf("-backends %s: %v, %v; want %v", tc.flag, s.backends, err, tc.want)
		}
	}
	s, err := parse(nil, io.Discard)
	if err != nil || !slices.Equal(s.backends, []storeSet{servers}) {
		t.Errorf("default -backends: %v, %v; want servers", s.backends, err)
	}
	if _, err := parse([]string{"-backends", "redis", "-events", "0"}, io.Discard); err == nil ||
		!strings.Contains(err.Error(), `-backends: "redis" is none of servers, embedded, both`) || !strings.Contains(err.Error(), "-events") {
		t.Errorf("-backends redis -events 0: %v", err)
	}
}
