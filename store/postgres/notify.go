package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Values of Config.Notify.
const (
	NotifyOn  = "on"
	NotifyOff = "off"
)

// missingTriggersSQL returns the watched tables (named in $1) that exist
// without an enabled notify trigger, and users if it does not exist (no
// auth tables at all: migrate never ran), each with whether it exists. A
// trigger disabled with ALTER TABLE … DISABLE TRIGGER (tgenabled 'D'), or
// set to fire only on replicas ('R'), announces nothing, so it counts as
// missing.
const missingTriggersSQL = `SELECT t, to_regclass(t) IS NOT NULL FROM unnest($1::text[]) AS t
	WHERE CASE WHEN to_regclass(t) IS NULL THEN t = 'users' ELSE NOT EXISTS (
		SELECT 1 FROM pg_trigger g
		WHERE g.tgrelid = to_regclass(t) AND g.tgname = '` + triggerName + `' AND g.tgenabled IN ('O', 'A')) END
	ORDER BY t`

// MissingTriggersError says which watched tables have no notify trigger:
// a grant changed there with SQL would be served from the cache until
// store.cache.grant_ttl expires, and nothing would say why. NoAuthTables
// says that even the users table is missing.
type MissingTriggersError struct {
	Tables       []string
	NoAuthTables bool
}

func (e *MissingTriggersError) Error() string {
	if e.NoAuthTables {
		return "postgres: the auth database has no users table, so no grant can be read and none would announce its changes: run `mlflow-authz migrate`"
	}
	return fmt.Sprintf("postgres: the change-notification trigger is missing on %s, so a grant changed there is served stale until store.cache.grant_ttl expires: run `mlflow-authz migrate` (or set store.postgres.notify: off to rely on the TTL alone)",
		strings.Join(e.Tables, ", "))
}

// queryer is what the trigger check needs: the pool or the LISTEN
// connection.
type queryer interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// checkTriggers reads which watched tables that exist lack the trigger,
// records the answer for NotifyStatus and logs when it changes. An error
// reading the catalog leaves the last answer in place: readiness reports an
// unreachable database on its own.
func (s *Store) checkTriggers(ctx context.Context, q queryer) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StatementTimeout)
	defer cancel()
	rows, err := q.Query(ctx, missingTriggersSQL, WatchedTables())
	if err != nil {
		return unavailable("check triggers", err)
	}
	var (
		missing []string
		noUsers bool
		table   string
		exists  bool
	)
	_, err = pgx.ForEachRow(rows, []any{&table, &exists}, func() error {
		if !exists {
			noUsers = true
		} else {
			missing = append(missing, table)
		}
		return nil
	})
	if err != nil {
		return unavailable("check triggers", err)
	}
	var now error
	if len(missing) > 0 || noUsers {
		now = &MissingTriggersError{Tables: missing, NoAuthTables: noUsers}
	}
	s.notifyMu.Lock()
	before, checked := s.notifyErr, s.notifyChecked
	s.notifyErr, s.notifyChecked = now, true
	s.notifyMu.Unlock()
	switch {
	case now != nil && (!checked || before == nil || before.Error() != now.Error()):
		s.cfg.Logger.ErrorContext(ctx, "postgres: change-notification triggers missing; not ready", "tables", missing,
			"fix", "mlflow-authz migrate")
	case now == nil && before != nil:
		s.cfg.Logger.InfoContext(ctx, "postgres: change-notification triggers present on every watched table")
	}
	return nil
}

// CheckNotify checks now that every watched table that exists has the
// notify trigger; NotifyStatus then gives the answer. It returns an error
// only when the catalog could not be read. serve calls it at start; Watch
// checks again on every (re)connect and while idle, so a table that an
// MLflow upgrade added, or a trigger dropped, is noticed too. With notify
// off it checks nothing.
func (s *Store) CheckNotify(ctx context.Context) error {
	if s.cfg.Notify == NotifyOff {
		return nil
	}
	return s.checkTriggers(ctx, s.auth)
}

// NotifyStatus returns a *MissingTriggersError while a watched table that
// exists lacks the notify trigger (readiness fails with it), and nil when
// every one has it, when nothing has been checked yet, or with notify off.
func (s *Store) NotifyStatus() error {
	s.notifyMu.Lock()
	defer s.notifyMu.Unlock()
	return s.notifyErr
}
