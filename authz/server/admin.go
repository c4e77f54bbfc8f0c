package server

import (
	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/adminapi"
	"github.com/mlflow-authz/mlflow-authz/store"
)

// registerAdmin serves the admin API (proto/mlflowauthz/v1) on the gRPC port
// when the store can write MLflow's permission tables. Every call is
// authenticated by the live engine's authenticators and allowed to admins
// only; writes go to the database, and the store's change watch flushes the
// cache as it does for any other writer.
func (r *Running) registerAdmin() error {
	admin, ok := r.be.(store.Admin)
	if !ok {
		return nil
	}
	resolution, err := r.cfg.Resolution()
	if err != nil {
		return err
	}
	opts := adminapi.Options{
		Store:  admin,
		Engine: r.engine,
		EngineConfig: func() authz.Config {
			r.mu.Lock()
			defer r.mu.Unlock()
			return r.rt.Engine
		},
		Resolution: resolution,
		Remote:     true,
		Log:        r.log,
	}
	adminapi.New(opts).Register(r.gs)
	return nil
}
