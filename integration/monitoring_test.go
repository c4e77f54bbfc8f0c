package integration

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// Files the operations pictures live in, relative to this package.
const (
	dashboardFile       = "../manifests/monitoring/grafana-dashboard.json"
	prometheusRuleFile  = "../manifests/monitoring/prometheusrule.yaml"
	troubleshootingFile = "../docs/troubleshooting.md"
)

// targetLabels are added by Prometheus (and the Prometheus Operator) when it
// scrapes, so queries may use them although the service does not export
// them.
var targetLabels = []string{"pod", "namespace", "instance", "job", "container", "endpoint", "service"}

// exported is what the running service exports: each metric family's type
// and, per label, the values seen.
type exported struct {
	types  map[string]dto.MetricType
	labels map[string]map[string]map[string]bool // family → label → values
}

func exportedBy(fams map[string]*dto.MetricFamily) exported {
	e := exported{types: map[string]dto.MetricType{}, labels: map[string]map[string]map[string]bool{}}
	for name, f := range fams {
		e.types[name] = f.GetType()
		e.labels[name] = map[string]map[string]bool{}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if e.labels[name][l.GetName()] == nil {
					e.labels[name][l.GetName()] = map[string]bool{}
				}
				e.labels[name][l.GetName()][l.GetValue()] = true
			}
		}
	}
	return e
}

// family resolves a series name as PromQL sees it to the family that
// exports it: histograms add _bucket, _sum and _count.
func (e exported) family(series string) (string, bool) {
	if _, ok := e.types[series]; ok {
		return series, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(series, suffix)
		if !ok {
			continue
		}
		switch e.types[base] {
		case dto.MetricType_HISTOGRAM:
			return base, true
		case dto.MetricType_SUMMARY:
			return base, suffix != "_bucket"
		}
	}
	return "", false
}

// reasonCodes are the reason codes docs/troubleshooting.md has an entry
// for; authz's TestEveryReasonIsDocumented holds that list equal to the
// codes declared in the source.
func reasonCodes(t *testing.T) map[string]bool {
	t.Helper()
	data, err := os.ReadFile(troubleshootingFile)
	require.NoError(t, err)
	codes := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^### `([a-z_]+)`").FindAllStringSubmatch(string(data), -1) {
		codes[m[1]] = true
	}
	require.NotEmpty(t, codes, "no reason entries in %s", troubleshootingFile)
	return codes
}

// query is one PromQL expression and where it is.
type query struct{ where, expr string }

var labelValuesQuery = regexp.MustCompile(`^\s*label_values\(\s*(.+?)\s*,\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$`)

// dashboardQueries returns every expression in the Grafana dashboard: panel
// targets (at any depth, rows included) and template variable queries.
func dashboardQueries(t *testing.T) []query {
	t.Helper()
	data, err := os.ReadFile(dashboardFile)
	require.NoError(t, err)
	var dash map[string]any
	require.NoError(t, json.Unmarshal(data, &dash))
	var out []query
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			if e, ok := v["expr"].(string); ok {
				out = append(out, query{path + ".expr", e})
			}
			for k, c := range v {
				walk(path+"."+k, c)
			}
		case []any:
			for i, c := range v {
				walk(path+"["+strconv.Itoa(i)+"]", c)
			}
		}
	}
	walk("panels", dash["panels"])
	vars, _ := dash["templating"].(map[string]any)["list"].([]any)
	for _, v := range vars {
		v := v.(map[string]any)
		if v["type"] != "query" {
			continue
		}
		q := v["query"]
		if m, ok := q.(map[string]any); ok {
			q = m["query"]
		}
		out = append(out, query{"templating." + v["name"].(string), q.(string)})
	}
	return out
}

// ruleQueries returns every alert's expression in the PrometheusRule.
func ruleQueries(t *testing.T) []query {
	t.Helper()
	data, err := os.ReadFile(prometheusRuleFile)
	require.NoError(t, err)
	var rule struct {
		Spec struct {
			Groups []struct {
				Rules []struct {
					Alert string `yaml:"alert"`
					Expr  string `yaml:"expr"`
				} `yaml:"rules"`
			} `yaml:"groups"`
		} `yaml:"spec"`
	}
	require.NoError(t, yaml.Unmarshal(data, &rule))
	var out []query
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			out = append(out, query{"alert " + r.Alert, r.Expr})
		}
	}
	require.NotEmpty(t, out)
	return out
}

// TestMonitoringQueriesNameExportedMetrics runs the service, makes it
// decide an allow, a deny and a dry-run deny, and scrapes it: every metric
// the Grafana dashboard and the alerts query must be one it exports, every
// label one those metrics carry, and every reason a real reason code.
func TestMonitoringQueriesNameExportedMetrics(t *testing.T) {
	h := startWatching(t)
	target := "/api/2.0/mlflow/experiments/get?experiment_id=1"
	requireDecision(t, h.check(t, h.call(hostMLflow, "alice", "GET", target, "")), true, 200, "allowed")
	requireDecision(t, h.check(t, h.call(hostMLflow, "mallory", "GET", target, "")), false, 403, "permission_denied")
	res := h.check(t, h.call(hostDryRun, "mallory", "GET", target, ""))
	require.True(t, res.Allowed, "dry run allows")
	exp := exportedBy(h.scrape(t))
	reasons := reasonCodes(t)

	queries := append(dashboardQueries(t), ruleQueries(t)...)
	require.Greater(t, len(queries), 10)
	for _, q := range queries {
		expr, varLabel := q.expr, ""
		if m := labelValuesQuery.FindStringSubmatch(expr); m != nil {
			expr, varLabel = m[1], m[2]
		}
		refs := parsePromQL(expr)
		if varLabel != "" {
			refs.Labels = append(refs.Labels, varLabel)
		}
		require.NotEmpty(t, refs.Metrics, "%s: no metric in %q", q.where, q.expr)
		var fams []string
		labels := map[string]bool{}
		for _, l := range targetLabels {
			labels[l] = true
		}
		for _, m := range refs.Metrics {
			f, ok := exp.family(m)
			if !assert.True(t, ok, "%s: %q is not a metric mlflow-authz exports (query %q)", q.where, m, q.expr) {
				continue
			}
			fams = append(fams, f)
			for l := range exp.labels[f] {
				labels[l] = true
			}
			if strings.HasSuffix(m, "_bucket") {
				labels["le"] = true
			}
		}
		for _, l := range refs.Labels {
			assert.True(t, labels[l], "%s: label %q is on none of %v (query %q)", q.where, l, refs.Metrics, q.expr)
		}
		for l, values := range refs.Values {
			for _, v := range values {
				if strings.ContainsAny(v, "$.*+?()[]") {
					continue // a variable or a real regex: nothing literal to check
				}
				if l == "reason" {
					assert.True(t, reasons[v], "%s: %q is not a reason code (query %q)", q.where, v, q.expr)
					continue
				}
				if l != "decision" && l != "cache" && l != "result" {
					continue // app, issuer and target labels depend on the installation
				}
				seen := false
				for _, f := range fams {
					seen = seen || exp.labels[f][l][v]
				}
				assert.True(t, seen, "%s: %s=%q is never exported (seen: %v)", q.where, l, v, observed(exp, fams, l))
			}
		}
	}
}

func observed(e exported, fams []string, label string) []string {
	var out []string
	for _, f := range fams {
		for v := range e.labels[f][label] {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
