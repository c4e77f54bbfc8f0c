package integration

import (
	"strings"
	"testing"
	"unicode"

	"github.com/stretchr/testify/assert"
)

// promqlRefs is what one PromQL expression refers to: the metric names, the
// label names (in matchers and in by/without/on/ignoring/group_* lists) and
// the literal values each label is matched against.
type promqlRefs struct {
	Metrics []string
	Labels  []string
	// Values maps a label to the values it is matched against; a regex
	// matcher contributes each alternative of a plain "a|b|c" regex.
	Values map[string][]string
}

// promqlKeywords are PromQL's reserved words that are not metric names.
var promqlKeywords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"bool": true, "and": true, "or": true, "unless": true, "offset": true, "atan2": true,
	"inf": true, "nan": true,
}

// promqlLabelLists open a parenthesised list of label names.
var promqlLabelLists = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

// parsePromQL lexes expr far enough to list its references. It is not a
// full parser: it knows identifiers, strings, numbers, durations, label
// matchers, label lists, function calls and Grafana's $variables, which is
// all a dashboard or alert needs.
func parsePromQL(expr string) promqlRefs {
	refs := promqlRefs{Values: map[string][]string{}}
	s := []rune(expr)
	i := 0
	isIdentStart := func(r rune) bool { return r == '_' || r == ':' || unicode.IsLetter(r) }
	isIdent := func(r rune) bool { return isIdentStart(r) || unicode.IsDigit(r) }
	skipSpace := func(j int) int {
		for j < len(s) && unicode.IsSpace(s[j]) {
			j++
		}
		return j
	}
	ident := func(j int) (string, int) {
		k := j
		for k < len(s) && isIdent(s[k]) {
			k++
		}
		return string(s[j:k]), k
	}
	str := func(j int) (string, int) { // s[j] is the quote
		q := s[j]
		var b strings.Builder
		k := j + 1
		for k < len(s) && s[k] != q {
			if s[k] == '\\' && q != '`' && k+1 < len(s) {
				k++
			}
			b.WriteRune(s[k])
			k++
		}
		return b.String(), k + 1
	}
	for i < len(s) {
		r := s[i]
		switch {
		case unicode.IsSpace(r):
			i++
		case r == '"' || r == '\'' || r == '`':
			_, i = str(i)
		case r == '$': // Grafana variable: $name, ${name}, $__rate_interval
			i++
			if i < len(s) && s[i] == '{' {
				for i < len(s) && s[i] != '}' {
					i++
				}
				i++
			} else {
				_, i = ident(i)
			}
		case r == '[': // range or subquery duration
			for i < len(s) && s[i] != ']' {
				i++
			}
			i++
		case r == '{': // label matchers
			i++
			for {
				i = skipSpace(i)
				if i >= len(s) || s[i] == '}' {
					i++
					break
				}
				if s[i] == ',' {
					i++
					continue
				}
				name, j := ident(i)
				if name == "" { // not a matcher we understand: stop here
					i++
					continue
				}
				refs.Labels = append(refs.Labels, name)
				j = skipSpace(j)
				op := ""
				for j < len(s) && strings.ContainsRune("=!~", s[j]) {
					op += string(s[j])
					j++
				}
				j = skipSpace(j)
				if j < len(s) && (s[j] == '"' || s[j] == '\'' || s[j] == '`') {
					v, k := str(j)
					j = k
					if op == "=~" || op == "!~" {
						refs.Values[name] = append(refs.Values[name], strings.Split(v, "|")...)
					} else {
						refs.Values[name] = append(refs.Values[name], v)
					}
				}
				i = j
			}
		case unicode.IsDigit(r) || r == '.':
			for i < len(s) && (isIdent(s[i]) || s[i] == '.') {
				i++
			}
		case isIdentStart(r):
			name, j := ident(i)
			k := skipSpace(j)
			switch {
			case promqlLabelLists[name] && k < len(s) && s[k] == '(':
				k++
				for k < len(s) && s[k] != ')' {
					if isIdentStart(s[k]) {
						var l string
						l, k = ident(k)
						refs.Labels = append(refs.Labels, l)
						continue
					}
					k++
				}
				i = k + 1
			case promqlKeywords[name]:
				i = j
			case k < len(s) && s[k] == '(': // a function or aggregation
				i = j
			case k < len(s) && isIdentStart(s[k]) && promqlAggregationClause(ident(k)):
				i = j // "sum by (le) (…)": an aggregation
			default:
				refs.Metrics = append(refs.Metrics, name)
				i = j
			}
		default:
			i++
		}
	}
	return refs
}

// promqlAggregationClause reports whether the identifier that follows a
// name makes it an aggregation ("sum by (…) (…)").
func promqlAggregationClause(next string, _ int) bool {
	return next == "by" || next == "without"
}

func TestParsePromQL(t *testing.T) {
	r := parsePromQL(`histogram_quantile(0.99, sum by (le, app) (rate(mlflow_authz_check_duration_seconds_bucket{app=~"$app"}[$__rate_interval]))) > 0.4`)
	assert.Equal(t, []string{"mlflow_authz_check_duration_seconds_bucket"}, r.Metrics)
	assert.ElementsMatch(t, []string{"le", "app", "app"}, r.Labels)

	r = parsePromQL(`sum by (app) (rate(x_total{decision="deny", reason=~"unavailable|deadline_exceeded"}[5m])) / sum(rate(y_total[5m])) > bool 0.01 unless on (pod) z offset 5m`)
	assert.Equal(t, []string{"x_total", "y_total", "z"}, r.Metrics)
	assert.Equal(t, []string{"deny"}, r.Values["decision"])
	assert.Equal(t, []string{"unavailable", "deadline_exceeded"}, r.Values["reason"])
	assert.ElementsMatch(t, []string{"app", "decision", "reason", "pod"}, r.Labels)

	r = parsePromQL(`max by (issuer) (time() - jwks_seconds{namespace="a b", x!~'q'}) == 0`)
	assert.Equal(t, []string{"jwks_seconds"}, r.Metrics)
	assert.Equal(t, []string{"a b"}, r.Values["namespace"])
}
