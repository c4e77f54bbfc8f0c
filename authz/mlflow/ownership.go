package mlflow

import (
	"context"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/store"
)

// record hands an allowed create, rename or delete to the recorder, which
// acts only once MLflow's tables show that MLflow did it. MLflow itself
// grants in after-request handlers that run only on success
// (mlflow/server/auth/__init__.py: AFTER_REQUEST_PATH_HANDLERS); we never see
// the response. A name we cannot read the way MLflow does is not recorded:
// no grant is the safe side.
// The names come from the Operation: Classify read them with the rest of the
// request, so this step, the last of Decide, reads nothing more.
func (p *Policy) record(ctx context.Context, op Operation, id *authz.Identity) {
	switch op.Route.Name {
	case "CreateExperiment", "CreateRegisteredModel":
		kind := store.Experiment
		if op.Route.Name == "CreateRegisteredModel" {
			kind = store.RegisteredModel
		}
		name := op.NewName
		if name == "" || id.Username == "" {
			return
		}
		if tr := authz.TraceFrom(ctx); tr != nil {
			tr.Addf("ownership", "creator %q of %s %q gets MANAGE once MLflow's row exists", id.Username, kind, name)
		}
		p.recorder.RecordCreate(ctx, kind, name, id.Username, p.pendingTTL)
	case "RenameRegisteredModel", "DeleteRegisteredModel":
		name := ""
		for _, n := range op.Needs {
			if n.Lookup == "" && n.Resource.Kind == store.RegisteredModel {
				name = n.Resource.ID
				break
			}
		}
		if name == "" {
			return
		}
		tr := authz.TraceFrom(ctx)
		if op.Route.Name == "DeleteRegisteredModel" {
			if tr != nil {
				tr.Addf("ownership", "permission rows of registered model %q go once MLflow's row is gone", name)
			}
			p.recorder.RecordDelete(ctx, store.RegisteredModel, name, p.pendingTTL)
			return
		}
		to := op.NewName
		if to == "" {
			return
		}
		if tr != nil {
			tr.Addf("ownership", "permission rows of registered model %q move to %q once MLflow shows the rename", name, to)
		}
		p.recorder.RecordRename(ctx, store.RegisteredModel, name, to, p.pendingTTL)
	}
}
