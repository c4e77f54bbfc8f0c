// Package extproc is Envoy's ext_proc filter for MLflow: it removes from
// MLflow's search and list answers the rows the caller may not read, and
// narrows runs/search to the readable experiments, as MLflow's own
// after-request handlers do (mlflow/server/auth/__init__.py). ext_authz
// sees only the request; this filter, served by the same binary on the same
// gRPC port, sees the response.
//
// One HTTP request is one gRPC stream (envoy.service.ext_proc.v3.
// ExternalProcessor/Process), and its walk is:
//
//	request headers ─► identify (authz.Engine.Identify: the same
//	                   authenticators and headers as Check)
//	                 ─► route (mlflow.Policy.Route)
//	                 ─► plan, sent back as mode_override:
//	                      nothing more    admins, unfiltered routes, a
//	                                      point read of a readable resource
//	                      request body    runs/search, /graphql (narrowing)
//	                      response        every filtered listing: headers,
//	                                      then the body buffered
//	request body   ─► narrow.go, graphql.go: experiment ids cut to the
//	                  readable ones (403 when none is), model versions marked
//	response headers ─► only a 200 of uncompressed JSON goes on; an error
//	                  status passes untouched
//	response body  ─► filters.go: each row decided by mlflow.Rows, the same
//	                  predicate as the point route; json.go edits the body
//	                  without re-encoding a kept byte
//
// It fails closed. Anything it cannot read (a body cut short, not JSON,
// compressed, larger than ext_proc.max_body_bytes, a duplicate key), a
// store that does not answer, a passed deadline or a panic ends the request
// with an immediate 503 in MLflow's error shape, with a reason; never with
// the unfiltered body. It never closes a stream cleanly before its work is
// done: Envoy reads a clean close as "continue without the server".
//
// Usage (the server package wires it beside Check):
//
//	filter := extproc.NewServer(engine, logger, metrics, extproc.Options{})
//	gs := extauthz.NewGRPCServer(extauthz.GRPCOptions{Server: check, Register: filter.Register})
package extproc
