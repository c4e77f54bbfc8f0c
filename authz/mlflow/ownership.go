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
	tr := authz.TraceFrom(ctx)
	if kind, ok := creates[op.Route.Name]; ok {
		n := store.TrackedName{Kind: kind, Name: op.NewName, Workspace: op.Workspace}
		if kind == store.Scorer {
			n.Experiment = needKey(op, store.ExperimentByID)
		}
		if n.Name == "" || id.Username == "" || (kind == store.Scorer && n.Experiment == "") {
			return
		}
		if tr != nil {
			tr.Addf("ownership", "creator %q of %s %q gets MANAGE once MLflow's row exists", id.Username, kind, n.Name)
		}
		p.recorder.RecordCreate(ctx, n, id.Username, p.pendingTTL)
		return
	}
	switch op.Route.Name {
	case "DeleteScorer":
		for _, n := range op.Needs {
			if n.Lookup == "" && n.Resource.Kind == store.Scorer {
				if tr != nil {
					tr.Addf("ownership", "permission rows of scorer %q of experiment %s go once MLflow's row is gone", n.Resource.Name, n.Resource.ID)
				}
				p.recorder.RecordDelete(ctx, store.TrackedName{Kind: store.Scorer, Experiment: n.Resource.ID, Name: n.Resource.Name, Workspace: op.Workspace}, p.pendingTTL)
				return
			}
		}
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
		if op.Route.Name == "DeleteRegisteredModel" {
			if tr != nil {
				tr.Addf("ownership", "permission rows of registered model %q go once MLflow's row is gone", name)
			}
			p.recorder.RecordDelete(ctx, store.TrackedName{Kind: store.RegisteredModel, Name: name, Workspace: op.Workspace}, p.pendingTTL)
			return
		}
		to := op.NewName
		if to == "" {
			return
		}
		if tr != nil {
			tr.Addf("ownership", "permission rows of registered model %q move to %q once MLflow shows the rename", name, to)
		}
		p.recorder.RecordRename(ctx, store.TrackedName{Kind: store.RegisteredModel, Name: name, Workspace: op.Workspace}, to, p.pendingTTL)
	}
}

// creates maps each route whose creator MLflow grants MANAGE
// (set_can_manage_*_permission) to the kind it creates.
var creates = map[string]store.ResourceKind{
	"CreateExperiment":             store.Experiment,
	"CreateRegisteredModel":        store.RegisteredModel,
	"RegisterScorer":               store.Scorer,
	"CreateGatewaySecret":          store.GatewaySecret,
	"CreateGatewayEndpoint":        store.GatewayEndpoint,
	"CreateGatewayModelDefinition": store.GatewayModelDefinition,
}

// needKey is the key of op's first need through lookup l.
func needKey(op Operation, l store.Lookup) string {
	for _, n := range op.Needs {
		if n.Lookup == l {
			return n.Key
		}
	}
	return ""
}
