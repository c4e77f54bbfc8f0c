// Package postgres implements store.Reader and store.Admin on MLflow's PostgreSQL tables
// with pgx. The auth tables (users, *_permissions, and mlflow-oidc-auth's
// group tables) and the tracking tables (experiments, runs, …) may live in
// different databases. Every Grants call is one round trip; the LISTEN
// connection that Watch keeps turns NOTIFYs from the triggers that Migrate
// installs into cache invalidations.
//
//	s, err := postgres.Open(ctx, postgres.Config{TrackingURL: url})
//	c := cache.New(s, cache.Options{})
//	go s.Watch(ctx, func(string) { c.Invalidate() }, c.Flush)
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mlflow-authz/mlflow-authz/store"
	"github.com/mlflow-authz/mlflow-authz/store/internal/mlflowdb"
)

// Config is the YAML configuration of the PostgreSQL store.
type Config struct {
	// TrackingURL is MLflow's tracking database (experiments, runs, …).
	TrackingURL string `yaml:"tracking_url"`
	// AuthURL is MLflow's auth database; empty means TrackingURL.
	AuthURL string `yaml:"auth_url"`
	// MaxConns bounds each pool (default 8).
	MaxConns int32 `yaml:"max_conns"`
	// MinConns is how many connections each pool keeps open, warm (see
	// warm.go): Open waits for them, and the pool reopens them in the
	// background when they close (default 2, at most MaxConns).
	MinConns int32 `yaml:"min_conns"`
	// StatementTimeout bounds every query, both as the server-side
	// statement_timeout and as a client deadline (default 2s), so a slow
	// database turns into a prompt 503 rather than a pile-up of checks.
	StatementTimeout time.Duration `yaml:"statement_timeout"`
	// ConnectTimeout bounds dialing the server (default 5s).
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// Notify is on (default) or off. On, a LISTEN connection hears the
	// triggers that Migrate installs, and the service is not ready while a
	// watched table lacks one. Off (for a pooler that cannot LISTEN, or a
	// database where triggers may not be created), nothing listens and
	// nothing is checked: the cache's grant_ttl alone bounds how long a
	// grant changed with SQL is served stale.
	Notify string `yaml:"notify"`
	// Logger receives reconnect and watch messages; nil discards them.
	Logger *slog.Logger `yaml:"-"`
	// Layout is auto (detect), legacy or roles: the configuration's
	// mlflow.layout, set by the code that loads it.
	Layout string `yaml:"-"`
}

func (c Config) withDefaults() Config {
	if c.AuthURL == "" {
		c.AuthURL = c.TrackingURL
	}
	if c.MaxConns <= 0 {
		c.MaxConns = 8
	}
	if c.MinConns <= 0 {
		c.MinConns = min(2, c.MaxConns)
	}
	if c.StatementTimeout <= 0 {
		c.StatementTimeout = 2 * time.Second
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 5 * time.Second
	}
	if c.Notify == "" {
		c.Notify = NotifyOn
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// ListenApplicationName is the application_name of the LISTEN connection,
// so operators (and tests) can find it in pg_stat_activity.
const ListenApplicationName = "mlflow-authz-listen"

// NotifyChannel is the channel the triggers installed by Migrate notify.
const NotifyChannel = "mlflow_authz"

// Store reads grants and ownership from PostgreSQL. It is safe for
// concurrent use.
type Store struct {
	// Writer implements the write half of store.Admin through s.admin.
	mlflowdb.Writer

	cfg      Config
	auth     *pgxpool.Pool
	tracking *pgxpool.Pool // == auth when both URLs are the same
	listen   *pgx.ConnConfig
	q        mlflowdb.Queries
	batchSQL map[store.ResourceKind]batchQuery // see batchQueries
	passSQL  string
	ws       mlflowdb.Workspaces

	watchUp     atomic.Bool   // the LISTEN connection is established
	watchLosses atomic.Uint64 // established LISTEN connections lost

	notifyMu      sync.Mutex
	notifyErr     error // *MissingTriggersError from the last trigger check
	notifyChecked bool
}

// Open connects to the databases in cfg and reads which optional tables
// (mlflow-oidc-auth's group and regex tables) and columns (its
// users.password_expiration) exist, to build the read queries once. Tables
// and columns created later are read after a restart. It returns once each
// pool has MinConns connections open and warm (see warm.go), or, with a
// warning, after ConnectTimeout + StatementTimeout.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	cfg = cfg.withDefaults()
	if cfg.TrackingURL == "" {
		return nil, errors.New("postgres: tracking_url is required")
	}
	if cfg.Notify != NotifyOn && cfg.Notify != NotifyOff {
		return nil, fmt.Errorf("postgres: notify %q is not on or off", cfg.Notify)
	}
	if cfg.MinConns > cfg.MaxConns {
		return nil, fmt.Errorf("postgres: min_conns %d exceeds max_conns %d", cfg.MinConns, cfg.MaxConns)
	}
	s := &Store{cfg: cfg}
	s.Writer = mlflowdb.Writer{Run: s.admin}
	authCfg, err := s.poolConfig(cfg.AuthURL)
	if err != nil {
		return nil, err
	}
	trackingCfg := authCfg
	if cfg.TrackingURL != cfg.AuthURL {
		if trackingCfg, err = s.poolConfig(cfg.TrackingURL); err != nil {
			return nil, err
		}
	}
	lc, err := pgx.ParseConfig(cfg.AuthURL)
	if err != nil {
		return nil, fmt.Errorf("postgres: auth_url: %w", err)
	}
	lc.ConnectTimeout = cfg.ConnectTimeout
	lc.RuntimeParams["application_name"] = ListenApplicationName
	s.listen = lc

	// The queries are built from the schema, read on a connection of its
	// own, so that the pools' connections can run them as they open.
	qctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout+cfg.StatementTimeout)
	defer cancel()
	if err := s.readSchema(qctx, authCfg.ConnConfig); err != nil {
		return nil, err
	}
	if s.batchSQL, err = batchQueries(s.q); err != nil {
		return nil, err
	}

	warmAuth, warmTracking := s.warmStatements()
	if s.auth, err = s.pool(ctx, authCfg, warmAuth); err != nil {
		return nil, err
	}
	s.tracking = s.auth
	if cfg.TrackingURL != cfg.AuthURL {
		if s.tracking, err = s.pool(ctx, trackingCfg, warmTracking); err != nil {
			s.auth.Close()
			return nil, err
		}
	}
	pools := []*pgxpool.Pool{s.auth}
	if s.tracking != s.auth {
		pools = append(pools, s.tracking)
	}
	for _, p := range pools {
		if got, err := fill(ctx, p, int(cfg.MinConns), cfg.ConnectTimeout+cfg.StatementTimeout); err != nil {
			cfg.Logger.Warn("postgres: could not open min_conns connections; the pool opens more on demand",
				"db", p.Config().ConnConfig.Database, "opened", got, "min_conns", cfg.MinConns, "err", err)
		}
	}
	return s, nil
}

// readSchema reads, on one connection, which optional tables and columns
// exist and which auth layout the database has, and builds the queries.
func (s *Store) readSchema(ctx context.Context, cc *pgx.ConnConfig) error {
	c, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return fmt.Errorf("postgres: open: %w: %w", store.ErrUnavailable, err)
	}
	defer c.Close(context.WithoutCancel(ctx))
	schema := mlflowdb.Schema{}
	rows, err := c.Query(ctx, mlflowdb.SchemaSQL[store.PostgreSQL])
	if err == nil {
		var (
			table string
			ws    bool
		)
		_, err = pgx.ForEachRow(rows, []any{&table, &ws}, func() error {
			schema.AddTable(table, ws)
			return nil
		})
	}
	var rev string
	if err == nil && schema.Tables["alembic_version_auth"] {
		if err = c.QueryRow(ctx, mlflowdb.RevisionSQL).Scan(&rev); errors.Is(err, pgx.ErrNoRows) {
			err = nil
		}
	}
	if err != nil {
		return fmt.Errorf("postgres: open: %w: %w", store.ErrUnavailable, err)
	}
	if schema.Layout, err = mlflowdb.DetectLayout(s.cfg.Layout, rev, schema.Tables); err != nil {
		return fmt.Errorf("postgres: open: %w", err)
	}
	schema.Tracking = s.cfg.TrackingURL == s.cfg.AuthURL
	s.q = mlflowdb.BuildQueries(schema, store.PostgreSQL)
	s.Writer.Layout = schema.Layout.Layout
	var expiration bool
	if err := c.QueryRow(ctx, mlflowdb.PasswordExpirationSQL[store.PostgreSQL]).Scan(&expiration); err != nil {
		return fmt.Errorf("postgres: open: %w: %w", store.ErrUnavailable, err)
	}
	s.passSQL = mlflowdb.PasswordSQL(store.PostgreSQL, expiration)
	return nil
}

// poolConfig parses a database URL into the settings of its pool.
func (s *Store) poolConfig(url string) (*pgxpool.Config, error) {
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse url: %w", err)
	}
	pc.MaxConns, pc.MinConns = s.cfg.MaxConns, s.cfg.MinConns
	pc.ConnConfig.ConnectTimeout = s.cfg.ConnectTimeout
	pc.ConnConfig.RuntimeParams["statement_timeout"] = strconv.FormatInt(s.cfg.StatementTimeout.Milliseconds(), 10)
	if pc.ConnConfig.RuntimeParams["application_name"] == "" {
		pc.ConnConfig.RuntimeParams["application_name"] = "mlflow-authz"
	}
	return pc, nil
}

// pool opens a pool whose connections run warm as they open.
func (s *Store) pool(ctx context.Context, pc *pgxpool.Config, warm warmSQL) (*pgxpool.Pool, error) {
	pc = pc.Copy()
	pc.AfterConnect = warm.afterConnect
	p, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("postgres: pool: %w: %w", store.ErrUnavailable, err)
	}
	return p, nil
}

// Ping checks that both databases answer.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StatementTimeout)
	defer cancel()
	if err := s.auth.Ping(ctx); err != nil {
		return fmt.Errorf("postgres: ping auth: %w: %w", store.ErrUnavailable, err)
	}
	if s.tracking != s.auth {
		if err := s.tracking.Ping(ctx); err != nil {
			return fmt.Errorf("postgres: ping tracking: %w: %w", store.ErrUnavailable, err)
		}
	}
	return nil
}

// Close releases the pools.
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

// Grants implements store.Reader in one round trip to the auth database.
func (s *Store) Grants(ctx context.Context, username string, res store.Resource) (store.Grants, error) {
	q, ok := s.q.Grants[res.Kind]
	if !ok {
		return s.q.NewGrants(res.Kind), fmt.Errorf("postgres: grants: unknown resource kind %q", res.Kind)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StatementTimeout)
	defer cancel()
	rows, err := s.auth.Query(ctx, q, s.q.GrantArgs(username, res)...)
	if err != nil {
		return s.q.NewGrants(res.Kind), unavailable("grants", err)
	}
	return s.scanGrants(rows, res.Kind)
}

// scanGrants reads the rows of a Grants query on kind, and closes them.
func (s *Store) scanGrants(rows pgx.Rows, kind store.ResourceKind) (store.Grants, error) {
	g := s.q.NewGrants(kind)
	if err := foldGrants(rows, false, func(int64) (*store.Grants, error) { return &g, nil }); err != nil {
		return store.Grants{}, err
	}
	return g, nil
}

// foldGrants folds each row of a Grants query into the Grants that into
// returns for it, and closes rows. A keyed query's rows (GrantsBatch's) lead
// with their key's number, which into is given; an unkeyed one gives 0.
func foldGrants(rows pgx.Rows, keyed bool, into func(key int64) (*store.Grants, error)) error {
	defer rows.Close()
	var (
		n              int64
		k              int32
		group          string
		admin          bool
		perm           *string
		rtype, pattern string
	)
	dest := []any{&k, &group, &admin, &perm, &rtype, &pattern}
	if keyed {
		dest = append([]any{&n}, dest...)
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return unavailable("grants", err)
		}
		g, err := into(n)
		if err != nil {
			return err
		}
		mlflowdb.Add(g, int(k), group, admin, perm, rtype, pattern)
	}
	if err := rows.Err(); err != nil {
		return unavailable("grants", err)
	}
	return nil
}

// Patterns implements store.Reader in one round trip to the auth database.
func (s *Store) Patterns(ctx context.Context, username string, groups []string, kind store.ResourceKind) (store.Patterns, error) {
	var p store.Patterns
	if _, ok := s.q.Grants[kind]; !ok {
		return p, fmt.Errorf("postgres: patterns: unknown resource kind %q", kind)
	}
	q, ok := s.q.Patterns[kind]
	if !ok {
		return p, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StatementTimeout)
	defer cancel()
	rows, err := s.auth.Query(ctx, q, username, mlflowdb.GroupsArg(groups))
	if err != nil {
		return p, unavailable("patterns", err)
	}
	var (
		kindCol  int32
		group    string
		id       int64
		regex    string
		priority int64
		perm     *string
	)
	_, err = pgx.ForEachRow(rows, []any{&kindCol, &group, &id, &regex, &priority, &perm}, func() error {
		mlflowdb.AddPattern(&p, int(kindCol), group, id, regex, priority, perm)
		return nil
	})
	if err != nil {
		return store.Patterns{}, unavailable("patterns", err)
	}
	return p, nil
}

// User implements store.Reader.
func (s *Store) User(ctx context.Context, username string) (exists, admin bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StatementTimeout)
	defer cancel()
	var a *bool
	err = s.auth.QueryRow(ctx, userSQL, username).Scan(&a)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, false, nil
	}
	if err != nil {
		return false, false, unavailable("user", err)
	}
	return true, a != nil && *a, nil
}

// Password implements store.Credentials.
func (s *Store) Password(ctx context.Context, username string) (store.Password, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StatementTimeout)
	defer cancel()
	var (
		hash    *string
		has     bool
		expires *int64
	)
	err := s.auth.QueryRow(ctx, s.passSQL, username).Scan(&hash, &has, &expires)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return store.Password{}, store.ErrNotFound
	case err != nil:
		return store.Password{}, unavailable("password", err)
	}
	return mlflowdb.StoredPassword(hash, has, expires)
}

// Resolve implements store.Reader through the tracking tables.
func (s *Store) Resolve(ctx context.Context, l store.Lookup, key string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StatementTimeout)
	defer cancel()
	switch l {
	case store.RunExperiment:
		return s.one(ctx, l, runExperimentSQL, key)
	case store.TraceExperiment:
		return s.one(ctx, l, `SELECT experiment_id::text FROM trace_info WHERE request_id = $1`, key)
	case store.LoggedModelExperiment:
		return s.one(ctx, l, `SELECT experiment_id::text FROM logged_models
			WHERE model_id = $1 AND lifecycle_stage IS DISTINCT FROM 'deleted'`, key)
	case store.IssueExperiment:
		return s.one(ctx, l, `SELECT experiment_id::text FROM issues WHERE issue_id = $1`, key)
	case store.AssessmentExperiment:
		return s.one(ctx, l, mlflowdb.AssessmentExperimentSQL, key)
	case store.ExperimentByID:
		id, ok := mlflowdb.CanonicalExperimentID(key)
		if !ok {
			return nil, store.ErrNotFound
		}
		return s.one(ctx, l, experimentByIDSQL, id)
	case store.ExperimentByName:
		return s.byName(ctx, l, "experiments", `SELECT experiment_id::text FROM experiments WHERE name = $1`, key)
	case store.GatewayEndpointByName:
		return s.byName(ctx, l, "endpoints", `SELECT endpoint_id FROM endpoints WHERE name = $1`, key)
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
		err := s.tracking.QueryRow(ctx, `SELECT params FROM jobs WHERE id = $1`, key).Scan(&params)
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
		rows, err := s.tracking.Query(ctx, q, key)
		if err != nil {
			return nil, resolveErr(l, err)
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return nil, resolveErr(l, err)
		}
		if len(ids) == 0 {
			// No linked experiment (no configuration): nothing could grant
			// access, and MLflow's dataset validators deny too.
			return nil, store.ErrNotFound
		}
		return ids, nil
	case store.VisibleWorkspaces, store.WorkspacesOfRole:
		return s.visible(ctx, l, key)
	}
	return nil, fmt.Errorf("postgres: resolve: unknown lookup %q", l)
}

// visible answers a workspace-visibility lookup from the auth database:
// zero or more workspace names, never store.ErrNotFound.
func (s *Store) visible(ctx context.Context, l store.Lookup, key string) ([]string, error) {
	q := s.q.VisibilitySQL(l)
	if q == "" {
		return nil, nil
	}
	rows, err := s.auth.Query(ctx, q, key)
	if err != nil {
		return nil, unavailable("resolve "+string(l), err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, unavailable("resolve "+string(l), err)
	}
	return names, nil
}

// Statements that warm.go runs on every new connection too.
const (
	userSQL           = `SELECT is_admin FROM users WHERE username = $1`
	runExperimentSQL  = `SELECT experiment_id::text FROM runs WHERE run_uuid = $1`
	experimentByIDSQL = `SELECT experiment_id::text FROM experiments WHERE experiment_id = $1`
)

func (s *Store) one(ctx context.Context, l store.Lookup, q string, args ...any) ([]string, error) {
	var id *string
	if err := s.tracking.QueryRow(ctx, q, args...).Scan(&id); err != nil {
		return nil, resolveErr(l, err)
	}
	if id == nil {
		return nil, store.ErrNotFound
	}
	return []string{*id}, nil
}

// byName adds workspace = 'default' when the table has MLflow 3.10's
// workspace column: without it two workspaces' same-named objects would be
// confused.
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
		err = s.tracking.QueryRow(ctx, mlflowdb.WorkspaceSQL[store.PostgreSQL], table).Scan(&exists, &ws)
		return exists, ws, err
	})
}

func resolveErr(l store.Lookup, err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return store.ErrNotFound
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && (pe.Code == "42P01" || pe.Code == "42703") {
		// An older MLflow without this table or column has no such object.
		return store.ErrNotFound
	}
	return unavailable("resolve "+string(l), err)
}

func unavailable(op string, err error) error {
	return fmt.Errorf("postgres: %s: %w: %w", op, store.ErrUnavailable, err)
}
