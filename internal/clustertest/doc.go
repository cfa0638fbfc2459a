// Package clustertest is the scale-out suite: several projector replicas and
// a query API on the real clusters that `make testenv` starts (a Redis Cluster
// of 3 masters and 3 replicas, a 2-node Elasticsearch cluster; NATS JetStream
// embedded, as a cluster where the test is about NATS), with churn that
// deletes and re-creates entities while nodes stall, die and come back. Every
// test ends by checking every id in both stores against the source.
//
// It holds tests only.
package clustertest
