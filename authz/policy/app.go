package policy

import (
	"github.com/mlflow-authz/mlflow-authz/authz"
)

// AppConfig is the policy part of a rule-based application's YAML. The
// top-level configuration embeds it next to the application's name and
// hosts.
type AppConfig struct {
	// Rules decide the application's requests, first match wins.
	Rules []RuleConfig `yaml:"rules"`
	// TraceWriters are the mTLS peers (full SPIFFE IDs) allowed to
	// POST /v1/traces without a token.
	TraceWriters []string `yaml:"trace_writers"`
	// Upstream says how the application learns the caller's identity.
	Upstream UpstreamConfig `yaml:"upstream"`
}

// Compile builds the policy and upstream that cfg describes.
func Compile(cfg AppConfig, opts ...UpstreamOption) (authz.Policy, authz.Upstream, error) {
	rules, err := NewRules(cfg.Rules)
	if err != nil {
		return nil, nil, err
	}
	pol, err := NewTraceWriters(cfg.TraceWriters, rules)
	if err != nil {
		return nil, nil, err
	}
	up, err := NewUpstream(cfg.Upstream, opts...)
	if err != nil {
		return nil, nil, err
	}
	return pol, up, nil
}
