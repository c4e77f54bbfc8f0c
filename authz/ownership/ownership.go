// Package ownership carries out, without a hook inside MLflow, what MLflow's
// basic-auth after-request handlers do (AFTER_REQUEST_PATH_HANDLERS in
// mlflow/server/auth/__init__.py): the creator of an experiment, a
// registered model, a scorer, a gateway secret, endpoint or model
// definition gets MANAGE; the permission rows of a registered model follow
// its renames; those of a registered model or a scorer are removed with it,
// so a new one of the same name inherits nothing.
//
// ext_authz sees requests, never responses, so the MLflow policy hands every
// allowed create, rename and delete to a Reconciler as a pending record. The
// Reconciler polls MLflow's tracking tables while anything is pending and
// writes the permission rows only once the tables prove that MLflow did it:
//
//   - create: a row with that name whose creation_time (a scorer's first
//     version's, a gateway object's created_at) falls in
//     [allowed − ClockSkew, allowed + ClockSkew + CreateWindow]. MLflow
//     rejects a duplicate name and leaves the old row, whose creation_time
//     predates the request, so a rejected create earns nothing; a name that
//     already existed when the create was allowed is not even recorded.
//     Registering a scorer under an existing name adds a version to it;
//     MLflow then grants the caller MANAGE too, we do not: only the
//     scorer's creator owns it.
//   - rename: the old name is gone and the new one exists, last updated
//     after the rename was allowed (MLflow stamps last_updated_time).
//   - delete (registered models, scorers): the name existed when the
//     delete was allowed and is gone (or was re-created after the delete).
//
// A grant is SetGrant(MANAGE), which is idempotent, and the record is dropped
// once written, so each allowed create grants at most once. A record that is
// not proven within its TTL expires without effect.
//
// Records live in the memory of the replica that allowed the request. If
// that replica dies in the moment between the allow and the reconcile, the
// grant is lost (fail safe: the creator is denied until an admin grants).
//
//	rec := ownership.New(admin, tracking, ownership.Options{Logger: log})
//	go rec.Run(ctx)
//	cfg.MLflow.Recorder = rec
package ownership

import (
	"context"
	"errors"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mlflow-authz/mlflow-authz/store"
)

// Tracking reads MLflow's tracking tables: the proof that MLflow carried out
// a create, rename or delete that we allowed. The backends implement it
// (postgres.OpenTracking, sqlite.OpenTracking).
type Tracking interface {
	// Lookup returns the object n names in n's workspace, or
	// store.ErrNotFound.
	Lookup(ctx context.Context, n store.TrackedName) (store.TrackedObject, error)
}

// Options tunes a Reconciler. Zero values take the defaults.
type Options struct {
	// PollInterval is how often the tracking tables are read while anything
	// is pending (default 500ms). Nothing is read while nothing is pending.
	PollInterval time.Duration
	// FirstDelay is the wait before the first read after a record arrives,
	// giving MLflow time to act on the request (default 50ms).
	FirstDelay time.Duration
	// ClockSkew allows for the difference between MLflow's clock, which
	// stamps creation_time, and ours (default 5s).
	ClockSkew time.Duration
	// CreateWindow is how long after the allow MLflow may stamp the new row
	// (default 30s, beyond Envoy's 15s route timeout). A row stamped later
	// is someone else's create of the same name.
	CreateWindow time.Duration
	// MaxPending bounds the records held (default 10000); past it new
	// records are dropped and logged, never granted.
	MaxPending int
	// Logger receives one line per grant, rename, delete, expiry and drop.
	Logger *slog.Logger
	// Now is the clock (default time.Now); tests inject one.
	Now func() time.Time
}

func (o Options) withDefaults() Options {
	if o.PollInterval <= 0 {
		o.PollInterval = 500 * time.Millisecond
	}
	if o.FirstDelay <= 0 {
		o.FirstDelay = 50 * time.Millisecond
	}
	if o.ClockSkew <= 0 {
		o.ClockSkew = 5 * time.Second
	}
	if o.CreateWindow <= 0 {
		o.CreateWindow = 30 * time.Second
	}
	if o.MaxPending <= 0 {
		o.MaxPending = 10000
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// DefaultTTL is how long a record waits for its proof when the caller gives
// no TTL.
const DefaultTTL = 2 * time.Minute

// maxPrecheck bounds the synchronous "does the name exist yet" read that a
// create makes on the check's path.
const maxPrecheck = time.Second

type opKind uint8

// Order matters: one pass applies deletes and renames before creates, so a
// model deleted and re-created loses its old rows before its new creator is
// granted.
const (
	opDelete opKind = iota + 1
	opRename
	opCreate
)

func (k opKind) String() string {
	switch k {
	case opDelete:
		return "delete"
	case opRename:
		return "rename"
	}
	return "create"
}

type key struct {
	op   opKind
	name store.TrackedName
	to   string // a rename's new name
	user string
}

// owned is k with its strings copied. They are read from the request (the
// name from its path or body, a Basic user from its credential, which holds
// the password too), and a record outlives the request by up to its TTL.
func (k key) owned() key {
	k.name.Experiment, k.name.Name, k.name.Workspace = strings.Clone(k.name.Experiment), strings.Clone(k.name.Name), strings.Clone(k.name.Workspace)
	k.to, k.user = strings.Clone(k.to), strings.Clone(k.user)
	return k
}

type record struct {
	key
	at      time.Time // when the request was allowed
	expires time.Time
}

// Stats counts what a Reconciler did, for tests and operators.
type Stats struct {
	Granted, Renamed, Deleted, Expired, Refused, Dropped uint64
}

// Reconciler holds pending records and applies them once MLflow's tracking
// tables prove them. It is safe for concurrent use; Run must run for records
// to be applied.
type Reconciler struct {
	admin    store.Admin
	tracking Tracking
	opt      Options
	wake     chan struct{}

	mu      sync.Mutex
	pending map[key]*record

	granted, renamed, deleted, expired, refused, dropped atomic.Uint64
}

// New returns a Reconciler that reads proofs through tracking and writes
// permission rows through admin.
func New(admin store.Admin, tracking Tracking, opt Options) *Reconciler {
	return &Reconciler{
		admin:    admin,
		tracking: tracking,
		opt:      opt.withDefaults(),
		wake:     make(chan struct{}, 1),
		pending:  map[key]*record{},
	}
}

// Pending returns how many records wait for their proof.
func (r *Reconciler) Pending() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pending)
}

// Stats returns the counters.
func (r *Reconciler) Stats() Stats {
	return Stats{
		Granted: r.granted.Load(), Renamed: r.renamed.Load(), Deleted: r.deleted.Load(),
		Expired: r.expired.Load(), Refused: r.refused.Load(), Dropped: r.dropped.Load(),
	}
}

// creatable are the kinds whose creator MLflow grants MANAGE.
var creatable = map[store.ResourceKind]bool{
	store.Experiment: true, store.RegisteredModel: true, store.Scorer: true,
	store.GatewaySecret: true, store.GatewayEndpoint: true, store.GatewayModelDefinition: true,
}

// valid reports whether n names one object: a name, and for a scorer its
// experiment.
func valid(n store.TrackedName) bool {
	return n.Name != "" && (n.Kind == store.Scorer) == (n.Experiment != "")
}

// RecordCreate records that user was allowed to create the object n names.
// The name is read once now: if it already exists MLflow will refuse the
// create (or, for a scorer, add a version to it), so nothing is recorded.
func (r *Reconciler) RecordCreate(ctx context.Context, n store.TrackedName, user string, ttl time.Duration) {
	if !creatable[n.Kind] || !valid(n) || user == "" {
		return
	}
	at := r.opt.Now()
	pctx, cancel := context.WithTimeout(ctx, maxPrecheck)
	_, err := r.tracking.Lookup(pctx, n)
	cancel()
	switch {
	case err == nil:
		r.refused.Add(1)
		r.opt.Logger.InfoContext(ctx, "ownership: create of an existing name, MLflow will refuse it or add a version: no grant",
			logName(n), slog.String("user", user))
		return
	case !errors.Is(err, store.ErrNotFound):
		// Without knowing whether the name existed we cannot tell a
		// rejected duplicate from a new row within the clock skew.
		r.dropped.Add(1)
		r.opt.Logger.WarnContext(ctx, "ownership: cannot read tracking tables: creator gets no grant",
			logName(n), slog.String("user", user), slog.Any("error", err))
		return
	}
	r.add(ctx, key{op: opCreate, name: n, user: user}, at, ttl)
}

// RecordRename records an allowed rename of a registered model.
func (r *Reconciler) RecordRename(ctx context.Context, from store.TrackedName, to string, ttl time.Duration) {
	if from.Kind != store.RegisteredModel || from.Name == "" || to == "" || from.Name == to {
		return
	}
	r.add(ctx, key{op: opRename, name: store.TrackedName{Kind: from.Kind, Name: from.Name, Workspace: from.Workspace}, to: to}, r.opt.Now(), ttl)
}

// RecordDelete records an allowed delete of a registered model or a scorer.
// MLflow keeps experiment rows (experiments are soft-deleted and their ids
// never reused), and gateway ids are never reused, so those deletes are not
// recorded. The name is read once now: MLflow refuses to delete what does
// not exist and then keeps its rows (its after-request hook runs only on
// success), so nothing is recorded; when the read fails the delete is
// recorded, and the rows go if the name is gone later.
func (r *Reconciler) RecordDelete(ctx context.Context, n store.TrackedName, ttl time.Duration) {
	if (n.Kind != store.RegisteredModel && n.Kind != store.Scorer) || !valid(n) {
		return
	}
	at := r.opt.Now()
	pctx, cancel := context.WithTimeout(ctx, maxPrecheck)
	_, err := r.tracking.Lookup(pctx, n)
	cancel()
	if errors.Is(err, store.ErrNotFound) {
		r.refused.Add(1)
		r.opt.Logger.InfoContext(ctx, "ownership: delete of a name that does not exist, MLflow will refuse it: rows kept", logName(n))
		return
	}
	r.add(ctx, key{op: opDelete, name: n}, at, ttl)
}

// logName is the slog attribute naming a tracked object.
func logName(n store.TrackedName) slog.Attr {
	attrs := []any{slog.String("kind", string(n.Kind)), slog.String("name", n.Name)}
	if n.Experiment != "" {
		attrs = append(attrs, slog.String("experiment_id", n.Experiment))
	}
	return slog.Group("object", attrs...)
}

func (r *Reconciler) add(ctx context.Context, k key, at time.Time, ttl time.Duration) {
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	r.mu.Lock()
	if old, ok := r.pending[k]; ok {
		// The same request again (a client retry): keep the earliest
		// allow, whose window covers both, and the latest expiry.
		old.expires = at.Add(ttl)
		r.mu.Unlock()
		return
	}
	if len(r.pending) >= r.opt.MaxPending {
		r.mu.Unlock()
		r.dropped.Add(1)
		r.opt.Logger.WarnContext(ctx, "ownership: too many pending records, dropping one",
			slog.String("op", k.op.String()), logName(k.name), slog.String("user", k.user))
		return
	}
	k = k.owned()
	r.pending[k] = &record{key: k, at: at, expires: at.Add(ttl)}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run applies pending records until ctx ends. It reads the tracking tables
// only while something is pending: FirstDelay after a record arrives, then
// every PollInterval.
func (r *Reconciler) Run(ctx context.Context) {
	for {
		delay := r.opt.PollInterval
		if r.Pending() == 0 {
			select {
			case <-ctx.Done():
				return
			case <-r.wake:
			}
			delay = r.opt.FirstDelay
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-r.wake:
			// A new record while others wait: look sooner than the next poll,
			// so a create's grant does not wait for an older record's cycle.
			t.Stop()
			t = time.NewTimer(r.opt.FirstDelay)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		r.Reconcile(ctx)
	}
}

// Reconcile makes one pass over the pending records. Run calls it; tests
// may call it directly.
func (r *Reconciler) Reconcile(ctx context.Context) {
	r.mu.Lock()
	recs := make([]*record, 0, len(r.pending))
	for _, rec := range r.pending {
		recs = append(recs, rec)
	}
	r.mu.Unlock()
	sort.Slice(recs, func(i, j int) bool {
		if recs[i].op != recs[j].op {
			return recs[i].op < recs[j].op
		}
		return recs[i].at.Before(recs[j].at)
	})
	p := pass{r: r, seen: map[store.TrackedName]lookupResult{}}
	for _, rec := range recs {
		if ctx.Err() != nil {
			return
		}
		p.apply(ctx, rec, recs)
	}
}

type lookupResult struct {
	obj store.TrackedObject
	err error
}

// pass reads each name at most once per pass, however many records wait on it.
type pass struct {
	r    *Reconciler
	seen map[store.TrackedName]lookupResult
}

func (p *pass) lookup(ctx context.Context, n store.TrackedName) (store.TrackedObject, error) {
	if res, ok := p.seen[n]; ok {
		return res.obj, res.err
	}
	o, err := p.r.tracking.Lookup(ctx, n)
	p.seen[n] = lookupResult{o, err}
	return o, err
}

func (p *pass) apply(ctx context.Context, rec *record, all []*record) {
	r := p.r
	if !r.isPending(rec) {
		return // dropped earlier in this pass (a concurrent create)
	}
	log := r.opt.Logger.With(slog.String("op", rec.op.String()), logName(rec.name))
	now := r.opt.Now()
	if now.After(rec.expires) {
		r.expired.Add(1)
		r.drop(rec)
		log.WarnContext(ctx, "ownership: MLflow's tables never showed the change: expired without effect",
			slog.String("user", rec.user), slog.String("new_name", rec.to), slog.Duration("waited", now.Sub(rec.at)))
		return
	}
	switch rec.op {
	case opCreate:
		p.applyCreate(ctx, rec, all, log)
	case opRename:
		p.applyRename(ctx, rec, log)
	case opDelete:
		p.applyDelete(ctx, rec, log)
	}
}

// inWindow reports whether a row stamped at created can be the create that
// was allowed at at.
func (r *Reconciler) inWindow(created, at time.Time) bool {
	return !created.Before(at.Add(-r.opt.ClockSkew)) && !created.After(at.Add(r.opt.ClockSkew+r.opt.CreateWindow))
}

func (p *pass) applyCreate(ctx context.Context, rec *record, all []*record, log *slog.Logger) {
	r := p.r
	o, err := p.lookup(ctx, rec.name)
	if errors.Is(err, store.ErrNotFound) {
		return // not yet (or never: then it expires)
	}
	if err != nil {
		log.DebugContext(ctx, "ownership: tracking read failed, retrying", slog.Any("error", err))
		return
	}
	refuse := func(msg string) {
		r.refused.Add(1)
		r.drop(rec)
		log.WarnContext(ctx, msg, slog.String("user", rec.user), slog.String("id", o.ID), slog.Time("allowed_at", rec.at), slog.Time("creation_time", o.Created))
	}
	switch {
	case !o.HasCreated:
		refuse("ownership: the row has no creation_time, so nothing proves this create made it: no grant")
		return
	case !r.inWindow(o.Created, rec.at):
		refuse("ownership: the row was created outside this request's window (a rejected duplicate or someone else's create): no grant")
		return
	}
	// Two callers allowed to create the same name at nearly the same time:
	// MLflow made one row, and we cannot tell whose. Grant neither.
	for _, other := range all {
		if other != rec && other.op == opCreate && other.name == rec.name &&
			other.user != rec.user && r.inWindow(o.Created, other.at) && r.isPending(other) {
			r.refused.Add(1)
			r.drop(other)
			refuse("ownership: concurrent creates of one name by different users: no grant to either")
			return
		}
	}
	res := rec.name.Resource(o)
	if _, _, err := r.admin.SetGrant(ctx, store.Grantee{User: rec.user}, res, store.Manage); err != nil {
		log.WarnContext(ctx, "ownership: writing the creator grant failed, retrying", slog.String("user", rec.user), slog.Any("error", err))
		return
	}
	r.granted.Add(1)
	r.drop(rec)
	log.InfoContext(ctx, "ownership: creator granted MANAGE", slog.String("user", rec.user), slog.String("id", o.ID),
		slog.Int64("latency_ms", r.opt.Now().Sub(rec.at).Milliseconds()))
}

func (p *pass) applyRename(ctx context.Context, rec *record, log *slog.Logger) {
	r := p.r
	if _, err := p.lookup(ctx, rec.name); !errors.Is(err, store.ErrNotFound) {
		return // the old name is still there (not yet, or refused), or the read failed
	}
	o, err := p.lookup(ctx, store.TrackedName{Kind: rec.name.Kind, Name: rec.to, Workspace: rec.name.Workspace})
	if err != nil {
		return // the new name is not there (yet), or the read failed
	}
	if !o.HasUpdated || o.Updated.Before(rec.at.Add(-r.opt.ClockSkew)) {
		// The new name's row was last touched before this rename was
		// allowed: a refused rename onto an existing model whose old name
		// then went away some other way. Moving the rows would hand the
		// old model's grants to another model; wait, and expire.
		return
	}
	if err := r.admin.RenameRegisteredModel(ctx, rec.name.Workspace, rec.name.Name, rec.to); err != nil {
		log.WarnContext(ctx, "ownership: moving permission rows failed, retrying", slog.String("new_name", rec.to), slog.Any("error", err))
		return
	}
	r.renamed.Add(1)
	r.drop(rec)
	log.InfoContext(ctx, "ownership: permission rows follow the rename", slog.String("new_name", rec.to),
		slog.Int64("latency_ms", r.opt.Now().Sub(rec.at).Milliseconds()))
}

func (p *pass) applyDelete(ctx context.Context, rec *record, log *slog.Logger) {
	r := p.r
	o, err := p.lookup(ctx, rec.name)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return
	case o.HasCreated && !o.Created.Before(rec.at.Add(-r.opt.ClockSkew)):
		// Deleted and created again since: the old rows must not carry
		// over to the new one (the new creator's record, applied after
		// deletes in this pass, grants again).
	default:
		return // still there: not yet deleted, or the delete was refused
	}
	// A deleted object has no row to read its id from; registered models
	// and scorers are keyed by what the request named.
	gone := store.TrackedObject{ID: rec.name.Name}
	if rec.name.Kind == store.Scorer {
		gone.ID = rec.name.Experiment
	}
	if err := r.admin.DeleteResourceGrants(ctx, rec.name.Resource(gone)); err != nil {
		log.WarnContext(ctx, "ownership: removing permission rows failed, retrying", slog.Any("error", err))
		return
	}
	r.deleted.Add(1)
	r.drop(rec)
	log.InfoContext(ctx, "ownership: permission rows removed with the object", slog.Int64("latency_ms", r.opt.Now().Sub(rec.at).Milliseconds()))
}

func (r *Reconciler) isPending(rec *record) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pending[rec.key] == rec
}

func (r *Reconciler) drop(rec *record) {
	r.mu.Lock()
	if r.pending[rec.key] == rec {
		delete(r.pending, rec.key)
	}
	r.mu.Unlock()
}
