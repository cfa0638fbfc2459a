package main

import (
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/readside/readside/internal/testenv"
)

// The status page, in a real browser (Debian's chromium, headless), follows
// the read model's freshness: while the source is slow the live consumer's
// lag rises on the page and falls back to 0 once it is fast again; while the
// source is down the lag keeps rising, a bad event shows in the dead letters
// with its reason, and once the source is back the lag falls to 0 and the
// backlog drains. Screenshots of both moments are kept in the artifact directory
// (testenv.ArtifactDir: .artifacts/ at the module root by default).
func TestStatusPageInABrowser(t *testing.T) {
	t.Parallel()
	browser := testenv.Chromium(t)
	w := newWorld(t)
	ids := shopIDs(40)
	for _, id := range ids {
		w.api.Put(id, "shop "+id)
	}
	admin := freeAddr(t)
	p := w.start("status", "-metrics-addr", admin, "-monitor-interval", "300ms")
	url := "http://" + admin + "/status"
	dir := testenv.ArtifactDir(t)

	// A slow source (1.5 s an answer, under its 2 s timeout) under a steady
	// stream of changes: every event waits its fetch.
	w.api.SetLatency(1500 * time.Millisecond)
	stop := make(chan struct{})
	published := make(chan struct{})
	go func() {
		defer close(published)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			w.jsc.Publish(t.Context(), w.ns+".shop.changed."+ids[i%len(ids)], nil)
		}
	}()
	w.waitFor(60*time.Second, "the page shows the live consumer over 1 s behind the slow source", func() (bool, string) {
		if p.exited() {
			t.Fatalf("the projector exited: %v", p.err)
		}
		live, ok := liveRow(browser.DOM(url))
		if !ok || live.lag < 1 {
			return false, "live lag " + strconv.FormatFloat(live.lag, 'f', 3, 64) + " s"
		}
		return true, ""
	})
	browser.Screenshot(url, filepath.Join(dir, "status-page-slow-source.png"), 1100, 1000)
	close(stop)
	<-published
	w.api.SetLatency(0)
	w.waitFor(60*time.Second, "the page shows the live consumer caught up with the source fast again", func() (bool, string) {
		live, ok := liveRow(browser.DOM(url))
		if !ok || live.lag != 0 || live.pending+live.ackPending != 0 {
			return false, "live lag " + strconv.FormatFloat(live.lag, 'f', 3, 64) + " s"
		}
		return true, ""
	})

	w.api.FailAll(503) // now the source is down
	w.publish(ids, func(int) int { return 1 })
	// A bad event: its body names no shop id.
	if _, err := w.jsc.Publish(t.Context(), w.ns+".shop.events", []byte(`{"name":"no id here"}`)); err != nil {
		t.Fatal(err)
	}

	var page string
	w.waitFor(60*time.Second, "the page shows the live consumer over 2 s behind, with a backlog, and one dead letter", func() (bool, string) {
		if p.exited() {
			t.Fatalf("the projector exited: %v", p.err)
		}
		page = browser.DOM(url)
		live, ok := liveRow(page)
		switch {
		case !ok:
			return false, "no live consumer row on the page"
		case live.lag < 2:
			return false, "live lag " + strconv.FormatFloat(live.lag, 'f', 3, 64) + " s"
		case live.pending+live.ackPending == 0:
			return false, "no backlog on the page"
		case !strings.Contains(page, `data-dead-letters="1"`):
			return false, "the dead letter is not counted"
		}
		return true, ""
	})
	for _, want := range []string{`class="lag-line" data-kind="live"`, `data-dependency="consumers"`} {
		if !strings.Contains(page, want) {
			t.Errorf("while lagging, the page lacks %q", want)
		}
	}
	if !regexp.MustCompile(`<td class="num">1</td><td>[^<]*(id|shopId)[^<]*</td>`).MatchString(page) {
		t.Errorf("while lagging, the page does not show the dead letter's reason:\n%s", section(page, "Dead letters"))
	}
	browser.Screenshot(url, filepath.Join(dir, "status-page-lagging.png"), 1100, 1000)

	w.api.FailAll(0) // the source is back
	w.waitFor(60*time.Second, "the page shows the live consumer caught up: lag 0, no backlog", func() (bool, string) {
		page = browser.DOM(url)
		live, ok := liveRow(page)
		switch {
		case !ok:
			return false, "no live consumer row on the page"
		case live.lag != 0 || live.pending+live.ackPending != 0:
			return false, "live lag " + strconv.FormatFloat(live.lag, 'f', 3, 64) + " s, " +
				strconv.Itoa(live.pending+live.ackPending) + " events unacknowledged"
		}
		return true, ""
	})
	if !strings.Contains(page, `id="readiness">ready`) {
		t.Errorf("after catching up, the page does not say ready")
	}
	shot := filepath.Join(dir, "status-page-caught-up.png")
	browser.Screenshot(url, shot, 1100, 1000)
	t.Logf("screenshots: %s, %s, %s", filepath.Join(dir, "status-page-slow-source.png"), filepath.Join(dir, "status-page-lagging.png"), shot)
}

type row struct {
	lag                 float64
	pending, ackPending int
}

var liveRowRE = regexp.MustCompile(`data-kind="live" data-lag-seconds="([0-9.]+)" data-pending="([0-9]+)" data-ack-pending="([0-9]+)"`)

// liveRow reads the live consumer's row from the page.
func liveRow(page string) (row, bool) {
	m := liveRowRE.FindStringSubmatch(page)
	if m == nil {
		return row{}, false
	}
	var r row
	r.lag, _ = strconv.ParseFloat(m[1], 64)
	r.pending, _ = strconv.Atoi(m[2])
	r.ackPending, _ = strconv.Atoi(m[3])
	return r, true
}

// section is the page from heading on, for failure messages.
func section(page, heading string) string {
	if i := strings.Index(page, heading); i >= 0 {
		return page[i:min(len(page), i+2000)]
	}
	return page
}
