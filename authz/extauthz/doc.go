// Package extauthz is the Envoy ext_authz v3 gRPC server: the only package
// that knows Envoy's protos. It turns a CheckRequest into an authz.Request,
// asks an authz.Checker, and turns the authz.Decision back into a
// CheckResponse. Over gRPC, the Check handler reads the few fields it needs
// straight from the request's wire bytes with proto.Unmarshal's rules
// (wire.go), rather than building the whole generated message; in-process
// callers pass the generated message to Server.Check.
//
// Two rules shape everything here:
//
//   - Every CheckResponse sets status explicitly. Envoy reads an unset status
//     as code 0, which means allow.
//   - A deny is always a successful RPC carrying a non-OK status, never a gRPC
//     error, even when we could not decide (panic, deadline, store down). An
//     RPC error takes Envoy's error path, where an operator's failOpen: true
//     would turn our outage into an open door.
//
// Usage:
//
//	srv := extauthz.NewServer(engine, logger, extauthz.NewMetrics(prometheus.DefaultRegisterer))
//	health := extauthz.NewHealth()
//	gs := extauthz.NewGRPCServer(extauthz.GRPCOptions{Server: srv, Health: health})
//	health.SetServing(true)
//	_ = gs.Serve(listener)
package extauthz
