package extproc

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/mlflow"
	"github.com/mlflow-authz/mlflow-authz/store"
)

// Request narrowing: MLflow's search_runs_impl calls
// auth.filter_experiment_ids before it queries, so a runs/search over
// several experiments searches only the readable ones. The filter does the
// same by rewriting the request body before MLflow sees it. A search left
// with no readable experiment is refused, never sent on: with no
// experiment ids MLflow would search nothing, and saying so is clearer.

// ReasonNothingReadable: every experiment a search names is unreadable.
const ReasonNothingReadable authz.Reason = "no_readable_experiment"

// narrowIDs keeps the readable experiment ids of list, a JSON array of
// strings as MLflow's parser takes it. changed is false when every id was
// readable; a deny comes back when the list is not one MLflow could read
// (the check refuses those first) or when no id is readable.
func narrowIDs(ctx context.Context, list any, field string, rows rowReader) (kept []any, changed bool, d *authz.Decision, err error) {
	if list == nil {
		return nil, false, nil, nil
	}
	if s, ok := list.(string); ok { // GraphQL coerces one value into a list
		list = []any{s}
	}
	ids, ok := list.([]any)
	if !ok {
		return nil, false, badRequest(field + " must be a list of experiment ids"), nil
	}
	if len(ids) == 0 {
		return nil, false, nil, nil
	}
	kept = make([]any, 0, len(ids))
	for _, v := range ids {
		id, ok := v.(string)
		if !ok || !mlflow.ValidID(id) {
			return nil, false, badRequest(field + " must hold experiment ids"), nil
		}
		readable, err := rows.CanRead(ctx, store.Resource{Kind: store.Experiment, ID: id})
		if err != nil {
			return nil, false, nil, err
		}
		if readable {
			kept = append(kept, id)
		}
	}
	if len(kept) == 0 {
		deny := authz.Deny(http.StatusForbidden, ReasonNothingReadable, fmt.Sprintf("READ on at least one experiment in %s required", field))
		return nil, false, &deny, nil
	}
	return kept, len(kept) != len(ids), nil, nil
}

// narrowSearchRuns rewrites a runs/search body so that experiment_ids (in
// either spelling MLflow's parser accepts) holds only the readable ids. It
// returns nil when the body needs no change.
func narrowSearchRuns(ctx context.Context, body []byte, rows rowReader) ([]byte, *authz.Decision, error) {
	obj, d := mlflow.ParseJSONBody(body)
	if d != nil {
		return nil, d, nil
	}
	v, spelled, present, d := mlflow.LookupKey(obj, "experiment_ids")
	if d != nil || !present {
		return nil, d, nil
	}
	kept, changed, d, err := narrowIDs(ctx, v, "experiment_ids", rows)
	if d != nil || err != nil || !changed {
		return nil, d, err
	}
	obj[spelled] = kept
	out, err := encodeJSON(obj)
	return out, nil, err
}

// encodeJSON writes v as compact JSON without HTML escaping: the body a
// client would have sent, with numbers kept as they were (json.Number).
func encodeJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("extproc: encode the rewritten body: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func badRequest(msg string) *authz.Decision {
	d := authz.Deny(http.StatusBadRequest, authz.ReasonInvalidParameter, msg)
	return &d
}
