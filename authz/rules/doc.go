// Package rules decides requests for applications that have no MLflow-style
// resource model (Phoenix, Kiali): an ordered list of path rules, and the
// trace-writer exception that lets mTLS OTLP exporters POST /v1/traces with
// no token in front of any policy.
//
// A rule-based application is built from its YAML once per configuration
// load:
//
//	rs, err := rules.New(cfg.Rules)
//	...
//	pol, err := rules.NewTraceWriters(cfg.TraceWriters, rs)
//	app := &authz.App{Name: "phoenix", Hosts: hosts, Policy: pol}
//
// Everything is validated and compiled at construction; deciding a request
// does not allocate. The identity headers the upstream receives are the
// upstream package's job.
package rules
