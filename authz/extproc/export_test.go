package extproc

import (
	"context"

	"github.com/mlflow-authz/mlflow-authz/authz/mlflow"
)

// FilterBody runs the response filter of route on body, as a response body
// message does, for the benchmark of the filter's own work.
func FilterBody(ctx context.Context, route string, body []byte, rows *mlflow.Rows) ([]byte, error) {
	d, err := newDoc(body)
	if err != nil {
		return nil, err
	}
	if err := responseFilters[route](ctx, d, rows); err != nil {
		return nil, err
	}
	return d.output()
}
