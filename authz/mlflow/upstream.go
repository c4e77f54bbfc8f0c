package mlflow

import "github.com/mlflow-authz/mlflow-authz/authz"

// WorkspaceHeader selects an MLflow workspace (MLflow 3.10+,
// mlflow/utils/workspace_utils.py WORKSPACE_HEADER_NAME). With workspaces
// off we decide every request in workspace "default", the only one MLflow
// has unless MLFLOW_ENABLE_WORKSPACES is set, so the header never reaches
// MLflow: a name lookup there must resolve in the workspace we checked.
// With Config.Workspaces on, the request is decided in the workspace the
// header names, and MLflow must act in the same one, so it passes.
const WorkspaceHeader = "x-mlflow-workspace"

// Upstream wraps the application's identity headers and, unless
// workspaces is on, removes WorkspaceHeader from every allowed request.
func Upstream(inner authz.Upstream, workspaces bool) authz.Upstream {
	if workspaces {
		return inner
	}
	return workspaceStripper{inner}
}

type workspaceStripper struct{ inner authz.Upstream }

// Headers implements authz.Upstream.
func (w workspaceStripper) Headers(r *authz.Request, id *authz.Identity) ([]authz.Header, []string) {
	var set []authz.Header
	var remove []string
	if w.inner != nil {
		set, remove = w.inner.Headers(r, id)
	}
	if _, ok := r.Headers[WorkspaceHeader]; ok {
		remove = append(remove, WorkspaceHeader)
	}
	return set, remove
}
