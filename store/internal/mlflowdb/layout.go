package mlflowdb

import (
	"fmt"

	"github.com/mlflow-authz/mlflow-authz/store"
)

// Layout modes of the configuration (mlflow.layout).
const (
	LayoutAuto   = "auto"
	LayoutLegacy = string(store.LayoutLegacy)
	LayoutRoles  = string(store.LayoutRoles)
)

// legacyRevisions are the alembic revisions of MLflow's auth database
// (mlflow/server/auth/db/migrations/versions) at which the per-user tables
// decide: 8606fa83a998 (2.5), 0965eb92f5f0 (scorers, 3.7), a1b2c3d4e5f6
// (gateway, 3.9), 2ed73881770d (workspaces, 3.10–3.11), and the two
// master-only RBAC revisions that no release shipped as a head:
// c3d4e5f6a7b8 (role tables added, legacy rows still read) and
// d4e5f6a7b8c9 (a first backfill, replaced by e5f6a7b8c9d0).
var legacyRevisions = map[string]bool{
	"8606fa83a998": true, "0965eb92f5f0": true, "a1b2c3d4e5f6": true, AuthHead: true,
	"c3d4e5f6a7b8": true, "d4e5f6a7b8c9": true,
}

// rolesRevisions are the revisions from e5f6a7b8c9d0 on, after which
// MLflow reads and writes role_permissions only: e5f6a7b8c9d0 (legacy rows
// copied to __user_<id>__ roles), e6c5d2f7a8b9 (ON DELETE CASCADE on the
// users FKs), f1a2b3c4d5e6 (resource_type prompt), b7c8d9e0f1a2,
// c9d0e1f2a3b4 and 262a5e73fb1a (mutation_conditions), f6a7b8c9d0e1 (the
// legacy tables dropped).
var rolesRevisions = map[string]bool{
	"e5f6a7b8c9d0": true, "e6c5d2f7a8b9": true, "f1a2b3c4d5e6": true, "b7c8d9e0f1a2": true,
	"c9d0e1f2a3b4": true, "262a5e73fb1a": true, "f6a7b8c9d0e1": true,
}

// RoleTables are the tables of the roles layout (c3d4e5f6a7b8).
var RoleTables = []string{"roles", "role_permissions", "user_role_assignments"}

// KnownRevision reports whether rev is a revision this build knows.
func KnownRevision(rev string) bool { return legacyRevisions[rev] || rolesRevisions[rev] }

// DetectLayout decides the layout of an auth database from its alembic
// revision (rev, "" when there is none) and its tables, or takes the one
// mode forces. The legacy tables prove nothing: MLflow keeps them, stale,
// after e5f6a7b8c9d0. An unknown revision (a newer MLflow) is read as the
// roles layout when the role tables exist. Forcing the roles layout on a
// database without the role tables is an error, as is an unknown mode.
func DetectLayout(mode, rev string, tables map[string]bool) (store.LayoutInfo, error) {
	info := store.LayoutInfo{Revision: rev, Unknown: rev != "" && !KnownRevision(rev)}
	roleTables := true
	for _, t := range RoleTables {
		roleTables = roleTables && tables[t]
	}
	switch mode {
	case "", LayoutAuto:
		switch {
		case rolesRevisions[rev]:
			info.Layout = store.LayoutRoles
		case legacyRevisions[rev], rev == "":
			info.Layout = store.LayoutLegacy
		case roleTables:
			info.Layout = store.LayoutRoles
		default:
			info.Layout = store.LayoutLegacy
		}
	case LayoutLegacy:
		info.Layout, info.Forced = store.LayoutLegacy, true
	case LayoutRoles:
		info.Layout, info.Forced = store.LayoutRoles, true
	default:
		return info, fmt.Errorf("layout %q is not auto, legacy or roles", mode)
	}
	if info.Layout == store.LayoutRoles && !roleTables {
		return info, fmt.Errorf("layout roles: the auth database has no roles, role_permissions and user_role_assignments tables (alembic revision %q)", rev)
	}
	return info, nil
}

// RevisionSQL reads the auth database's alembic revision; run it only
// when alembic_version_auth exists.
const RevisionSQL = `SELECT version_num FROM alembic_version_auth`
