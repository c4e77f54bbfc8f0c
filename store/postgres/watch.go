package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

// Watch keeps a dedicated LISTEN connection (outside the pool) on the auth
// database until ctx ends. Each notification from the triggers that Migrate
// installs calls invalidate with the changed table. Whenever the connection
// is lost, flush is called at once (a notification may be missed from now
// on) and again after the reconnect and LISTEN succeed (one may have been
// missed meanwhile); reconnects back off from 100ms to 5s. flush is also
// called after the first LISTEN, which tells a caller that the watch is
// live. Watch returns ctx.Err().
//
// Wire it to a cache like this: go s.Watch(ctx, func(string) { c.Invalidate() }, c.Flush).
//
// On every (re)connect, and whenever the connection has been idle, Watch
// checks that every watched table has its trigger (see NotifyStatus). With
// Config.Notify off it listens to nothing: it warns once that the cache's
// TTL alone bounds staleness and waits for ctx.
func (s *Store) Watch(ctx context.Context, invalidate func(table string), flush func()) error {
	if s.cfg.Notify == NotifyOff {
		s.cfg.Logger.WarnContext(ctx, "postgres: store.postgres.notify is off: nothing listens for grant changes, "+
			"so a grant changed with SQL reaches this replica only when store.cache.grant_ttl expires")
		<-ctx.Done()
		return ctx.Err()
	}
	const minBackoff, maxBackoff = 100 * time.Millisecond, 5 * time.Second
	backoff := minBackoff
	for {
		listened, err := s.listenOnce(ctx, invalidate, flush)
		s.watchUp.Store(false)
		if listened && ctx.Err() == nil {
			s.watchLosses.Add(1)
		}
		flush()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if listened {
			backoff = minBackoff
		}
		s.cfg.Logger.WarnContext(ctx, "postgres: LISTEN connection lost; cache flushed, reconnecting",
			"error", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

// WatchStatus reports whether Watch's LISTEN connection is established now,
// and how many established connections it has lost. While it is down, grant
// changes reach this replica only through the cache's TTL: operators alert
// on it. enabled is false with Config.Notify off, when there is no such
// connection to watch.
func (s *Store) WatchStatus() (up bool, losses uint64, enabled bool) {
	return s.watchUp.Load(), s.watchLosses.Load(), s.cfg.Notify != NotifyOff
}

// listenOnce connects, listens and delivers notifications until the
// connection fails. listened reports whether LISTEN succeeded.
func (s *Store) listenOnce(ctx context.Context, invalidate func(string), flush func()) (listened bool, err error) {
	conn, err := pgx.ConnectConfig(ctx, s.listen)
	if err != nil {
		return false, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	lctx, cancel := context.WithTimeout(ctx, s.cfg.StatementTimeout)
	_, err = conn.Exec(lctx, "LISTEN "+NotifyChannel)
	cancel()
	if err != nil {
		return false, err
	}
	if err := s.checkTriggers(ctx, conn); err != nil {
		return false, err
	}
	s.watchUp.Store(true)
	flush()
	// A connection that silently died (no RST) would block forever, so idle
	// periods end with a query: the trigger check, which also notices a
	// trigger dropped, or a table added by an MLflow upgrade, meanwhile.
	const idle = 10 * time.Second
	for {
		wctx, cancel := context.WithTimeout(ctx, idle)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			invalidate(n.Payload)
		case ctx.Err() != nil:
			return true, ctx.Err()
		case errors.Is(err, context.DeadlineExceeded) && !conn.IsClosed():
			if err := s.checkTriggers(ctx, conn); err != nil {
				return true, err
			}
		default:
			return true, err
		}
	}
}
