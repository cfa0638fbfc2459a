# Readside. `make test` starts the test services (scripts/testenv.sh: a Redis and an
# Elasticsearch 8.19 of the project's own, no Docker) and runs vet and the whole suite.
# Ports can be moved with READSIDE_TEST_REDIS_PORT and READSIDE_TEST_ES_PORT (env or make vars).

READSIDE_TEST_REDIS_PORT ?= 6391
READSIDE_TEST_ES_PORT ?= 9251
export READSIDE_TEST_REDIS_PORT READSIDE_TEST_ES_PORT
export READSIDE_TEST_REDIS_ADDR ?= 127.0.0.1:$(READSIDE_TEST_REDIS_PORT)
export READSIDE_TEST_ES_URL ?= http://127.0.0.1:$(READSIDE_TEST_ES_PORT)

TESTENV := bash scripts/testenv.sh

.PHONY: test testenv testenv-down bench querybench build demo

test: testenv
	go vet ./...
	go test -count=1 -timeout 14m ./...

testenv:
	$(TESTENV) up

testenv-down:
	$(TESTENV) down

bench: testenv querybench
	go run ./cmd/bench

querybench: testenv
	go run ./cmd/querybench

build:
	go build ./...

# The whole example in one process on embedded backends (NATS JetStream,
# bbolt, bleve; data under .demo/): needs only Go. DEMO_FLAGS passes flags,
# e.g. DEMO_FLAGS="-redis-addr 127.0.0.1:6391 -es-urls http://127.0.0.1:9251".
demo:
	go run ./examples/shopdisplay/cmd/demo $(DEMO_FLAGS)
