package sqlite

// This file is kept identical in store/postgres and store/sqlite (package
// clause aside): MLflow's data rules that both backends apply alike.

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/mlflow-authz/mlflow-authz/store"
)

func parseGrant(perm *string) store.Grant {
	if perm == nil {
		return store.Grant{}
	}
	p, ok := store.ParsePermission(*perm)
	return store.Grant{Permission: p, Valid: ok}
}

// lowerGrant returns the weaker of two rows for the same subject (an invalid row
// is the weakest), so that duplicates, such as "/team" and "team" after
// normalization, never widen access.
func lowerGrant(a, b store.Grant) store.Grant {
	if !a.Valid {
		return a
	}
	if !b.Valid || b.Permission < a.Permission {
		return b
	}
	return a
}

// normalizeGroup strips the leading "/" of a Keycloak full group path, the
// form mlflow-oidc-auth users often store (its issues #33 and #152).
func normalizeGroup(name string) string {
	return strings.TrimPrefix(name, "/")
}

// canonicalExperimentID parses an experiment id as MLflow's INTEGER column
// holds it. Only the canonical decimal form is accepted: "007" or "+7"
// would resolve to experiment 7 while the grant rows are keyed by "7".
func canonicalExperimentID(key string) (int32, bool) {
	n, err := strconv.ParseInt(key, 10, 32)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != key {
		return 0, false
	}
	return int32(n), true
}

// jobExperimentID reads experiment_id from a job's JSON params. MLflow
// writes it as a string; a JSON integer is accepted too. Anything else
// (missing, null, float, non-canonical) is not an id.
func jobExperimentID(params string) (string, bool) {
	var p map[string]json.RawMessage
	if err := json.Unmarshal([]byte(params), &p); err != nil {
		return "", false
	}
	raw, ok := p["experiment_id"]
	if !ok {
		return "", false
	}
	var id string
	if err := json.Unmarshal(raw, &id); err != nil {
		id = string(raw) // a JSON number, verbatim
	}
	if _, ok := canonicalExperimentID(id); !ok {
		return "", false
	}
	return id, true
}

// datasetExperimentsSQL reads the experiments an evaluation dataset is
// linked to: MLflow stores the links in entity_associations
// (SqlEntityAssociation) with source EVALUATION_DATASET and destination
// EXPERIMENT, which is what get_dataset_experiment_ids reads.
const datasetExperimentsSQL = `SELECT destination_id FROM entity_associations
	WHERE source_type = 'EVALUATION_DATASET' AND source_id = $1 AND destination_type = 'EXPERIMENT'
	ORDER BY destination_id`
