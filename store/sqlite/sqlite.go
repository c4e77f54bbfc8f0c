// Package sqlite implements store.Reader and store.Admin on MLflow's SQLite databases
// (the embedded default) with the pure-Go modernc.org/sqlite driver. The
// tracking and auth databases may be one file or two. Connections use WAL
// and a busy timeout, so reads go on while MLflow writes from another
// process.
//
// SQLite has no NOTIFY. Watch polls PRAGMA data_version on a dedicated
// connection to the auth database every PollInterval: SQLite changes that
// value whenever another connection (any process) commits to the file, so
// no triggers or version table are needed, and a change to any table of
// the file flushes the grants (a superset of the auth tables, which is
// safe).
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/mlflow-authz/mlflow-authz/store"
	"github.com/mlflow-authz/mlflow-authz/store/internal/mlflowdb"
)

const driverName = "sqlite"

// Config is the YAML configuration of the SQLite store.
type Config struct {
	// TrackingPath is MLflow's tracking database: a file path, or a DSN
	// starting with "file:".
	TrackingPath string `yaml:"tracking_path"`
	// AuthPath is MLflow's auth database; empty means TrackingPath.
	AuthPath string `yaml:"auth_path"`
	// PollInterval is how often Watch polls for changes (default 500ms).
	PollInterval time.Duration `yaml:"poll_interval"`
	// BusyTimeout is how long a read waits for a writer's lock (default 5s).
	BusyTimeout time.Duration `yaml:"busy_timeout"`
	// QueryTimeout bounds each query (default 2s).
	QueryTimeout time.Duration `yaml:"query_timeout"`
	// Logger receives watch messages; nil discards them.
	Logger *slog.Logger `yaml:"-"`
	// Layout is auto (detect), legacy or roles: the configuration's
	// mlflow.layout, set by the code that loads it.
	Layout string `yaml:"-"`
}

func (c Config) withDefaults() Config {
	if c.AuthPath == "" {
		c.AuthPath = c.TrackingPath
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 500 * time.Millisecond
	}
	if c.BusyTimeout <= 0 {
		c.BusyTimeout = 5 * time.Second
	}
	if c.QueryTimeout <= 0 {
		c.QueryTimeout = 2 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// dsn turns a path into a modernc DSN with WAL and a busy timeout. A value
// that already is a DSN ("file:…") gets the pragmas appended.
func dsn(pathOrDSN string, busyMS int64) string {
	return withPragmas(pathOrDSN, busyTimeout(busyMS), "journal_mode(WAL)")
}

func busyTimeout(ms int64) string { return "busy_timeout(" + strconv.FormatInt(ms, 10) + ")" }

// withPragmas turns a path or a DSN ("file:…") into a modernc DSN that runs
// pragmas on every new connection.
func withPragmas(pathOrDSN string, pragmas ...string) string {
	q := make([]string, len(pragmas))
	for i, p := range pragmas {
		q[i] = "_pragma=" + url.QueryEscape(p)
	}
	params := strings.Join(q, "&")
	if strings.HasPrefix(pathOrDSN, "file:") {
		if strings.Contains(pathOrDSN, "?") {
			return pathOrDSN + "&" + params
		}
		return pathOrDSN + "?" + params
	}
	return "file:" + pathOrDSN + "?" + params
}

// Store reads grants and ownership from SQLite. It is safe for concurrent use.
type Store struct {
	// Writer implements the write half of store.Admin through s.admin.
	mlflowdb.Writer

	cfg      Config
	auth     *sql.DB
	tracking *sql.DB
	q        mlflowdb.Queries
	passSQL  string
	ws       mlflowdb.Workspaces
}

// Open opens the databases in cfg and reads which optional tables
// (mlflow-oidc-auth's group and regex tables) and columns (its
// users.password_expiration) exist, to build the read queries once. Tables
// and columns created later are read after a restart.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	cfg = cfg.withDefaults()
	if cfg.TrackingPath == "" {
		return nil, errors.New("sqlite: tracking_path is required")
	}
	s := &Store{cfg: cfg}
	s.Writer = mlflowdb.Writer{Run: s.admin}
	var err error
	if s.auth, err = sql.Open(driverName, dsn(cfg.AuthPath, cfg.BusyTimeout.Milliseconds())); err != nil {
		return nil, fmt.Errorf("sqlite: open auth: %w", err)
	}
	if cfg.AuthPath == cfg.TrackingPath {
		s.tracking = s.auth
	} else if s.tracking, err = sql.Open(driverName, dsn(cfg.TrackingPath, cfg.BusyTimeout.Milliseconds())); err != nil {
		s.auth.Close()
		return nil, fmt.Errorf("sqlite: open tracking: %w", err)
	}
	qctx, cancel := context.WithTimeout(ctx, cfg.QueryTimeout+cfg.BusyTimeout)
	defer cancel()
	schema, rev, err := readSchema(qctx, s.auth)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("sqlite: open: %w: %w", store.ErrUnavailable, err)
	}
	if schema.Layout, err = mlflowdb.DetectLayout(cfg.Layout, rev, schema.Tables); err != nil {
		s.Close()
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	schema.Tracking = s.tracking == s.auth
	s.q = mlflowdb.BuildQueries(schema, store.SQLite)
	s.Writer.Layout = schema.Layout.Layout
	var expiration bool
	if err := s.auth.QueryRowContext(qctx, mlflowdb.PasswordExpirationSQL[store.SQLite]).Scan(&expiration); err != nil {
		s.Close()
		return nil, fmt.Errorf("sqlite: open: %w: %w", store.ErrUnavailable, err)
	}
	s.passSQL = mlflowdb.PasswordSQL(store.SQLite, expiration)
	return s, nil
}

// readSchema reads the tables of the auth database and its alembic
// revision ("" without one).
func readSchema(ctx context.Context, db *sql.DB) (mlflowdb.Schema, string, error) {
	schema := mlflowdb.Schema{}
	rows, err := db.QueryContext(ctx, mlflowdb.SchemaSQL[store.SQLite])
	if err != nil {
		return schema, "", err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			table string
			ws    bool
		)
		if err := rows.Scan(&table, &ws); err != nil {
			return schema, "", err
		}
		schema.AddTable(table, ws)
	}
	if err := rows.Err(); err != nil {
		return schema, "", err
	}
	var rev string
	if schema.Tables["alembic_version_auth"] {
		if err := db.QueryRowContext(ctx, mlflowdb.RevisionSQL).Scan(&rev); err != nil && !errors.Is(err, sql.ErrNoRows) {
			return schema, "", err
		}
	}
	return schema, rev, nil
}

// Ping checks that both databases answer.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.QueryTimeout)
	defer cancel()
	if err := s.auth.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlite: ping auth: %w: %w", store.ErrUnavailable, err)
	}
	if err := s.tracking.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlite: ping tracking: %w: %w", store.ErrUnavailable, err)
	}
	return nil
}

// Close closes the databases.
func (s *Store) Close() {
	if s.tracking != nil && s.tracking != s.auth {
		s.tracking.Close()
	}
	if s.auth != nil {
		s.auth.Close()
	}
}

// Layout returns the layout of the auth database, decided at Open.
func (s *Store) Layout() store.LayoutInfo { return s.q.Layout() }

// Grants implements store.Reader in one query on the auth database.
func (s *Store) Grants(ctx context.Context, username string, res store.Resource) (store.Grants, error) {
	g := s.q.NewGrants(res.Kind)
	q, ok := s.q.Grants[res.Kind]
	if !ok {
		return g, fmt.Errorf("sqlite: grants: unknown resource kind %q", res.Kind)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.QueryTimeout)
	defer cancel()
	rows, err := s.auth.QueryContext(ctx, q, s.q.GrantArgs(username, res)...)
	if err != nil {
		return g, unavailable("grants", err)
	}
	defer rows.Close()
	var (
		kind           int
		group          string
		admin          bool
		perm           sql.NullString
		rtype, pattern string
	)
	for rows.Next() {
		if err := rows.Scan(&kind, &group, &admin, &perm, &rtype, &pattern); err != nil {
			return store.Grants{}, unavailable("grants", err)
		}
		var pp *string
		if perm.Valid {
			pp = &perm.String
		}
		mlflowdb.Add(&g, kind, group, admin, pp, rtype, pattern)
	}
	if err := rows.Err(); err != nil {
		return store.Grants{}, unavailable("grants", err)
	}
	return g, nil
}

// Patterns implements store.Reader in one query on the auth database.
func (s *Store) Patterns(ctx context.Context, username string, groups []string, kind store.ResourceKind) (store.Patterns, error) {
	var p store.Patterns
	if _, ok := s.q.Grants[kind]; !ok {
		return p, fmt.Errorf("sqlite: patterns: unknown resource kind %q", kind)
	}
	q, ok := s.q.Patterns[kind]
	if !ok {
		return p, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.QueryTimeout)
	defer cancel()
	rows, err := s.auth.QueryContext(ctx, q, username, mlflowdb.GroupsArg(groups))
	if err != nil {
		return p, unavailable("patterns", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			kindCol  int
			group    string
			id       int64
			regex    string
			priority int64
			perm     sql.NullString
		)
		if err := rows.Scan(&kindCol, &group, &id, &regex, &priority, &perm); err != nil {
			return store.Patterns{}, unavailable("patterns", err)
		}
		var pp *string
		if perm.Valid {
			pp = &perm.String
		}
		mlflowdb.AddPattern(&p, kindCol, group, id, regex, priority, pp)
	}
	if err := rows.Err(); err != nil {
		return store.Patterns{}, unavailable("patterns", err)
	}
	return p, nil
}

// User implements store.Reader.
func (s *Store) User(ctx context.Context, username string) (exists, admin bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.QueryTimeout)
	defer cancel()
	var a sql.NullBool
	err = s.auth.QueryRowContext(ctx, `SELECT is_admin FROM users WHERE username = ?`, username).Scan(&a)
	if errors.Is(err, sql.ErrNoRows) {
		return false, false, nil
	}
	if err != nil {
		return false, false, unavailable("user", err)
	}
	return true, a.Valid && a.Bool, nil
}

// Password implements store.Credentials.
func (s *Store) Password(ctx context.Context, username string) (store.Password, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.QueryTimeout)
	defer cancel()
	var (
		hash    sql.NullString
		has     bool
		expires sql.NullInt64
	)
	err := s.auth.QueryRowContext(ctx, s.passSQL, username).Scan(&hash, &has, &expires)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return store.Password{}, store.ErrNotFound
	case err != nil:
		return store.Password{}, unavailable("password", err)
	}
	var hp *string
	if hash.Valid {
		hp = &hash.String
	}
	var ep *int64
	if expires.Valid {
		ep = &expires.Int64
	}
	return mlflowdb.StoredPassword(hp, has, ep)
}

// Resolve implements store.Reader through the tracking tables.
func (s *Store) Resolve(ctx context.Context, l store.Lookup, key string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.QueryTimeout)
	defer cancel()
	switch l {
	case store.RunExperiment:
		return s.one(ctx, l, `SELECT CAST(experiment_id AS TEXT) FROM runs WHERE run_uuid = ?`, key)
	case store.TraceExperiment:
		return s.one(ctx, l, `SELECT CAST(experiment_id AS TEXT) FROM trace_info WHERE request_id = ?`, key)
	case store.LoggedModelExperiment:
		return s.one(ctx, l, `SELECT CAST(experiment_id AS TEXT) FROM logged_models
			WHERE model_id = ? AND lifecycle_stage IS NOT 'deleted'`, key)
	case store.IssueExperiment:
		return s.one(ctx, l, `SELECT CAST(experiment_id AS TEXT) FROM issues WHERE issue_id = ?`, key)
	case store.AssessmentExperiment:
		return s.one(ctx, l, mlflowdb.AssessmentExperimentSQL, key)
	case store.ExperimentByID:
		id, ok := mlflowdb.CanonicalExperimentID(key)
		if !ok {
			return nil, store.ErrNotFound
		}
		return s.one(ctx, l, `SELECT CAST(experiment_id AS TEXT) FROM experiments WHERE experiment_id = ?`, int64(id))
	case store.ExperimentByName:
		return s.byName(ctx, l, "experiments", `SELECT CAST(experiment_id AS TEXT) FROM experiments WHERE name = ?`, key)
	case store.GatewayEndpointByName:
		return s.byName(ctx, l, "endpoints", `SELECT endpoint_id FROM endpoints WHERE name = ?`, key)
	case store.ExperimentByNameIn, store.GatewayEndpointByNameIn, store.WorkspaceOfExperiment,
		store.WorkspaceOfGatewaySecret, store.WorkspaceOfGatewayEndpoint, store.WorkspaceOfGatewayModelDefinition:
		table, _ := mlflowdb.WorkspaceTable(l)
		has, err := s.hasWorkspace(ctx, table)
		if err != nil {
			return nil, resolveErr(l, err)
		}
		q, args, found := mlflowdb.WorkspaceQuery(l, key, has)
		if !found {
			return nil, store.ErrNotFound
		}
		return s.one(ctx, l, q, args...)
	case store.NameOfExperiment, store.NameOfGatewaySecret, store.NameOfGatewayEndpoint, store.NameOfGatewayModelDefinition:
		arg, ok := mlflowdb.NameKey(l, key)
		if !ok {
			return nil, store.ErrNotFound
		}
		return s.one(ctx, l, mlflowdb.NameSQL[l], arg)
	case store.JobExperiment:
		var params string
		err := s.tracking.QueryRowContext(ctx, `SELECT params FROM jobs WHERE id = ?`, key).Scan(&params)
		if err != nil {
			return nil, resolveErr(l, err)
		}
		id, ok := mlflowdb.JobExperimentID(params)
		if !ok {
			return nil, store.ErrNotFound
		}
		return []string{id}, nil
	case store.DatasetExperiments, store.OnlineScoringExperiments:
		q := mlflowdb.DatasetExperimentsSQL
		if l == store.OnlineScoringExperiments {
			q = mlflowdb.OnlineScoringExperimentsSQL
		}
		rows, err := s.tracking.QueryContext(ctx, q, key)
		if err != nil {
			return nil, resolveErr(l, err)
		}
		defer rows.Close()
		var ids []string
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return nil, resolveErr(l, err)
			}
			ids = append(ids, id)
		}
		if err := rows.Err(); err != nil {
			return nil, resolveErr(l, err)
		}
		if len(ids) == 0 {
			return nil, store.ErrNotFound
		}
		return ids, nil
	case store.VisibleWorkspaces, store.WorkspacesOfRole:
		return s.visible(ctx, l, key)
	}
	return nil, fmt.Errorf("sqlite: resolve: unknown lookup %q", l)
}

// visible answers a workspace-visibility lookup from the auth database:
// zero or more workspace names, never store.ErrNotFound.
func (s *Store) visible(ctx context.Context, l store.Lookup, key string) ([]string, error) {
	q := s.q.VisibilitySQL(l)
	if q == "" {
		return nil, nil
	}
	rows, err := s.auth.QueryContext(ctx, q, key)
	if err != nil {
		return nil, unavailable("resolve "+string(l), err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, unavailable("resolve "+string(l), err)
		}
		names = append(names, n)
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable("resolve "+string(l), err)
	}
	return names, nil
}

func (s *Store) one(ctx context.Context, l store.Lookup, q string, args ...any) ([]string, error) {
	var id sql.NullString
	if err := s.tracking.QueryRowContext(ctx, q, args...).Scan(&id); err != nil {
		return nil, resolveErr(l, err)
	}
	if !id.Valid {
		return nil, store.ErrNotFound
	}
	return []string{id.String}, nil
}

// byName adds workspace = 'default' when the table has MLflow 3.10's
// workspace column.
func (s *Store) byName(ctx context.Context, l store.Lookup, table, q, key string) ([]string, error) {
	ws, err := s.hasWorkspace(ctx, table)
	if err != nil {
		return nil, resolveErr(l, err)
	}
	if ws {
		q += ` AND workspace = 'default'`
	}
	return s.one(ctx, l, q, key)
}

func (s *Store) hasWorkspace(ctx context.Context, table string) (bool, error) {
	return s.ws.Has(ctx, table, func(ctx context.Context, table string) (exists, ws bool, err error) {
		err = s.tracking.QueryRowContext(ctx, mlflowdb.WorkspaceSQL[store.SQLite], table).Scan(&exists, &ws)
		return exists, ws, err
	})
}

func resolveErr(l store.Lookup, err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	if msg := err.Error(); strings.Contains(msg, "no such table") || strings.Contains(msg, "no such column") {
		// An older MLflow without this table or column has no such object.
		return store.ErrNotFound
	}
	return unavailable("resolve "+string(l), err)
}

func unavailable(op string, err error) error {
	return fmt.Errorf("sqlite: %s: %w: %w", op, store.ErrUnavailable, err)
}

// Watch polls the auth database every PollInterval until ctx ends and calls
// invalidate when another connection has committed to it. When polling
// fails, flush is called and the connection reopened on the next tick;
// flush is also called once polling (re)starts, so a caller knows the
// watch is live and a change made meanwhile is not missed. Watch returns
// ctx.Err().
func (s *Store) Watch(ctx context.Context, invalidate func(table string), flush func()) error {
	var (
		conn *sql.Conn
		last int64
	)
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	for {
		if conn == nil {
			c, err := s.auth.Conn(ctx)
			if err == nil {
				err = c.QueryRowContext(ctx, `PRAGMA data_version`).Scan(&last)
				if err != nil {
					c.Close()
				}
			}
			if err == nil {
				conn = c
				flush()
			} else if ctx.Err() == nil {
				s.cfg.Logger.WarnContext(ctx, "sqlite: watch: cannot poll data_version", "error", err)
			}
		} else {
			var v int64
			if err := conn.QueryRowContext(ctx, `PRAGMA data_version`).Scan(&v); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				flush()
				conn.Close()
				conn = nil
				s.cfg.Logger.WarnContext(ctx, "sqlite: watch: poll failed; cache flushed", "error", err)
			} else if v != last {
				last = v
				invalidate("")
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
