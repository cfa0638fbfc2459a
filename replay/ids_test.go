package replay_test

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/readside/readside/internal/projector"
	"github.com/readside/readside/internal/stream"
	"github.com/readside/readside/internal/testenv"
	"github.com/readside/readside/projections"
	"github.com/readside/readside/replay"
)

func TestParseIDs(t *testing.T) {
	in := "42\n\n# a comment\n  43  \r\nbad id\n44\n42\n*\n" + strings.Repeat("x", 300) + "\n45"
	l, err := replay.ParseIDs("ids.txt", strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(l.IDs, []string{"42", "43", "44", "45"}) || l.Duplicates != 1 {
		t.Errorf("IDs = %q, %d duplicates; want 42 43 44 45 and 1", l.IDs, l.Duplicates)
	}
	var where []string
	for _, p := range l.Invalid {
		where = append(where, p.Where)
	}
	if !slices.Equal(where, []string{"line 5", "line 8", "line 9"}) {
		t.Errorf("invalid at %v, want lines 5, 8, 9: %v", where, l.Invalid)
	}
	if s := l.Invalid[0].String(); s != `line 5: "bad id": the id "bad id" contains whitespace` {
		t.Errorf("problem = %s", s)
	}
	args := replay.IDArgs([]string{"1", "", "2", "1"})
	if !slices.Equal(args.IDs, []string{"1", "2"}) || len(args.Invalid) != 1 || args.Invalid[0].Where != "argument 2" || args.Duplicates != 1 {
		t.Errorf("IDArgs = %+v", args)
	}
}

// Ids come one per line; blank lines and comments are skipped, and a line
// that is not an id is reported with its number without stopping the others.
func ExampleParseIDs() {
	list, _ := replay.ParseIDs("broken.txt", strings.NewReader("# shops the 10:00 deploy broke\n42\n43\nshop 44\n\n45\n43\n"))
	fmt.Println(list.IDs, list.Duplicates)
	for _, p := range list.Invalid {
		fmt.Println(p)
	}
	// Output:
	// [42 43 45] 1
	// line 4: "shop 44": the id "shop 44" contains whitespace
}

// replay ids re-issues each valid id once, reports the invalid ones by line,
// and the projector brings their documents up to date.
func TestIDs(t *testing.T) {
	r, api := newShopRig(t)
	for _, id := range idSpan(1, 5) {
		api.Put(id, "shop "+id)
	}
	r.start()
	list, err := replay.ParseIDs("ids.txt", strings.NewReader("1\n2\nbad id\n3\n2\n4\n5\n"))
	if err != nil {
		t.Fatal(err)
	}
	var notes strings.Builder
	got, err := r.env.IDs(rigCtx(t), r.def, list, replay.Options{Rate: -1, Notes: &notes})
	if err != nil {
		t.Fatal(err)
	}
	if want := (replay.Counts{Reissued: 5, Invalid: 1, Duplicates: 1}); got.Counts != want {
		t.Errorf("Counts = %+v, want %+v", got.Counts, want)
	}
	if !strings.Contains(notes.String(), `skipped ids.txt line 3: "bad id"`) {
		t.Errorf("notes %q do not report line 3", notes.String())
	}
	if replayed := r.replayed(0); !slices.Equal(replayed, idSpan(1, 5)) {
		t.Errorf("re-issued %v", replayed)
	}
	r.waitConverged(idSpan(1, 5), 20*time.Second, "after replay ids")
	if !strings.Contains(got.Summary(), "ids "+r.def.Name+": re-issued 5 ids") || !strings.Contains(got.Summary(), "skipped invalid: 1") {
		t.Errorf("Summary:\n%s", got.Summary())
	}
}

// A missing stream, or one the projector never added the replay subject to,
// is a clear error.
func TestIDsWithoutTheStream(t *testing.T) {
	_, js := testenv.StartJetStream(t).Connect(t)
	def, err := projections.Parse("s.yaml", []byte(testenv.ShopDefinition("nostream", "http://127.0.0.1:1", false)), projections.Options{})
	if err != nil {
		t.Fatal(err)
	}
	env := &replay.Env{JetStream: js}
	_, err = env.IDs(rigCtx(t), def, replay.IDArgs([]string{"1"}), replay.Options{})
	if err == nil || !strings.Contains(err.Error(), "READSIDE_OWN does not exist") || !strings.Contains(err.Error(), "the projector creates it") {
		t.Errorf("without the stream: %v", err)
	}
	if _, err := stream.Ensure(rigCtx(t), js, stream.Config{}, def.TriggerSubjects()); err != nil {
		t.Fatal(err)
	}
	_, err = env.IDs(rigCtx(t), def, replay.IDArgs([]string{"1"}), replay.Options{})
	if err == nil || !strings.Contains(err.Error(), "does not capture readside.replay.nostream") {
		t.Errorf("without the replay subject: %v", err)
	}
}

// BenchmarkReissue measures how fast ids are re-issued without a rate limit:
// published to the embedded JetStream and stored (acknowledged), 50,000 per
// iteration.
func BenchmarkReissue(b *testing.B) {
	const n = 50000
	_, js := testenv.StartJetStream(b).Connect(b)
	def, err := projections.Parse("s.yaml", []byte(testenv.ShopDefinition("bench", "http://127.0.0.1:1", false)), projections.Options{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := stream.Ensure(ctx, js, stream.Config{}, def.AllSubjects()); err != nil {
		b.Fatal(err)
	}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = strconv.Itoa(i + 1)
	}
	var total time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		re := replay.NewReissuer(js, def, replay.ReissueOptions{Rate: -1, RunID: fmt.Sprintf("bench%d", i)})
		start := time.Now()
		if err := re.Reissue(ctx, ids); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
		if re.Done() != n {
			b.Fatalf("Done = %d, want %d", re.Done(), n)
		}
	}
	b.ReportMetric(float64(n*b.N)/total.Seconds(), "ids/s")
}

// BenchmarkLiveLagDuringReplay measures what a large replay costs live
// events: the lag from publishing a live event to its document being in
// Redis, for live events at a steady 100/s, with a real projector (default
// options) on the test shop API, Redis and Elasticsearch:
//
//   - alone;
//   - while a replay of 20,000 ids, re-issued without a rate limit, is
//     projected by the replay consumer;
//   - for comparison, while the same 20,000 ids are published as live events
//     (what a replay would cost without a consumer of its own).
//
// It reports the p50 and p99 of each phase (ms), and how long the 20,000
// took to project in the last two.
func BenchmarkLiveLagDuringReplay(b *testing.B) {
	const (
		bulk     = 20000
		liveRate = 100 // per second
	)
	for i := 0; i < b.N; i++ {
		r, api := newShopRig(b)
		for _, id := range idSpan(1, bulk) {
			api.Put(id, "shop "+id)
		}
		r.startWith(projector.Options{})
		bulkIDs := idSpan(1, bulk)

		alone := r.liveLag(b, "alone", liveRate, 5*time.Second, nil)

		// The replay: re-issue every id, and project them on the replay consumer.
		var took time.Duration
		during := r.liveLag(b, "replay", liveRate, 3*time.Second, func() {
			start := time.Now()
			if _, err := r.env.IDs(context.Background(), r.def, replay.IDArgs(bulkIDs), replay.Options{Rate: -1}); err != nil {
				b.Error(err)
			}
			if err := r.drained(stream.ReplayConsumerName(r.def.Name), 2*time.Minute); err != nil {
				b.Error(err)
			}
			took = time.Since(start)
		})

		// The same ids as live events, queued in front of the live ones.
		var tookLive time.Duration
		inline := r.liveLag(b, "inline", liveRate, 3*time.Second, func() {
			start := time.Now()
			for i, id := range bulkIDs {
				if _, err := r.js.PublishAsync(r.ns+".shop.changed."+id, nil); err != nil {
					b.Error(err)
					return
				}
				if i%1000 == 999 { // within PublishAsync's limit of pending acks
					<-r.js.PublishAsyncComplete()
				}
			}
			<-r.js.PublishAsyncComplete()
			if err := r.drained(stream.ConsumerName(r.def.Name), 2*time.Minute); err != nil {
				b.Error(err)
			}
			tookLive = time.Since(start)
		})

		b.ReportMetric(alone.p(50), "alone-p50-ms")
		b.ReportMetric(alone.p(99), "alone-p99-ms")
		b.ReportMetric(during.p(50), "replay-p50-ms")
		b.ReportMetric(during.p(99), "replay-p99-ms")
		b.ReportMetric(took.Seconds(), "replay-20k-s")
		b.ReportMetric(inline.p(50), "inline-p50-ms")
		b.ReportMetric(inline.p(99), "inline-p99-ms")
		b.ReportMetric(tookLive.Seconds(), "inline-20k-s")
		b.Logf("live lag alone: %s", alone)
		b.Logf("live lag during a replay of %d ids (projected in %s, %.0f ids/s): %s", bulk, took.Round(time.Millisecond), bulk/took.Seconds(), during)
		b.Logf("live lag behind %d live events (projected in %s): %s", bulk, tookLive.Round(time.Millisecond), inline)
	}
}

// lags are the lags of live events, in milliseconds.
type lags []float64

func (l lags) p(q float64) float64 {
	if len(l) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(l))
	return s[min(len(s)-1, int(float64(len(s))*q/100))]
}

func (l lags) String() string {
	return fmt.Sprintf("%d events, p50 %.1f ms, p99 %.1f ms, max %.1f ms", len(l), l.p(50), l.p(99), l.p(100))
}

// liveLag publishes live events for fresh shops at rate per second, while
// background runs (until it returns, and for at least min), and measures
// how long each takes to reach Redis, polling every 2 ms.
func (r *rig) liveLag(b *testing.B, phase string, rate int, atLeast time.Duration, background func()) lags {
	b.Helper()
	ctx := context.Background()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if background != nil {
			background()
		}
	}()
	var (
		mu      sync.Mutex
		pending = map[string]time.Time{}
		out     lags
		stop    = make(chan struct{})
		polled  = make(chan struct{})
	)
	api := r.shopAPI(b)
	go func() { // the poller
		defer close(polled)
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
			case <-stop:
				return
			}
			mu.Lock()
			ids := make([]string, 0, len(pending))
			for id := range pending {
				ids = append(ids, id)
			}
			mu.Unlock()
			if len(ids) == 0 {
				continue
			}
			got, err := r.redis.GetMany(ctx, ids)
			if err != nil {
				b.Error(err)
				return
			}
			now := time.Now()
			mu.Lock()
			for i, s := range got {
				if s != nil {
					out = append(out, float64(now.Sub(pending[ids[i]]).Microseconds())/1000)
					delete(pending, ids[i])
				}
			}
			mu.Unlock()
		}
	}()
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	start := time.Now()
	for n := 0; ; n++ {
		<-tick.C
		select {
		case <-done:
			if time.Since(start) >= atLeast {
				goto wait
			}
		default:
		}
		id := fmt.Sprintf("live-%s-%d", phase, n)
		api.Put(id, "live shop "+id)
		mu.Lock()
		pending[id] = time.Now()
		mu.Unlock()
		if _, err := r.js.Publish(ctx, r.ns+".shop.changed."+id, nil); err != nil {
			b.Fatal(err)
		}
	}
wait:
	deadline := time.Now().Add(time.Minute)
	for {
		mu.Lock()
		left := len(pending)
		mu.Unlock()
		if left == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	<-polled
	if len(pending) > 0 {
		b.Fatalf("%s: %d live events never reached Redis", phase, len(pending))
	}
	sort.Float64s(out)
	return out
}

// shopAPI is the rig's fake shop API (newShopRig keeps it in want).
func (r *rig) shopAPI(b *testing.B) *testenv.ShopAPI {
	b.Helper()
	if r.api == nil {
		b.Fatal("not a shop rig")
	}
	return r.api
}

// drained waits until the durable consumer has nothing pending or unacked.
func (r *rig) drained(consumer string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		c, err := r.js.Consumer(context.Background(), r.streams.StreamOf(consumer), consumer)
		if err != nil {
			return err
		}
		info, err := c.Info(context.Background())
		if err != nil {
			return err
		}
		if info.NumPending == 0 && info.NumAckPending == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("consumer %s not drained after %s: %d pending, %d unacked", consumer, d, info.NumPending, info.NumAckPending)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
