// Package mlflowdb holds MLflow's data rules that every SQL backend applies
// alike: how a permission row is read, how duplicate rows combine, and which
// experiment ids are canonical. One copy, so the backends cannot drift apart.
package mlflowdb

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/mlflow-authz/mlflow-authz/store"
)

// Kinds of row in a backend's Grants query (its first column).
const (
	User  = iota // the users row: exists, is_admin
	Own          // the user's own permission row on the resource
	Group        // one group's permission row on the resource
	Name         // the experiment's name (its second column)
)

// WorkspaceRow is a legacy Grants query's row of the user's
// workspace_permissions grant in the resource's workspace.
const WorkspaceRow = 7

// Add folds one row of a Grants query into g: (kind, name, flag,
// permission, resource type, resource pattern); the last two are the
// roles layout's.
func Add(g *store.Grants, kind int, group string, admin bool, perm *string, rtype, pattern string) {
	switch kind {
	case RoleRow, ConditionRow, PromptRow:
		addRole(g, kind, group, admin, perm, rtype, pattern)
	case User:
		g.UserExists, g.UserAdmin = true, admin
	case Own:
		gr := ParseGrant(perm)
		if g.User != nil {
			gr = LowerGrant(*g.User, gr)
		}
		g.User = &gr
	case Name:
		g.Name, g.HasName = group, true
	case WorkspaceRow:
		gr := ParseGrant(perm)
		g.Workspace = &gr
	case Group:
		if g.Groups == nil {
			g.Groups = make(map[string]store.Grant, 2)
		}
		name := NormalizeGroup(group)
		gr := ParseGrant(perm)
		if prev, dup := g.Groups[name]; dup {
			gr = LowerGrant(prev, gr)
		}
		g.Groups[name] = gr
	}
}

// ParseGrant reads a permission column; NULL or unknown is an invalid (denying) grant.
func ParseGrant(perm *string) store.Grant {
	if perm == nil {
		return store.Grant{}
	}
	p, ok := store.ParsePermission(*perm)
	return store.Grant{Permission: p, Valid: ok}
}

// LowerGrant returns the weaker of two rows for the same subject (an invalid row
// is the weakest), so that duplicates, such as "/team" and "team" after
// normalization, never widen access.
func LowerGrant(a, b store.Grant) store.Grant {
	if !a.Valid {
		return a
	}
	if !b.Valid || b.Permission < a.Permission {
		return b
	}
	return a
}

// NormalizeGroup strips the leading "/" of a Keycloak full group path, the
// form mlflow-oidc-auth users often store (its issues #33 and #152).
func NormalizeGroup(name string) string {
	return strings.TrimPrefix(name, "/")
}

// CanonicalExperimentID parses an experiment id as MLflow's INTEGER column
// holds it. Only the canonical decimal form is accepted: "007" or "+7"
// would resolve to experiment 7 while the grant rows are keyed by "7".
func CanonicalExperimentID(key string) (int32, bool) {
	n, err := strconv.ParseInt(key, 10, 32)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != key {
		return 0, false
	}
	return int32(n), true
}

// JobExperimentID reads experiment_id from a job's JSON params. MLflow
// writes it as a string; a JSON integer is accepted too. Anything else
// (missing, null, float, non-canonical) is not an id.
func JobExperimentID(params string) (string, bool) {
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
	if _, ok := CanonicalExperimentID(id); !ok {
		return "", false
	}
	return id, true
}

// PasswordExpirationSQL reports whether users has mlflow-oidc-auth's
// password_expiration column (mlflow_oidc_auth/db/models/user.py): that
// plugin stores its users' access tokens as password hashes, and they
// expire.
var PasswordExpirationSQL = map[store.Dialect]string{
	store.PostgreSQL: `SELECT EXISTS (SELECT 1 FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name = 'users' AND column_name = 'password_expiration')`,
	store.SQLite: `SELECT EXISTS (SELECT 1 FROM pragma_table_info('users') WHERE name = 'password_expiration')`,
}

// PasswordSQL reads the werkzeug hash that MLflow's create_user and
// update_user write (mlflow/server/auth/sqlalchemy_store.py), whether a
// password_expiration is set, and when, in Unix seconds (NULL when it
// cannot be read). expiration says whether the column exists. Naive
// timestamps are UTC, as mlflow-oidc-auth reads them.
func PasswordSQL(d store.Dialect, expiration bool) string {
	if !expiration {
		return `SELECT password_hash, false, CAST(NULL AS BIGINT) FROM users WHERE username = $1`
	}
	epoch := `CAST(EXTRACT(EPOCH FROM password_expiration) AS BIGINT)`
	if d == store.SQLite {
		epoch = `CAST(strftime('%s', password_expiration) AS INTEGER)`
	}
	return `SELECT password_hash, password_expiration IS NOT NULL, ` + epoch + ` FROM users WHERE username = $1`
}

// StoredPassword assembles what PasswordSQL read. A NULL or empty hash is
// no password; an expiration that is set but unreadable is the epoch, so
// the password is refused rather than made eternal.
func StoredPassword(hash *string, hasExpiration bool, expires *int64) (store.Password, error) {
	if hash == nil || *hash == "" {
		return store.Password{}, store.ErrNotFound
	}
	p := store.Password{Hash: *hash}
	switch {
	case hasExpiration && expires != nil:
		p.Expires = time.Unix(*expires, 0)
	case hasExpiration:
		p.Expires = time.Unix(0, 0)
	}
	return p, nil
}

// DatasetExperimentsSQL reads the experiments an evaluation dataset is
// linked to: MLflow stores the links in entity_associations
// (SqlEntityAssociation) with source EVALUATION_DATASET and destination
// EXPERIMENT, which is what get_dataset_experiment_ids reads.
const DatasetExperimentsSQL = `SELECT destination_id FROM entity_associations
	WHERE source_type = 'EVALUATION_DATASET' AND source_id = $1 AND destination_type = 'EXPERIMENT'
	ORDER BY destination_id`

// AssessmentExperimentSQL reads the experiment of the trace that holds an
// assessment (SqlAssessments.trace_id → trace_info.experiment_id).
const AssessmentExperimentSQL = `SELECT CAST(t.experiment_id AS TEXT) FROM assessments a
	JOIN trace_info t ON t.request_id = a.trace_id WHERE a.assessment_id = $1`

// OnlineScoringExperimentsSQL reads the experiments of a scorer's online
// scoring configurations (SqlOnlineScoringConfig), what
// get_online_scoring_configs returns for a scorer id.
const OnlineScoringExperimentsSQL = `SELECT DISTINCT CAST(experiment_id AS TEXT) FROM online_scoring_configs
	WHERE scorer_id = $1 ORDER BY 1`
