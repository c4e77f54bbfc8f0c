package extproc

import (
	"context"
	"strings"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/formatter"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/mlflow"
	"github.com/mlflow-authz/mlflow-authz/store"
)

// GraphQL: MLflow's GraphQLAuthorizationMiddleware
// (mlflow/server/auth/__init__.py) narrows the experimentIds of
// mlflowSearchRuns and mlflowSearchDatasets to the readable ones before the
// resolver runs, and filters the model versions of mlflowSearchModelVersions
// and of a run's nested modelVersions after it. We see the document, not
// the resolvers, so the same two steps become a rewrite of the request and
// a filter of the response:
//
//   - the experimentIds (a literal in the document, or a variable) keep
//     only readable ids; none readable is a 403;
//   - every modelVersions selection gets one more field, the version's
//     registered model name under a reserved alias, so that each version in
//     the response says which model it belongs to, whatever the client
//     selected. The response filter drops the versions of unreadable models
//     and removes the alias from the rest.
//
// MLflow reads /graphql's query and variables from the JSON body for GET and
// POST alike (handlers._graphql: request.get_json(force=True)), so does this.

// modelAlias is the reserved alias that carries a model version's
// registered model name through the response. A document that uses it
// itself is refused: only the versions we marked may carry it.
const modelAlias = "mlflowAuthzRegisteredModel"

// narrowedFields are the fields whose input.experimentIds MLflow narrows.
var narrowedFields = map[string]bool{"mlflowSearchRuns": true, "mlflowSearchDatasets": true}

// rewriteGraphQL narrows and marks a /graphql body. out is nil when the
// body needs no change; filter says whether the response carries marked
// model versions.
func rewriteGraphQL(ctx context.Context, body []byte, rows rowReader) (out []byte, filter bool, d *authz.Decision, err error) {
	obj, d := mlflow.ParseJSONBody(body)
	if d != nil {
		return nil, false, d, nil
	}
	query, ok := obj["query"].(string)
	if !ok {
		return nil, false, badRequest("GraphQL body has no query string"), nil
	}
	var vars map[string]any
	switch v := obj["variables"].(type) {
	case nil:
	case map[string]any:
		vars = v
	default:
		return nil, false, badRequest("GraphQL variables must be a JSON object"), nil
	}
	doc, d := mlflow.ParseGraphQL(query)
	if d != nil {
		return nil, false, d, nil
	}
	g := &gqlRewrite{ctx: ctx, rows: rows, vars: vars}
	for _, op := range doc.Operations {
		g.defs = op.VariableDefinitions
		g.selections(op.SelectionSet, 0)
	}
	for _, f := range doc.Fragments {
		// A fragment may be spread into several operations: its variables
		// are those of any of them, so it is judged against every one.
		g.defs = nil
		for _, op := range doc.Operations {
			g.defs = append(g.defs, op.VariableDefinitions...)
		}
		g.selections(f.SelectionSet, 0)
	}
	if g.deny != nil || g.err != nil {
		return nil, false, g.deny, g.err
	}
	if !g.docChanged && !g.varsChanged {
		return nil, false, nil, nil
	}
	if g.docChanged {
		var sb strings.Builder
		formatter.NewFormatter(&sb).FormatQueryDocument(doc)
		obj["query"] = sb.String()
	}
	if g.varsChanged {
		obj["variables"] = g.vars
	}
	out, err = encodeJSON(obj)
	return out, g.marked, nil, err
}

type gqlRewrite struct {
	ctx  context.Context
	rows rowReader
	vars map[string]any
	defs ast.VariableDefinitionList
	deny *authz.Decision
	err  error
	// docChanged and varsChanged say what must be written back; marked
	// says the response has versions to filter.
	docChanged, varsChanged, marked bool
}

func (g *gqlRewrite) failed() bool { return g.deny != nil || g.err != nil }

// selections visits every field of a selection set, at any depth: the
// fields the rewrite acts on are recognised by name, wherever they sit.
func (g *gqlRewrite) selections(ss ast.SelectionSet, depth int) {
	if depth > maxDepth {
		g.deny = badRequest("GraphQL selections nested too deeply")
		return
	}
	for _, s := range ss {
		if g.failed() {
			return
		}
		switch s := s.(type) {
		case *ast.Field:
			g.field(s, depth)
		case *ast.InlineFragment:
			g.selections(s.SelectionSet, depth+1)
		case *ast.FragmentSpread:
			// Visited once, with the document's fragments.
		}
	}
}

func (g *gqlRewrite) field(f *ast.Field, depth int) {
	if f.Alias == modelAlias {
		g.deny = badRequest("the GraphQL alias " + modelAlias + " is reserved")
		return
	}
	if narrowedFields[f.Name] {
		g.narrow(f)
	}
	g.selections(f.SelectionSet, depth+1)
	if f.Name == "modelVersions" && len(f.SelectionSet) > 0 && !g.failed() {
		f.SelectionSet = append(f.SelectionSet, &ast.Field{Alias: modelAlias, Name: "name"})
		g.docChanged, g.marked = true, true
	}
}

// narrow keeps the readable ids of a narrowed field's input.experimentIds,
// written as a literal or passed in a variable (the whole input, or the
// list alone).
func (g *gqlRewrite) narrow(f *ast.Field) {
	input := f.Arguments.ForName("input")
	if input == nil || input.Value == nil {
		return
	}
	switch v := input.Value; v.Kind {
	case ast.Variable:
		obj, ok := g.variable(v.Raw).(map[string]any)
		if !ok {
			return
		}
		kept, changed := g.keep(obj["experimentIds"], f.Name)
		if changed {
			obj["experimentIds"] = kept
			g.setVariable(v.Raw, obj)
		}
	case ast.ObjectValue:
		for _, c := range v.Children {
			if c.Name != "experimentIds" || c.Value == nil {
				continue
			}
			switch c.Value.Kind {
			case ast.Variable:
				kept, changed := g.keep(g.variable(c.Value.Raw), f.Name)
				if changed {
					g.setVariable(c.Value.Raw, kept)
				}
			case ast.ListValue, ast.StringValue, ast.BlockValue:
				var ids any = c.Value.Raw
				if c.Value.Kind == ast.ListValue {
					l := make([]any, 0, len(c.Value.Children))
					for _, e := range c.Value.Children {
						if e.Value == nil || (e.Value.Kind != ast.StringValue && e.Value.Kind != ast.BlockValue) {
							g.deny = badRequest("GraphQL " + f.Name + " input.experimentIds must hold strings")
							return
						}
						l = append(l, e.Value.Raw)
					}
					ids = l
				}
				kept, changed := g.keep(ids, f.Name)
				if changed {
					list := &ast.Value{Kind: ast.ListValue}
					for _, id := range kept {
						list.Children = append(list.Children, &ast.ChildValue{Value: &ast.Value{Kind: ast.StringValue, Raw: id.(string)}})
					}
					c.Value = list
					g.docChanged = true
				}
			}
		}
	}
}

// keep narrows one list of ids, recording a refusal or an error.
func (g *gqlRewrite) keep(ids any, field string) ([]any, bool) {
	kept, changed, d, err := narrowIDs(g.ctx, ids, field+" input.experimentIds", g.rows)
	if d != nil || err != nil {
		g.deny, g.err = d, err
		return nil, false
	}
	return kept, changed
}

// variable returns the value a variable takes: the one supplied, else its
// default (which, narrowed, is then supplied explicitly).
func (g *gqlRewrite) variable(name string) any {
	if v, ok := g.vars[name]; ok {
		return v
	}
	def := g.defs.ForName(name)
	if def == nil || def.DefaultValue == nil {
		return nil
	}
	v, err := def.DefaultValue.Value(nil)
	if err != nil {
		g.deny = badRequest("GraphQL variable $" + name + " has an unreadable default")
		return nil
	}
	return v
}

func (g *gqlRewrite) setVariable(name string, v any) {
	if g.vars == nil {
		g.vars = map[string]any{}
	}
	g.vars[name] = v
	g.varsChanged = true
}

// graphQLResponse filters a GraphQL response: in data, every object that
// carries the marker stands for a model version; it stays (without the
// marker) when its registered model is readable and goes otherwise.
// Versions are always list elements in MLflow's schema; a marked object
// anywhere else cannot be removed, so it fails the response.
func graphQLResponse(ctx context.Context, d *jsonDoc, rows rowReader) error {
	root, err := d.root()
	if err != nil {
		return err
	}
	data, ok := find(root, "data")
	if !ok {
		return nil
	}
	return walkMarked(ctx, d, data.val, 1, rows)
}

// walkMarked visits the value at v, which is not a list element.
func walkMarked(ctx context.Context, d *jsonDoc, v span, depth int, rows rowReader) error {
	switch d.kind(v) {
	case '[':
		es, err := d.elements(v, depth)
		if err != nil {
			return err
		}
		keep := make([]bool, len(es))
		for i, e := range es {
			ok, err := markedElement(ctx, d, e, depth+1, rows)
			if err != nil {
				return err
			}
			keep[i] = ok
		}
		d.dropElements(es, keep)
	case '{':
		ms, err := d.members(v, depth)
		if err != nil {
			return err
		}
		if _, marked := find(ms, modelAlias); marked {
			return errMalformed
		}
		for _, m := range ms {
			if err := walkMarked(ctx, d, m.val, depth+1, rows); err != nil {
				return err
			}
		}
	}
	return nil
}

// markedElement decides one list element: an unmarked one stays (and is
// walked), a marked one stays only if its model is readable.
func markedElement(ctx context.Context, d *jsonDoc, e span, depth int, rows rowReader) (bool, error) {
	switch d.kind(e) {
	case '[':
		return true, walkMarked(ctx, d, e, depth, rows)
	case '{':
	default:
		return true, nil
	}
	ms, err := d.members(e, depth)
	if err != nil {
		return false, err
	}
	if m, marked := find(ms, modelAlias); marked {
		name, ok, err := d.text(m.val)
		if err != nil {
			return false, err
		}
		readable := false
		if ok && name != "" {
			if readable, err = rows.CanRead(ctx, store.Resource{Kind: store.RegisteredModel, ID: name}); err != nil {
				return false, err
			}
		}
		if !readable {
			return false, nil
		}
		d.dropKeys(ms, modelAlias)
	}
	for _, m := range ms {
		if string(m.key) == modelAlias {
			continue
		}
		if err := walkMarked(ctx, d, m.val, depth+1, rows); err != nil {
			return false, err
		}
	}
	return true, nil
}
