// Package deploy holds no code: its tests check what deploys Readside, in `make test`
// (cd deploy && go test ./...), with what runs without a cluster or a Docker daemon.
//
//   - The Dockerfile (image_test.go): its go build line, run as written, makes static
//     binaries that run as a non-root user and print the version given.
//   - The Kubernetes manifests under kubernetes/ (kubernetes_test.go): every
//     kustomization built with kustomize's krusty, every object decoded strictly into
//     the Kubernetes API types, and every flag, environment variable and port the
//     containers use checked against the binaries built from the Dockerfile.
//   - The Prometheus rules and the Grafana dashboard (prometheus_test.go,
//     metrics_test.go): promtool check and test rules, and every metric they name
//     exported by the daemons.
//
// It is a module of its own so that the main module does not carry the Kubernetes
// API types.
package deploy
