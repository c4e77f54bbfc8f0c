#!/usr/bin/env python3
"""Extract MLflow's HTTP routes and its basic-auth authorization rules from MLflow's source.

Usage:
    python3 tools/mlflow-routes/extract.py SRC LABEL [--commit SHA] [--file-commit PATH=SHA ...]

SRC is a directory that contains MLflow's ``mlflow/`` package (a checkout, or a
``git archive`` of one). LABEL names the output:
``authz/mlflow/testdata/mlflow-source/LABEL.json``. See README.md in this folder.

Python 3.11 standard library only. The source is read with ``ast`` and the module-level code
that builds MLflow's tables is evaluated by ``interp`` on a model of its inputs; nothing of
MLflow is imported or executed by the real interpreter.
"""

from __future__ import annotations

import argparse
import ast
import json
import pathlib
import subprocess
import sys

sys.dont_write_bytecode = True  # keep the source folder free of __pycache__
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import facts  # noqa: E402
import protoparse  # noqa: E402
from interp import (  # noqa: E402
    ClassVal,
    Func,
    Interp,
    Opaque,
    Pattern,
    ProtoMsg,
    Recorder,
    Unknown,
    _LazyImport,
    _Native,
)

SCHEMA = 1
STATIC_MARK = "/__STATIC_PREFIX__"
AUTH = "mlflow.server.auth"
HANDLERS = "mlflow.server.handlers"
REPO = pathlib.Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "authz" / "mlflow" / "testdata" / "mlflow-source"


def short(fn) -> str:
    """Names a function the way the output does: auth functions bare, others by module."""
    if isinstance(fn, Func):
        if fn.name == "<lambda>":
            return "lambda: " + ast.unparse(fn.node.body)
        q = fn.qual
        if q.startswith(AUTH + "."):
            return q[len(AUTH) + 1 :]
        return q.removeprefix("mlflow.server.").removeprefix("mlflow.")
    if fn is None:
        return None
    if isinstance(fn, Opaque):
        return f"<opaque {fn.desc}>"
    return repr(fn)


def camel(name: str) -> str:
    """Graphene's to_camel_case (auto_camelcase=True), as graphene/utils/str_converters.py."""
    parts = name.split("_")
    return parts[0] + "".join(p.capitalize() if p else "_" for p in parts[1:])


class Run:
    """Run is one evaluation of a source tree under one process environment."""

    def __init__(self, root: pathlib.Path, protos, environ: dict[str, str]):
        self.ip = Interp(root, protos)
        self.ip.environ = environ
        self.handlers = self.ip.load(HANDLERS)
        self.server = self.ip.load("mlflow.server")
        self.auth = self.ip.load(AUTH)
        self.null_rows: dict[str, int] = {}

    def env(self, mod, name):
        v = mod.env.get(name)
        if isinstance(v, _LazyImport):
            v = v.resolve()
        return v

    def auth_func(self, name: str) -> Func | None:
        """The function the auth module defines under name, or None in versions without it."""
        fn = self.env(self.auth, name)
        return fn if isinstance(fn, Func) else None

    # ---- routes

    def proto_annotations(self) -> dict:
        """Maps (path, methods) of get_endpoints() to the proto RPC that produced it.

        get_endpoints is called with an identity get_handler, so each proto route carries its
        request class where the real call carries the handler; extra routes carry their view.
        """
        ge = self.env(self.handlers, "get_endpoints")
        rows = self.ip.call(ge, [_Native(lambda cls: cls)], {})
        by_input = {}
        for svc in self.ip.services.values():
            for m in svc.svc.methods:
                by_input.setdefault(m.input_type, []).append(f"{svc.svc.name}.{m.name}")
        handlers_map = self.env(self.handlers, "HANDLERS")
        out: dict[tuple, list] = {}
        for path, x, methods in rows:
            if isinstance(x, ProtoMsg):
                ann = {
                    "rpc": sorted(by_input.get(x.full, ["?"]))[0],
                    "request": x.full,
                    "handler_known": x in handlers_map,
                }
            else:
                ann = {}
            out.setdefault((path, tuple(methods)), []).append(ann)
        return out

    def flask_routes(self, rec: Recorder, origin: str, ann: dict) -> list[dict]:
        out = []
        for r in rec.routes:
            methods = r["methods"]
            default = methods is None
            methods = ["GET"] if default else list(methods)
            a = {}
            lst = ann.get((r["path"], tuple(methods)))
            if lst:
                a = lst.pop(0)
            view = r["view"]
            for m in methods:
                row = {
                    "app": "flask",
                    "method": m,
                    "path": r["path"],
                    "view": short(view) if isinstance(view, Func) and view.name != "<lambda>" else _lambda_view(view),
                    "registered_by": r.get("implicit", origin),
                }
                if default:
                    row["methods_default"] = True
                if a:
                    row["rpc"] = a["rpc"]
                    row["request"] = a["request"]
                    if not a["handler_known"]:
                        row["not_implemented"] = True
                out.append(row)
        return out

    def auth_routes(self) -> list[dict]:
        create_app = self.env(self.auth, "create_app")
        if not isinstance(create_app, Func):
            return []
        rec = Recorder("flask", "auth app")
        self.ip.lenient_funcs.add(create_app.qual)
        try:
            self.ip.call_func(create_app, [rec], {})
        except Unknown as e:
            self.ip.log.append(f"auth.create_app: {e}")
        return self.flask_routes(rec, "auth.create_app", {})

    def fastapi_routes(self) -> list[dict]:
        mod = self.ip.load("mlflow.server.fastapi_app")
        if mod is None:
            return []
        create = self.env(mod, "create_fastapi_app")
        flask_rec = self.env(self.server, "app")
        before = len(self.ip.recorders)
        self.ip.lenient_funcs.add(create.qual)
        try:
            self.ip.call_func(create, [flask_rec], {})
        except Unknown as e:
            self.ip.log.append(f"create_fastapi_app: {e}")
        apps = [r for r in self.ip.recorders[before:] if r.kind == "fastapi"]
        out = []
        if not apps:
            return out
        app = apps[0]
        router_names = _router_names(self.ip)
        for router, kw in app.included:
            if not isinstance(router, Recorder):
                continue
            prefix = router.kwargs.get("prefix", "")
            prefix += kw.get("prefix", "") if isinstance(kw.get("prefix", ""), str) else ""
            deps = router.kwargs.get("dependencies")
            for r in router.routes:
                path = prefix + r["path"] if isinstance(r["path"], str) else repr(r["path"])
                for m in r["methods"] or ["GET"]:
                    row = {
                        "app": "fastapi",
                        "method": m,
                        "path": path,
                        "view": short(r["view"]),
                        "registered_by": "include_router " + router_names.get(id(router), "?"),
                    }
                    if deps is not None:
                        row["router_dependencies"] = _render(deps)
                    out.append(row)
        for path, target in app.mounts:
            out.append(
                {
                    "app": "fastapi",
                    "method": "*",
                    "path": path,
                    "view": "mount " + ("flask app" if target is not None else "?"),
                    "registered_by": "mount",
                }
            )
        return out

    # ---- tables

    def tables(self) -> dict[str, list[dict]]:
        out = {}
        assigned = _module_assigned_names(self.auth)
        for name in sorted(assigned):
            if not (name.endswith("VALIDATORS") or name.endswith("HANDLERS")):
                continue
            v = self.auth.env.get(name)
            if not isinstance(v, dict):
                continue
            rows = []
            for k, val in v.items():
                if val is None:
                    # A None entry is the same as no entry: _find_validator and _after_request
                    # test the looked-up value for truth.
                    self.null_rows[name] = self.null_rows.get(name, 0) + 1
                    continue
                row = _render_key(k)
                row["function"] = short(val)
                rows.append(row)
            out[name] = rows
        return out

    def functions_in_tables(self) -> dict[str, tuple[Func, str]]:
        """Every function a table names, with its role: "before" or "after" the request."""
        fns: dict[str, tuple[Func, str]] = {}
        for name in _module_assigned_names(self.auth):
            v = self.auth.env.get(name)
            if isinstance(v, dict) and name.endswith(("VALIDATORS", "HANDLERS")):
                role = "after" if name.startswith(("AFTER", "WORKSPACE_PARAMETERIZED_AFTER")) else "before"
                for x in v.values():
                    if isinstance(x, Func):
                        fns[x.qual] = (x, role)
        return fns

    # ---- predicates and dispatch

    def prefixes_of(self, fname: str) -> list[str] | None:
        """The constant prefixes a predicate passes to str.startswith."""
        fn = self.auth_func(fname)
        if fn is None:
            return None
        env = {p.arg: Opaque(p.arg) for p in fn.node.args.args}
        for st in fn.node.body:
            if isinstance(st, ast.Assign):
                try:
                    self.ip.exec_stmt(st, fn.module, env, False)
                except Unknown:
                    pass
        out: list[str] = []
        for n in ast.walk(fn.node):
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "startswith":
                arg = n.args[0]
                for comp in ast.walk(fn.node):
                    # any(path.startswith(p) for p in prefixes): the prefixes are the iterable.
                    if isinstance(comp, (ast.GeneratorExp, ast.ListComp)) and isinstance(arg, ast.Name):
                        for g in comp.generators:
                            if isinstance(g.target, ast.Name) and g.target.id == arg.id:
                                arg = g.iter
                try:
                    v = self.ip.eval(arg, fn.module, env)
                except Unknown:
                    out.append("<unparsed " + ast.unparse(arg) + ">")
                    continue
                out += list(v) if isinstance(v, (list, tuple)) else [v]
        return out

    def proxy_artifact_validator(self) -> list[dict] | None:
        fn = self.auth_func("_get_proxy_artifact_validator")
        if fn is None:
            return None
        out = []
        for st in ast.walk(fn.node):
            if isinstance(st, ast.If) and isinstance(st.body[0], ast.Return):
                out.append({"when": ast.unparse(st.test), "function": _name_of(st.body[0].value)})
        for st in fn.node.body:
            if isinstance(st, ast.Return) and isinstance(st.value, ast.Call):
                recv = st.value.func.value if isinstance(st.value.func, ast.Attribute) else None
                if isinstance(recv, ast.Dict):
                    for k, v in zip(recv.keys, recv.values):
                        out.append({"when": f"method == {ast.unparse(k)}", "function": _name_of(v)})
        return out

    def dispatch(self, fname: str) -> list[dict] | None:
        """The order of checks in a dispatcher such as _find_validator or _before_request."""
        fn = self.auth_func(fname)
        if fn is None:
            return None
        out = []
        for st in fn.node.body:
            if isinstance(st, ast.If):
                names = sorted(
                    {n.id for n in ast.walk(st) if isinstance(n, ast.Name) and n.id.isupper()}
                    | {
                        n.func.id
                        for n in ast.walk(st)
                        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id.startswith("_")
                    }
                )
                out.append({"if": ast.unparse(st.test), "uses": names})
            elif isinstance(st, ast.Return):
                out.append({"return": ast.unparse(st.value) if st.value else None})
            elif isinstance(st, ast.Expr) and isinstance(st.value, ast.Constant):
                continue
            elif isinstance(st, (ast.For, ast.Assign, ast.Expr)):
                out.append({"stmt": ast.unparse(st).splitlines()[0]})
        return out

    def fastapi_rules(self) -> list[dict] | None:
        fn = self.auth_func("_find_fastapi_validator")
        if fn is None:
            return None
        out = []
        env = {p.arg: Opaque(p.arg) for p in fn.node.args.args}
        for st in fn.node.body:
            if isinstance(st, ast.If):
                t = st.test
                row: dict = {"if": ast.unparse(t)}
                if (
                    isinstance(t, ast.Call)
                    and isinstance(t.func, ast.Attribute)
                    and t.func.attr == "startswith"
                    and t.args
                ):
                    try:
                        row["prefix"] = self.ip.eval(t.args[0], fn.module, env)
                    except Unknown:
                        row["prefix"] = None
                ret = st.body[-1]
                if isinstance(ret, ast.Return):
                    row["function"] = _name_of(ret.value)
                out.append(row)
            elif isinstance(st, ast.Return):
                out.append({"else": ast.unparse(st.value) if st.value else "None"})
        return out

    def constants(self) -> dict:
        out = {}
        for name in sorted(_module_assigned_names(self.auth)):
            if not name.lstrip("_").isupper() or name.endswith(("VALIDATORS", "HANDLERS")):
                continue
            v = self.auth.env.get(name)
            if isinstance(v, str) or (
                isinstance(v, (list, tuple, set, frozenset)) and v and all(isinstance(x, str) for x in v)
            ):
                out[name] = sorted(v) if isinstance(v, (set, frozenset)) else (list(v) if not isinstance(v, str) else v)
            elif isinstance(v, Pattern):
                out[name] = {"regex": v.pattern}
        return out

    # ---- graphql

    def graphql_middleware(self) -> dict | None:
        for name, v in self.auth.env.items():
            if isinstance(v, ClassVal) and "PROTECTED_FIELDS" in v.attrs:
                cls = v
                break
        else:
            return None
        pf = cls.attrs["PROTECTED_FIELDS"]
        out = {"class": cls.name, "protected_fields": sorted(pf) if isinstance(pf, (set, frozenset, list, tuple)) else repr(pf)}
        branches = []
        for meth in ("_check_authorization", "_post_resolve"):
            f = cls.attrs.get(meth)
            if not isinstance(f, Func):
                continue
            for n in ast.walk(f.node):
                if isinstance(n, ast.If) and _mentions(n.test, "field_name"):
                    fields = _compared_constants(n.test)
                    body_fn = Func(f.module, ast.FunctionDef(
                        name=f"{meth}[{'/'.join(fields)}]", args=f.node.args, body=n.body,
                        decorator_list=[], returns=None, type_comment=None, type_params=[], lineno=n.lineno,
                    ), f"{meth}", None, f"{cls.qual}.{meth}@{n.lineno}")
                    d = facts.direct_facts(body_fn, self.ip)
                    helpers = sorted(c for c in d["calls"] if c.startswith("_graphql") or c.startswith("_filter") or c.startswith("_has"))
                    branches.append({"method": meth, "fields": fields, "params": d["params"], "helpers": helpers,
                                     "assigns_input": sorted({ast.unparse(t) for b in n.body for s in ast.walk(b) if isinstance(s, ast.Assign) for t in s.targets if isinstance(t, ast.Attribute)})})
        seen = set()
        uniq = []
        for b in branches:
            key = json.dumps(b, sort_keys=True)
            if key not in seen:
                seen.add(key)
                uniq.append(b)
        out["branches"] = uniq
        return out


def _mentions(n: ast.AST, name: str) -> bool:
    return any(isinstance(x, ast.Name) and x.id == name for x in ast.walk(n))


def _compared_constants(t: ast.AST) -> list[str]:
    out = []
    for n in ast.walk(t):
        if isinstance(n, ast.Compare) and _mentions(n.left, "field_name"):
            for c in n.comparators:
                if isinstance(c, ast.Constant):
                    out.append(c.value)
                elif isinstance(c, (ast.Tuple, ast.List, ast.Set)):
                    out += [e.value for e in c.elts if isinstance(e, ast.Constant)]
    return out


def _name_of(n: ast.AST) -> str:
    if isinstance(n, ast.Call):
        return ast.unparse(n.func)
    return ast.unparse(n)


def _lambda_view(view) -> str:
    if isinstance(view, Func) and view.name == "<lambda>":
        return "lambda: " + ast.unparse(view.node.body)
    if view is None:
        return "flask.send_static_file"
    return short(view)


def _render(v):
    if isinstance(v, (list, tuple)):
        return [_render(x) for x in v]
    if isinstance(v, Opaque):
        return v.desc
    if isinstance(v, (str, int, bool)) or v is None:
        return v
    return repr(v)


def _render_key(k) -> dict:
    if isinstance(k, tuple) and len(k) == 2:
        a, method = k
        if isinstance(a, Pattern):
            return {"pattern": a.pattern, "method": method}
        return {"path": a, "method": method}
    if isinstance(k, ProtoMsg):
        return {"request": k.full}
    return {"key": repr(k)}


def _module_assigned_names(mod) -> list[str]:
    names = []
    for st in mod.tree.body:
        if isinstance(st, ast.Assign):
            names += [t.id for t in st.targets if isinstance(t, ast.Name)]
        elif isinstance(st, ast.AnnAssign) and isinstance(st.target, ast.Name):
            names.append(st.target.id)
    return sorted(set(names))


def _router_names(ip: Interp) -> dict[int, str]:
    out = {}
    for mname, mod in ip.modules.items():
        own = set(_module_assigned_names(mod))
        for k, v in mod.env.items():
            if isinstance(v, Recorder) and v.kind == "router" and k in own:
                out.setdefault(id(v), f"{mname.removeprefix('mlflow.server.')}.{k}")
    return out


# ---- graphql schema (ast only) -----------------------------------------------------------------


def graphql_schema(root: pathlib.Path) -> dict | None:
    gdir = root / "mlflow" / "server" / "graphql"
    if not gdir.is_dir():
        return None
    classes: dict[str, tuple[ast.ClassDef, str]] = {}
    schema_call = None
    for p in sorted(gdir.glob("*.py")):
        tree = ast.parse(p.read_text())
        for st in tree.body:
            if isinstance(st, ast.ClassDef):
                classes[st.name] = (st, p.name)
            if (
                isinstance(st, ast.Assign)
                and isinstance(st.value, ast.Call)
                and ast.unparse(st.value.func).endswith("Schema")
            ):
                schema_call = (st.value, p.name)
    if schema_call is None:
        return None
    roots = {k.arg: ast.unparse(k.value) for k in schema_call[0].keywords if k.arg in ("query", "mutation")}

    def bases(name):
        node = classes.get(name, (None,))[0]
        if node is None:
            return []
        return [ast.unparse(b).split(".")[-1] for b in node.bases]

    def chain(name):
        out, todo = [], [name]
        while todo:
            c = todo.pop(0)
            if c in classes and c not in out:
                out.append(c)
                todo += bases(c)
        return out

    def resolver_calls(fn: ast.FunctionDef) -> list[str]:
        return sorted(
            {
                ast.unparse(n.func)
                for n in ast.walk(fn)
                if isinstance(n, ast.Call)
                and ("handlers" in ast.unparse(n.func) or ast.unparse(n.func).endswith("_impl"))
            }
        )

    def fields_of(name):
        out = {}
        resolvers = {}
        for c in reversed(chain(name)):  # base first; subclasses override
            node, fname = classes[c]
            for st in node.body:
                if isinstance(st, ast.Assign) and isinstance(st.value, ast.Call):
                    for t in st.targets:
                        if isinstance(t, ast.Name):
                            out[t.id] = (st.value, c, fname)
                if isinstance(st, ast.FunctionDef) and st.name.startswith("resolve_"):
                    resolvers[st.name[len("resolve_"):]] = (st, c)
        return out, resolvers

    def input_fields(type_name):
        fs, _ = fields_of(type_name)
        return sorted(f"{camel(k)}:{ast.unparse(v[0].func).replace('graphene.', '')}" for k, v in fs.items())

    result = {"schema": schema_call[1], "roots": roots, "fields": [], "nested_resolvers": []}
    for kind in ("query", "mutation"):
        cname = roots.get(kind)
        if not cname:
            continue
        fs, resolvers = fields_of(cname)
        for attr, (call, owner, fname) in sorted(fs.items()):
            args = {}
            for k in call.keywords:
                if k.arg in ("description", "required", "deprecation_reason", "name"):
                    continue
                tname = ast.unparse(k.value.func if isinstance(k.value, ast.Call) else k.value)
                args[k.arg] = {"type": tname, "fields": input_fields(tname)}
            res = resolvers.get(attr) or resolvers.get(_snake(attr))
            result["fields"].append(
                {
                    "root": kind,
                    "field": camel(attr),
                    "declared_in": f"{fname}:{owner}",
                    "type": ast.unparse(call.args[0]) if call.args else None,
                    "args": args,
                    "resolver_calls": resolver_calls(res[0]) if res else [],
                }
            )
    root_classes = set()
    for r in roots.values():
        root_classes |= set(chain(r))
    for cname, (node, fname) in sorted(classes.items()):
        if cname in root_classes:
            continue
        for st in node.body:
            if isinstance(st, ast.FunctionDef) and st.name.startswith("resolve_"):
                calls = resolver_calls(st)
                if calls:
                    result["nested_resolvers"].append(
                        {"type": cname, "field": camel(st.name[len("resolve_"):]), "declared_in": fname, "resolver_calls": calls}
                    )
    return result


def _snake(name: str) -> str:
    out = ""
    for ch in name:
        out += "_" + ch.lower() if ch.isupper() else ch
    return out


# ---- assembly ------------------------------------------------------------------------------------


def collect(root: pathlib.Path, protos, environ) -> tuple[dict, Run]:
    run = Run(root, protos, environ)
    ann = run.proto_annotations()
    flask_rec = run.env(run.server, "app")
    routes = run.flask_routes(flask_rec, "mlflow.server", ann)
    routes += run.auth_routes()
    routes += run.fastapi_routes()
    data = {
        "routes": routes,
        "tables": run.tables(),
        "unprotected_prefixes": run.prefixes_of("is_unprotected_route"),
        "proxy_artifact_prefixes": run.prefixes_of("_is_proxy_artifact_path"),
    }
    data["null_rows"] = dict(sorted(run.null_rows.items()))
    return data, run


def merge_static(a: list, b: list, key: str) -> None:
    """Marks each row of a whose twin in b (same position) carries the static prefix."""
    for x, y in zip(a, b):
        if isinstance(x, dict):
            px, py = x.get(key), y.get(key)
        else:
            px, py = x, y
        if not isinstance(px, str):
            continue
        flag = py == STATIC_MARK + px or (key == "pattern" and py.startswith(STATIC_MARK))
        if isinstance(x, dict):
            x["static_prefix"] = flag


def build(src: pathlib.Path, label: str, commit: str, file_commits: dict[str, str]) -> tuple[dict, list[str]]:
    protos, problems = protoparse.parse_tree(src / "mlflow" / "protos")
    version = None
    vtree = ast.parse((src / "mlflow" / "version.py").read_text())
    for st in vtree.body:
        if isinstance(st, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "VERSION" for t in st.targets):
            version = st.value.value
    data, run = collect(src, protos, {})
    spvar = run.env(run.handlers, "STATIC_PREFIX_ENV_VAR")
    notes = []
    if isinstance(spvar, str):
        data2, _ = collect(src, protos, {spvar: STATIC_MARK})
        if len(data2["routes"]) != len(data["routes"]):
            notes.append("static-prefix pass registered a different number of routes")
        merge_static(data["routes"], data2["routes"], "path")
        for t, rows in data["tables"].items():
            rows2 = data2["tables"].get(t, [])
            k = "pattern" if rows and "pattern" in rows[0] else "path"
            merge_static(rows, rows2, k)
        for k in ("unprotected_prefixes", "proxy_artifact_prefixes"):
            if data[k] is not None:
                data[k] = [
                    {"prefix": p, "static_prefix": q == STATIC_MARK + p}
                    for p, q in zip(data[k], data2[k] or [None] * len(data[k]))
                ]
    else:
        notes.append("no STATIC_PREFIX_ENV_VAR in handlers: static_prefix not computed")

    # Functions: everything the tables, the FastAPI rules and the proxy rule name.
    cache: dict[str, dict] = {}
    fns = run.functions_in_tables()
    fr = run.fastapi_rules() or []
    pav = run.proxy_artifact_validator() or []
    for name in [r.get("function") for r in fr] + [r["function"] for r in pav]:
        if name:
            f = run.env(run.auth, name)
            if isinstance(f, Func):
                fns[f.qual] = (f, "before")
    functions = []
    helpers: dict[str, dict] = {}
    for q in sorted(fns, key=lambda q: short(fns[q][0])):
        f, role = fns[q]
        if f.module is not run.auth:
            d = facts.direct_facts(f, run.ip)
            row = {"function": short(f), "role": role, "verdict": "view_function",
                   **{k: d[k] for k in ("params", "reads", "calls")}}
            functions.append(row)
            continue
        flat, visited = facts.flatten(f, run.ip, cache)
        if role == "after":
            flat["verdict"] = facts.after_verdict(flat)
        if any(r["function"] == short(f) for r in functions):
            continue  # identical lambdas registered twice
        functions.append({"function": short(f), "role": role, **flat})
        for g in visited:
            if g is not f:
                helpers[short(g)] = cache[g.qual]
    helper_rows = [{"function": k, **v} for k, v in sorted(helpers.items())]

    views = []
    seen_views = set()
    for r in data["routes"]:
        if r.get("rpc") or r["app"] != "flask":
            continue
        v = r["view"]
        if v in seen_views or v.startswith("lambda"):
            continue
        seen_views.add(v)
        mod_name, _, fname = ("mlflow." + v if not v.startswith("mlflow") else v).rpartition(".")
        if v.startswith(("validate", "_", "signup", "create", "get", "list", "update", "delete", "set")) and "." not in v:
            mod_name = AUTH
            fname = v
        mod = run.ip.modules.get(mod_name) or run.ip.modules.get("mlflow.server." + mod_name.removeprefix("mlflow."))
        f = mod.env.get(fname) if mod else None
        if isinstance(f, Func):
            d = facts.direct_facts(f, run.ip)
            views.append({"view": v, "params": d["params"], "reads": d["reads"], "calls": [c for c in d["calls"] if c.startswith("_get_request") or c.startswith("_get_normalized")]})

    doc = {
        "schema": SCHEMA,
        "label": label,
        "mlflow": {"commit": commit, "version": version, **({"files": file_commits} if file_commits else {})},
        "generator": "tools/mlflow-routes/extract.py",
        "counts": {},
        "routes": sorted(data["routes"], key=lambda r: (r["path"], r["method"], r["app"], r["view"])),
        "unprotected_prefixes": data["unprotected_prefixes"],
        "proxy_artifact_prefixes": data["proxy_artifact_prefixes"],
        "proxy_artifact_validator": pav,
        "find_validator": run.dispatch("_find_validator"),
        "before_request": run.dispatch("_before_request"),
        "fastapi_permission_rules": fr,
        "tables": {k: sorted(v, key=lambda r: json.dumps(r, sort_keys=True)) for k, v in data["tables"].items()},
        "validators": functions,
        "helpers": helper_rows,
        "views": sorted(views, key=lambda r: r["view"]),
        "auth_constants": run.constants(),
        "graphql_schema": graphql_schema(src),
        "graphql_auth": run.graphql_middleware(),
        "notes": sorted(set(notes + [f"proto: {p}" for p in problems])),
    }
    verdicts: dict[str, int] = {}
    for f in functions:
        verdicts[f["verdict"]] = verdicts.get(f["verdict"], 0) + 1
    doc["counts"] = {
        "routes": len(doc["routes"]),
        "routes_by_app": _count(doc["routes"], "app"),
        "tables": {k: len(v) for k, v in doc["tables"].items()},
        "table_rows_without_function": data["null_rows"],
        "validator_verdicts": dict(sorted(verdicts.items())),
        "graphql_fields": len(doc["graphql_schema"]["fields"]) if doc["graphql_schema"] else 0,
    }
    return doc, run.ip.log


def _count(rows, key):
    out: dict[str, int] = {}
    for r in rows:
        out[r[key]] = out.get(r[key], 0) + 1
    return dict(sorted(out.items()))


def dumps(doc: dict) -> str:
    """Stable JSON: sections one per line group, every row of a table on its own line."""

    def one(v):
        return json.dumps(v, sort_keys=True, ensure_ascii=False)

    def block(v, ind):
        pad = "  " * ind
        if isinstance(v, list) and v and all(isinstance(x, (dict, str)) for x in v) and any(isinstance(x, dict) for x in v):
            return "[\n" + ",\n".join(pad + "  " + one(x) for x in v) + "\n" + pad + "]"
        if isinstance(v, dict) and v and any(isinstance(x, (dict, list)) for x in v.values()) and ind < 2:
            items = [f"{pad}  {json.dumps(k)}: {block(x, ind + 1)}" for k, x in v.items()]
            return "{\n" + ",\n".join(items) + "\n" + pad + "}"
        return one(v)

    return block(doc, 0) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=pathlib.Path, help="directory containing MLflow's mlflow/ package")
    ap.add_argument("label", help="output name, e.g. 3.11-baseline")
    ap.add_argument("--commit", help="MLflow commit the tree was taken from (default: git rev-parse in SRC)")
    ap.add_argument("--file-commit", action="append", default=[], metavar="PATH=SHA",
                    help="record that PATH came from commit SHA (trees assembled from several commits)")
    ap.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT, help="output directory")
    ap.add_argument("--log", action="store_true", help="print the statements the evaluator skipped")
    args = ap.parse_args(argv)
    commit = args.commit
    if not commit:
        try:
            commit = subprocess.run(
                ["git", "-C", str(args.src), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            commit = "unknown"
    fc = dict(x.split("=", 1) for x in args.file_commit)
    doc, log = build(args.src, args.label, commit, dict(sorted(fc.items())))
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"{args.label}.json"
    out.write_text(dumps(doc))
    print(f"wrote {out}: {json.dumps(doc['counts'], sort_keys=True)}")
    if args.log:
        print("\n".join(sorted(set(log))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
