package authz

import (
	"net/url"
	"strings"
)

// queryInline is how many query parameters a Request holds without an
// allocation of their own: MLflow's REST calls name one to three.
const queryInline = 4

// queryFastMax bounds the parameters parsed here; a longer query goes to
// url.ParseQuery, whose own limit (GODEBUG urlmaxqueryparams) then applies
// unchanged.
const queryFastMax = 256

// Query is a request's parsed query string: exactly what url.ParseQuery
// returns, held as the decoded key/value pairs in their order instead of a
// map, so that parsing the usual short query allocates nothing. Per key,
// the values keep their order, as in url.Values; the order across keys is
// not part of its meaning.
type Query struct {
	pairs []queryPair
}

type queryPair struct {
	key string
	// val is an array so that a key given once can be returned as a
	// one-element slice without an allocation.
	val [1]string
}

// parseQuery parses raw as url.ParseQuery does, into the pairs' backing
// array buf. Any query that url.ParseQuery refuses (a ";" separator, a bad
// escape) or that is unusually long is parsed by url.ParseQuery itself, so
// that the values and the error are its own.
func parseQuery(raw string, buf []queryPair) (Query, error) {
	if strings.IndexByte(raw, ';') >= 0 || strings.Count(raw, "&") >= queryFastMax {
		return slowQuery(raw)
	}
	q := Query{pairs: buf[:0]}
	for rest := raw; rest != ""; {
		var kv string
		kv, rest, _ = strings.Cut(rest, "&")
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		key, err := url.QueryUnescape(k)
		if err != nil {
			return slowQuery(raw)
		}
		val, err := url.QueryUnescape(v)
		if err != nil {
			return slowQuery(raw)
		}
		q.pairs = append(q.pairs, queryPair{key: key, val: [1]string{val}})
	}
	return q, nil
}

// slowQuery is url.ParseQuery's answer, error and all, as a Query.
func slowQuery(raw string) (Query, error) {
	vs, err := url.ParseQuery(raw)
	var q Query
	for k, list := range vs {
		for _, v := range list {
			q.pairs = append(q.pairs, queryPair{key: k, val: [1]string{v}})
		}
	}
	return q, err
}

// Empty reports whether the query holds no parameter at all.
func (q Query) Empty() bool {
	return len(q.pairs) == 0
}

// Has reports whether the query names key, with or without a value.
func (q Query) Has(key string) bool {
	for i := range q.pairs {
		if q.pairs[i].key == key {
			return true
		}
	}
	return false
}

// Count is how many times the query gives key.
func (q Query) Count(key string) int {
	n := 0
	for i := range q.pairs {
		if q.pairs[i].key == key {
			n++
		}
	}
	return n
}

// Get returns key's first value, or "" (url.Values.Get).
func (q Query) Get(key string) string {
	for i := range q.pairs {
		if q.pairs[i].key == key {
			return q.pairs[i].val[0]
		}
	}
	return ""
}

// Values returns key's values in order, nil when the query does not name
// it (url.Values[key]). The slice may share memory with the Request: do
// not modify it. Only a repeated key allocates.
func (q Query) Values(key string) []string {
	first := -1
	for i := range q.pairs {
		if q.pairs[i].key != key {
			continue
		}
		if first >= 0 {
			return q.collect(key, first)
		}
		first = i
	}
	if first < 0 {
		return nil
	}
	return q.pairs[first].val[:]
}

func (q Query) collect(key string, from int) []string {
	var out []string
	for i := from; i < len(q.pairs); i++ {
		if q.pairs[i].key == key {
			out = append(out, q.pairs[i].val[0])
		}
	}
	return out
}

// URLValues returns the query as url.Values, in a new map.
func (q Query) URLValues() url.Values {
	vs := url.Values{}
	for _, p := range q.pairs {
		vs[p.key] = append(vs[p.key], p.val[0])
	}
	return vs
}
