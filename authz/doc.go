// Package authz is the heart of mlflow-authz: the types every stage of the
// decision pipeline speaks, and the Engine that runs the stages in order for
// one request. Nothing here knows Envoy, a database or MLflow's routes; each
// stage lives in the package named under it:
//
//	CheckRequest ─► Request ─► Identity ─► Operation ─► Resource ─► Permission ─► Decision ─► CheckResponse
//	  extauthz       authz       authn       mlflow       store         store         authz       extauthz
//	                                        (rules)
//
// The stages:
//
//   - Request (request.go): a transport-free, immutable view of the HTTP
//     request. NewRequest canonicalises the path and refuses, with 400, any
//     path the upstream could route differently from us.
//   - Identity (identity.go): who the caller is, produced by the chain of
//     Authenticators in authz/authn (Bearer JWT, then the SPIFFE peer). A
//     credential that is present but invalid is a CredentialError (401),
//     never a fall-through to anonymous.
//   - Operation, Resource, Permission: an App's Policy. MLflow hosts use
//     authz/mlflow (route table → ids read as MLflow reads them → owning
//     experiment or model → effective permission from store); Phoenix and
//     Kiali use the ordered rules of authz/rules.
//   - Decision (decision.go): allow, or deny with a status, a stable Reason
//     and a message. A deny is a value, never an error. On allow the App's
//     Upstream (authz/upstream) sets the identity headers MLflow, Phoenix or
//     Kiali trust and removes client-sent copies.
//
// The Engine (engine.go) picks the App by host, authenticates, asks the
// Policy, and applies dry-run and the upstream headers. Its configuration
// is swapped whole on reload. Trace (trace.go) records the steps for
// `mlflow-authz explain` when the context carries one.
package authz
