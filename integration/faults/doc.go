// Package faults runs the built mlflow-authz binary (`mlflow-authz serve`)
// as real processes against a real PostgreSQL and a real JWKS over HTTP, and
// breaks things underneath it: the database stopped under load, a lock that
// outlasts the statement timeout, a check deadline shorter than a query, a
// JWKS endpoint that goes down, rotates its key or is flooded with forged
// key ids, and two replicas that must both see a revoke made with plain SQL
// within a second.
//
// The package has no non-test code. `go test ./integration/faults/` runs the
// short versions (part of `make test`). Set MLFLOW_AUTHZ_LONG=1 for the long
// variants. Tests that stop PostgreSQL stop the one server every test of
// this binary shares, so no test here calls t.Parallel.
package faults
