# Readside. `make test` starts the test services (scripts/testenv.sh, no Docker; instant when they
# already run) and runs vet and the whole suite against them:
#   a Redis (6391) and an Elasticsearch 8.19 node (9251) of the project's own;
#   a Redis Cluster of 3 masters + 3 replicas (7101-7106) and a 2-node Elasticsearch cluster
#   (9261 master+data, 9262 data only), which fault tests kill, stop and restart
#   (internal/testenv/cluster.go). `bash scripts/testenv.sh status` tells how each is.
# Ports can be moved with READSIDE_TEST_REDIS_PORT, READSIDE_TEST_ES_PORT,
# READSIDE_TEST_REDIS_CLUSTER_PORT (first of 6) and READSIDE_TEST_ES_CLUSTER_PORT (first of 2),
# the state dir with READSIDE_TEST_STATE (env or make vars).
# Then deploy/ (a module of its own: the Kubernetes API types stay out of go.mod) checks the
# Dockerfile, the Kubernetes manifests, the alert rules (promtool, which testenv.sh installs)
# and the Grafana dashboard. -mod=mod: deploy/go.mod takes the main module (replace ../) with
# its requirements, which move when the main module's do; commit what it changes in deploy/go.*.

READSIDE_TEST_STATE ?= /var/lib/readside
READSIDE_TEST_REDIS_PORT ?= 6391
READSIDE_TEST_ES_PORT ?= 9251
READSIDE_TEST_REDIS_CLUSTER_PORT ?= 7101
READSIDE_TEST_ES_CLUSTER_PORT ?= 9261
export READSIDE_TEST_STATE READSIDE_TEST_REDIS_PORT READSIDE_TEST_ES_PORT
export READSIDE_TEST_REDIS_CLUSTER_PORT READSIDE_TEST_ES_CLUSTER_PORT
export READSIDE_TEST_REDIS_ADDR ?= 127.0.0.1:$(READSIDE_TEST_REDIS_PORT)
export READSIDE_TEST_ES_URL ?= http://127.0.0.1:$(READSIDE_TEST_ES_PORT)
# The cluster's addresses, as the tests get them (comma-separated).
export READSIDE_TEST_REDIS_CLUSTER ?= $(shell p=$(READSIDE_TEST_REDIS_CLUSTER_PORT); \
	for i in 0 1 2 3 4 5; do echo 127.0.0.1:$$((p + i)); done | paste -sd, -)
export READSIDE_TEST_ES_CLUSTER ?= http://127.0.0.1:$(READSIDE_TEST_ES_CLUSTER_PORT),http://127.0.0.1:$(shell echo $$(($(READSIDE_TEST_ES_CLUSTER_PORT) + 1)))

TESTENV := bash scripts/testenv.sh

.PHONY: test testenv testenv-down benchtools bench querybench build demo

test: testenv
	go vet ./...
	go test -count=1 -timeout 14m ./...
	cd deploy && go vet -mod=mod ./... && go test -mod=mod -count=1 -timeout 15m ./...

testenv:
	$(TESTENV) up

testenv-down:
	$(TESTENV) down

# Tools the benchmarks need besides Go: wrk (apt-get, when missing).
benchtools:
	bash scripts/benchtools.sh

bench: testenv querybench
	go run ./cmd/bench

# The query API against its baseline, each a process of its own, loaded by wrk (about 6 minutes).
# QUERYBENCH_FLAGS passes flags, e.g. QUERYBENCH_FLAGS="-scenarios detail,overload -rounds 2".
querybench: testenv benchtools
	go run ./cmd/querybench $(QUERYBENCH_FLAGS)

build:
	go build ./...

# The whole example in one process on embedded backends (NATS JetStream,
# bbolt, bleve; data under .demo/): needs only Go. DEMO_FLAGS passes flags,
# e.g. DEMO_FLAGS="-redis-addr 127.0.0.1:6391 -es-urls http://127.0.0.1:9251".
# The binary is built, then exec'd in place of the recipe's shell: Ctrl-C
# reaches the demo itself, which stops cleanly with status 0, so make has no
# error to report (go run would report the signal as one).
demo:
	go build -o .demo/bin/demo ./examples/shopdisplay/cmd/demo && exec .demo/bin/demo $(DEMO_FLAGS)
