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
func (p *Policy) record(ctx context.Context, req *authz.Request, op Operation, id *authz.Identity) {
	switch op.Route.Name {
	case "CreateExperiment", "CreateRegisteredModel":
		kind := store.Experiment
		if op.Route.Name == "CreateRegisteredModel" {
			kind = store.RegisteredModel
		}
		name := p.bodyString(req, "name")
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
		to := p.bodyString(req, "new_name")
		if to == "" {
			return
		}
		if tr != nil {
			tr.Addf("ownership", "permission rows of registered model %q move to %q once MLflow shows the rename", name, to)
		}
		p.recorder.RecordRename(ctx, store.RegisteredModel, name, to, p.pendingTTL)
	}
}

// bodyString reads a single string field of the JSON body exactly as the
// route reader does (both spellings, duplicates refused); "" when absent or
// unreadable.
func (p *Policy) bodyString(req *authz.Request, field string) string {
	rd := reader{req: req, vars: &pathVars{}}
	vals, d := rd.values(srcBody, true, &param{name: field, kind: idModel})
	if d != nil || len(vals) != 1 {
		return ""
	}
	return vals[0]
}
