// Package integration holds the end-to-end tests of mlflow-authz. Each test
// starts the real service in-process with server.Start from a YAML
// configuration (parsed by config.Parse, so the configuration format is
// exercised too), against a throwaway PostgreSQL seeded with MLflow's real
// tracking DDL and plain SQL INSERTs, a development OpenID issuer serving a
// real JWKS over HTTP, and a gRPC listener on 127.0.0.1:0. Requests go in
// through a real gRPC client as CheckRequests built exactly as Istio sends
// them (extauthz.Call).
//
// The package has no non-test code; `go test ./integration/` runs it and
// needs PostgreSQL server binaries (or MLFLOW_AUTHZ_TEST_DATABASE_URL; the
// store outage test is skipped against an external server).
package integration
