package projector

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the projector's Prometheus metrics, labelled by projection.
type Metrics struct {
	Events       *prometheus.CounterVec   // events by outcome: acked, dead_lettered, retried, naked, partial, rechecked
	Fetches      *prometheus.CounterVec   // source fetches by result: ok, not_found, bad, unavailable
	Writes       *prometheus.CounterVec   // batch writes by store and result
	WriteSeconds *prometheus.HistogramVec // time of one batch write, by store
	BatchSeconds *prometheus.HistogramVec // time to fetch, build and write one batch
	Held         *prometheus.GaugeVec     // messages held: pending and in flight
	Paused       *prometheus.GaugeVec     // 1 while pulling is paused because a dependency fails
	PullErrors   *prometheus.CounterVec   // pulls from JetStream that failed
	SettleErrors *prometheus.CounterVec   // acks, naks, in-progress and terms JetStream did not take, by op
	// EventToStore: from the stream timestamp of the newest event a written
	// document answers to its write, by projection and consumer kind.
	EventToStore *prometheus.HistogramVec
}

// NewMetrics creates the metrics and registers them on reg when it is not nil.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "readside_projector_events_total", Help: "Events settled, by outcome.",
		}, []string{"projection", "outcome"}),
		Fetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "readside_projector_fetches_total", Help: "Source fetches, by result.",
		}, []string{"projection", "result"}),
		Writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "readside_projector_writes_total", Help: "Batch writes, by store and result.",
		}, []string{"projection", "store", "result"}),
		WriteSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "readside_projector_write_seconds", Help: "Time of one batch write to a store (all the batch's documents), by store.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"projection", "store"}),
		BatchSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "readside_projector_batch_seconds", Help: "Time to fetch, build and write one batch.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}, []string{"projection"}),
		Held: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "readside_projector_held_messages", Help: "Messages held, pending or in flight.",
		}, []string{"projection"}),
		Paused: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "readside_projector_paused", Help: "1 while pulling is paused because a dependency fails.",
		}, []string{"projection"}),
		PullErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "readside_projector_pull_errors_total", Help: "Pulls from the JetStream consumer that failed (stream or consumer unavailable, NATS down).",
		}, []string{"projection"}),
		SettleErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "readside_projector_settle_errors_total", Help: "Acks, naks, in-progress signals and terminations JetStream did not take (the event is delivered again), by op.",
		}, []string{"projection", "op"}),
		EventToStore: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "readside_projector_event_to_store_seconds",
			Help: "From the stream timestamp of the newest event a document answers to the document written in every store and its events acknowledged, by consumer (live, reproject, replay, retry).",
			// 5 ms to an hour: a backlog after an outage is minutes old.
			Buckets: prometheus.ExponentialBucketsRange(0.005, 3600, 18),
		}, []string{"projection", "consumer"}),
	}
	if reg != nil {
		reg.MustRegister(m.Events, m.Fetches, m.Writes, m.WriteSeconds, m.BatchSeconds, m.Held, m.Paused, m.PullErrors, m.SettleErrors, m.EventToStore)
	}
	return m
}
