package postgres

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/mlflow-authz/mlflow-authz/store"
	"github.com/mlflow-authz/mlflow-authz/store/internal/mlflowdb"
)

var _ store.BatchReader = (*Store)(nil)

// batchQuery is one kind's batch query and the SQL types of its arguments
// (GrantArgTypes), one array each.
type batchQuery struct {
	sql   string
	types []string
}

// batchKey is the alias of the keys' table in a batch query.
const batchKey = "batch_key"

// param matches a bind parameter of a Grants query.
var param = regexp.MustCompile(`\$([0-9]+)`)

// batchQueries builds, for each kind, the Grants query of many keys in one
// statement: the keys' arguments arrive as one array per argument, are
// unnested in order (WITH ORDINALITY numbers them from 1), and each key runs
// the very SQL of its single-key query, laterally, with $n read from the
// key's nth column. Its rows are the key's number, then a Grants row.
//
// One statement instead of one per key is what keeps refresh-ahead cheap
// for the database: PostgreSQL pays its per-statement cost (bind, executor
// start-up, one result set) once per batch, not once per key.
func batchQueries(q mlflowdb.Queries) (map[store.ResourceKind]batchQuery, error) {
	out := make(map[store.ResourceKind]batchQuery, len(q.Grants))
	for kind, sql := range q.Grants {
		types := q.GrantArgTypes(kind)
		arrays, cols := make([]string, len(types)), make([]string, len(types))
		for i, t := range types {
			arrays[i] = "$" + strconv.Itoa(i+1) + "::" + t + "[]"
			cols[i] = "a" + strconv.Itoa(i+1)
		}
		var bad string
		inner := param.ReplaceAllStringFunc(sql, func(p string) string {
			if n, _ := strconv.Atoi(p[1:]); n < 1 || n > len(types) {
				bad = p
			}
			return batchKey + ".a" + p[1:]
		})
		if bad != "" {
			// BuildQueries and GrantArgTypes disagree: a bug.
			return nil, fmt.Errorf("postgres: the %s grants query binds %s but takes %d arguments", kind, bad, len(types))
		}
		out[kind] = batchQuery{types: types, sql: `SELECT ` + batchKey + `.i, q.* FROM unnest(` + strings.Join(arrays, ", ") + `) WITH ORDINALITY AS ` +
			batchKey + `(` + strings.Join(cols, ", ") + `, i)
CROSS JOIN LATERAL (` + inner + `) AS q`}
	}
	return out, nil
}

// genericPlanSQL makes the batch statements after it in the same pipeline
// use PostgreSQL's generic plan. Left to choose, PostgreSQL plans a batch
// statement afresh for nearly every batch of fewer than about 32 keys: their
// arrays' lengths make the custom plan's estimate cheaper than the generic
// plan's (which assumes 10 rows), so the plan cache never settles on the
// generic one, and planning the lateral query cost the database about 0.27
// ms a statement (BenchmarkGrantsRefresh: 90 µs a key in batches of 4 against
// 23 with the generic plan; the same from 32 keys up), several times the
// reads themselves. The plan decides how rows are found, never which.
//
// is_local ends the setting with the transaction, which for a pipeline is
// the whole batch (pgx sends one Sync at its end): the connection goes back
// to the pool with the database's own plan_cache_mode, and a batch that
// fails rolls it back too. The WHERE makes it a no-op on a server without
// the setting (before PostgreSQL 12).
const genericPlanSQL = `SELECT set_config('plan_cache_mode', 'force_generic_plan', true) WHERE current_setting('plan_cache_mode', true) IS NOT NULL`

// GrantsBatch implements store.BatchReader: one statement per resource kind
// among keys (see batchQueries), pipelined on one connection (pgx.Batch) in
// one round trip after genericPlanSQL, each key's rows folded as Grants
// folds them.
func (s *Store) GrantsBatch(ctx context.Context, keys []store.GrantsKey) ([]store.Grants, error) {
	out := make([]store.Grants, len(keys))
	// The keys of each kind, in their order in keys; kinds in order of
	// first appearance.
	var kinds []store.ResourceKind
	of := map[store.ResourceKind][]int{}
	for i, k := range keys {
		if _, ok := s.batchSQL[k.Resource.Kind]; !ok {
			return nil, fmt.Errorf("postgres: grants: unknown resource kind %q", k.Resource.Kind)
		}
		if of[k.Resource.Kind] == nil {
			kinds = append(kinds, k.Resource.Kind)
		}
		of[k.Resource.Kind] = append(of[k.Resource.Kind], i)
		out[i] = s.q.NewGrants(k.Resource.Kind)
	}
	b := &pgx.Batch{}
	b.Queue(genericPlanSQL)
	for _, kind := range kinds {
		bq := s.batchSQL[kind]
		args, err := s.batchArgs(bq.types, keys, of[kind])
		if err != nil {
			return nil, err
		}
		b.Queue(bq.sql, args...)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StatementTimeout)
	defer cancel()
	br := s.auth.SendBatch(ctx, b)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return nil, unavailable("grants", err)
	}
	for _, kind := range kinds {
		idx := of[kind]
		rows, err := br.Query()
		if err != nil {
			return nil, unavailable("grants", err)
		}
		err = foldGrants(rows, true, func(n int64) (*store.Grants, error) {
			if n < 1 || n > int64(len(idx)) {
				return nil, fmt.Errorf("postgres: grants: batch row for key %d of %d", n, len(idx))
			}
			return &out[idx[n-1]], nil
		})
		if err != nil {
			return nil, err
		}
	}
	if err := br.Close(); err != nil {
		return nil, unavailable("grants", err)
	}
	return out, nil
}

// batchArgs are the arguments of a batch query for the keys at idx: one
// array per argument of GrantArgs, of the query's types.
func (s *Store) batchArgs(types []string, keys []store.GrantsKey, idx []int) ([]any, error) {
	texts := make([][]string, len(types))
	ints := make([][]*int64, len(types))
	for _, i := range idx {
		args := s.q.GrantArgs(keys[i].Username, keys[i].Resource)
		if len(args) != len(types) {
			return nil, fmt.Errorf("postgres: grants: %d arguments for %d types", len(args), len(types))
		}
		for j, v := range args {
			switch v := v.(type) {
			case string:
				if types[j] == "text" {
					texts[j] = append(texts[j], v)
					continue
				}
			case int64:
				if types[j] == "bigint" {
					ints[j] = append(ints[j], &v)
					continue
				}
			case nil:
				if types[j] == "bigint" {
					ints[j] = append(ints[j], nil)
					continue
				}
			}
			return nil, fmt.Errorf("postgres: grants: argument %d is %T, not %s", j+1, v, types[j])
		}
	}
	out := make([]any, len(types))
	for j, t := range types {
		if t == "bigint" {
			out[j] = ints[j]
		} else {
			out[j] = texts[j]
		}
	}
	return out, nil
}
