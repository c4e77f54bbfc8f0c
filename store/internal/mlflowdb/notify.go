package mlflowdb

// NotifyTables returns every auth table that a read query of the backends
// may read grants from: users, groups, workspace_permissions, each kind's user, group, regex
// and group-regex tables, and the roles layout's tables (mutation
// conditions included). It is derived from the same table registry the
// queries are built from, so a table that is read is a table that must
// announce its changes; which of them exist is for the caller to ask the
// database (an MLflow upgrade may add one later).
func NotifyTables() []string {
	out := []string{"users", "groups", "workspace_permissions"}
	out = append(out, RoleTables...)
	out = append(out, "mutation_conditions")
	for _, k := range kinds {
		for _, t := range []string{k.table, k.groupTable, k.compatGroupTable, k.regexTable, k.groupRegexTable} {
			if t != "" {
				out = append(out, t)
			}
		}
	}
	return out
}
