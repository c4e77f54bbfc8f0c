// Package mlflow decides requests to MLflow as MLflow's own basic-auth app
// does (mlflow/server/auth/__init__.py), following its latest rules where
// older releases were open, and denying any request it does not know.
//
// Policy.Decide walks one request down these steps, each in its own file,
// and no step calls back into an earlier one:
//
//  1. route (classify.go, router.go): Classify matches the method and path
//     to a row of the route table (routes.go); no row is a 404 deny.
//  2. parameters (needs.go, params.go, json.go; graphql.go for /graphql):
//     Classify reads the ids the row names exactly where MLflow reads them
//     (query, JSON body, path, header, GraphQL arguments), refusing any
//     ambiguity, and turns each into a Need. It is the only step that reads
//     the request; it is pure and needs no store.
//  3. resources (permission.go: checkNeeds): each Need's id is resolved
//     through the store to the experiment, model or gateway object that
//     owns it; an id that resolves to nothing is a deny.
//  4. permission (permission.go: checkOne, effective.go): the caller's
//     grants on each resource are ranked by EffectivePermission.
//  5. decision (policy.go): allow or deny, then, after an allow, the users
//     the request records are compared with the caller and creates,
//     renames and deletes are handed to the Recorder (ownership.go).
//
// Usage:
//
//	p, err := mlflow.New(reader, mlflow.Config{DefaultPermission: "NO_PERMISSIONS"}, logger)
//	d := p.Decide(ctx, req, identity)
package mlflow
