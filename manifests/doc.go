// Package manifests holds the tests that keep mlflow-authz's Kubernetes and
// Istio manifests installable: they render every kustomization with
// kustomize's Go API, decode each object strictly into the upstream
// Kubernetes, Istio and Prometheus Operator types (an unknown or misspelled
// field fails), decode the meshConfig fragment into Istio's MeshConfig, and
// check the references between the objects, the service's configuration,
// the Dockerfile and docs/install.md.
//
// It is a Go module of its own so that the service binary never carries
// kustomize, Kubernetes or Istio: `make test` runs it with
// `cd manifests && go test ./...`.
package manifests
