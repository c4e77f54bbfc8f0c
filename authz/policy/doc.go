// Package policy decides requests for applications that have no MLflow-style
// resource model (Phoenix, Kiali): an ordered list of path rules, a
// trace-writer exception for mTLS OTLP exporters, and the identity headers
// each upstream understands.
//
// A rule-based application is built from its YAML once per configuration
// load:
//
//	rules, err := policy.NewRules(cfg.Rules)
//	...
//	pol, err := policy.NewTraceWriters(cfg.TraceWriters, rules)
//	up, err := policy.NewUpstream(cfg.Upstream)
//	app := &authz.App{Name: "phoenix", Hosts: hosts, Policy: pol, Upstream: up}
//
// or, equivalently, policy.Compile(cfg). Everything is validated and compiled
// at construction; deciding a request does not allocate.
package policy
