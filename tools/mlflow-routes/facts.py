"""What a validator (or view) function reads and checks, read from its ast.

Each function gets its *direct* facts: the permission attributes it tests (``.can_read`` ...),
the request parameters it reads and from where, the store lookups it makes, the constants it
returns, the environment switches it consults, and the functions of its own module it calls.
``flatten`` then unions a function with everything it calls in its module, except the generic
permission-resolution machinery in STOP (whose own facts are still listed).

Nothing here guesses: a read that cannot be tied to a request source is listed with the
expression it came from (``{"source": "local", "on": "config"}``), and a validator whose facts
name no permission, admin check, sender check or constant answer is marked "unparsed".
"""

from __future__ import annotations

import ast
import re

from interp import Func, Interp, _LazyImport

PERM_ATTRS = ("can_read", "can_use", "can_update", "can_delete", "can_manage")

# Generic resolution machinery: the default/workspace fallback every resource check shares.
# Descending into it would attach its lookups to every validator.
STOP = re.compile(r"^(_get_permission_from_store_or_default|_workspace_permission.*|authenticate_request"
                  r"|_get_resource_workspace|get_permission|_get_request_param)$")

# Accessors whose first constant argument names a request parameter, and what they read.
# MLflow's rule (auth._get_request_param): GET -> query string, POST/PATCH -> JSON body,
# DELETE -> JSON body if the request is JSON else query string; Flask path variables override.
PARAM_ACCESSORS = {
    "_get_request_param": "request_param",
    "_get_optional_request_param": "request_param_optional",
}


def _is_request(n: ast.AST) -> bool:
    return isinstance(n, ast.Name) and n.id in ("request", "flask_request", "req")


def _request_part(n: ast.AST) -> str | None:
    """Names the part of the Flask/Starlette request an expression reads, if it does."""
    if isinstance(n, ast.Attribute) and _is_request(n.value):
        return {
            "args": "query",
            "view_args": "path",
            "headers": "header",
            "json": "body",
            "form": "form",
            "path_params": "path",
            "query_params": "query",
            "data": "raw_body",
        }.get(n.attr)
    if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and _is_request(n.func.value):
        if n.func.attr == "get_json":
            force = any(k.arg == "force" and isinstance(k.value, ast.Constant) and k.value.value for k in n.keywords)
            return "body_forced" if force else "body"
        if n.func.attr == "json":
            return "body"
    if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in (
        "_get_request_json",
        "_get_normalized_request_json",
        "_get_validated_flask_request_json",
    ):
        return f"body_via:{n.func.id}"
    if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "to_dict":
        inner = _request_part(n.func.value)
        if inner == "query":
            return "query_multi"
    if isinstance(n, ast.BoolOp):
        for v in n.values:
            if p := _request_part(v):
                return p
    if isinstance(n, ast.Await):
        return _request_part(n.value)
    return None


def _const_str(n: ast.AST) -> str | None:
    return n.value if isinstance(n, ast.Constant) and isinstance(n.value, str) else None


def direct_facts(fn: Func, ip: Interp) -> dict:
    """direct_facts lists what fn's own body reads and checks."""
    node = fn.node
    perms: set[str] = set()
    requirements: set[str] = set()
    call_args: set[str] = set()
    params: set[tuple] = set()
    reads: set[str] = set()
    lookups: set[str] = set()
    calls: set[str] = set()
    env_switches: set[str] = set()
    const_returns: set[str] = set()
    admin = False
    sender_check = False
    var_part: dict[str, str] = {}
    sender_vars: set[str] = set()

    body_nodes = list(ast.walk(node))
    if isinstance(node, ast.Lambda) and isinstance(node.body, ast.Constant) and isinstance(node.body.value, bool):
        const_returns.add(str(node.body.value).lower())
    # Variables bound to a part of the request (data = request.json or {}), in source order.
    for n in body_nodes:
        if isinstance(n, (ast.Assign, ast.NamedExpr)):
            targets = n.targets if isinstance(n, ast.Assign) else [n.target]
            part = _request_part(n.value)
            for t in targets:
                if isinstance(t, ast.Name):
                    if part:
                        var_part[t.id] = part
                    v = n.value
                    if isinstance(v, ast.Attribute) and v.attr == "username" and isinstance(v.value, ast.Call):
                        sender_vars.add(t.id)
    for n in body_nodes:
        if isinstance(n, ast.Attribute):
            if n.attr == "json" and isinstance(n.value, ast.Name) and n.value.id in ("resp", "response"):
                reads.add("response")
            if n.attr in PERM_ATTRS:
                perms.add(n.attr)
            elif n.attr == "is_admin":
                admin = True
            if (p := _request_part(n)) is not None:
                reads.add(p)
        if isinstance(n, ast.Return) and isinstance(n.value, ast.Constant) and isinstance(n.value.value, bool):
            const_returns.add(str(n.value.value).lower())
        if isinstance(n, ast.Compare) and any(isinstance(o, (ast.Eq, ast.NotEq)) for o in n.ops):
            names = {x.id for x in [n.left, *n.comparators] if isinstance(x, ast.Name)}
            if names & sender_vars:
                sender_check = True
        if not isinstance(n, ast.Call):
            continue
        f = n.func
        if (p := _request_part(n)) is not None:
            reads.add(p)
        if isinstance(f, ast.Name):
            name = f.id
            if name == "Requirement" and len(n.args) >= 3:
                # Later MLflow (role model): Requirement(resource_type, id, action, ...).
                rtype = ast.unparse(n.args[0]).removeprefix("RESOURCE_TYPE_").lower()
                action = _const_str(n.args[2]) or ast.unparse(n.args[2])
                requirements.add(f"{rtype}:{action}")
            if name == "_get_request_message" and n.args and isinstance(n.args[0], ast.Call):
                params.add(("request_message", ast.unparse(n.args[0].func)))
            if name in PARAM_ACCESSORS and n.args and (k := _const_str(n.args[0])):
                params.add((PARAM_ACCESSORS[name], k))
            if name == "getattr" and len(n.args) >= 2 and (k := _const_str(n.args[1])):
                params.add(("graphql_input", k))
            target = _resolve(fn, name, ip)
            if target is not None:
                calls.add(name)
                consts = [a.value for a in n.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
                if consts:
                    # _authorize_run("update"): the action a shared helper is asked for.
                    call_args.add(f"{name}({', '.join(repr(c) for c in consts)})")
            if name == "get_job":
                lookups.add("get_job")
        elif isinstance(f, ast.Attribute):
            recv = f.value
            key = _const_str(n.args[0]) if n.args else None
            part = _request_part(recv)
            if part is None and isinstance(recv, ast.Name) and recv.id in var_part:
                part = var_part[recv.id]
            if f.attr in ("get", "getlist", "__getitem__", "pop") and key is not None:
                if part is not None:
                    src = part + ("_list" if f.attr == "getlist" else "")
                    params.add((src, key))
                elif not (isinstance(recv, ast.Name) and recv.id in ("os", "environ")):
                    params.add(("local:" + ast.unparse(recv), key))
            if f.attr == "get" and not n.args and isinstance(recv, ast.Name) and re.match(r"^_?MLFLOW_", recv.id):
                env_switches.add(recv.id)
            text = ast.unparse(recv)
            if "store" in text.lower() and not text.startswith("request"):
                lookups.add(f"{text}.{f.attr}")
            if f.attr in ("sender_is_admin",):
                admin = True
    for n in body_nodes:
        if isinstance(n, ast.Subscript) and (k := _const_str(n.slice)):
            recv = n.value
            part = _request_part(recv) or (var_part.get(recv.id) if isinstance(recv, ast.Name) else None)
            if part is not None:
                params.add((part, k))
    if "sender_is_admin" in calls:
        admin = True
    return {
        "admin_check": admin,
        "call_args": sorted(call_args),
        "calls": sorted(calls),
        "const_returns": sorted(const_returns),
        "env_switches": sorted(env_switches),
        "lookups": sorted(lookups),
        "params": [{"source": s, "key": k} for s, k in sorted(params)],
        "permissions": sorted(perms, key=PERM_ATTRS.index),
        "reads": sorted(reads),
        "requirements": sorted(requirements),
        "sender_check": sender_check,
    }


def _resolve(fn: Func, name: str, ip: Interp) -> Func | None:
    v = fn.module.env.get(name)
    if isinstance(v, _LazyImport):
        try:
            v = v.resolve()
        except Exception:  # noqa: BLE001 - an unresolvable import is simply not followed
            return None
        fn.module.env[name] = v
    return v if isinstance(v, Func) else None


def flatten(fn: Func, ip: Interp, cache: dict[str, dict]) -> tuple[dict, list[Func]]:
    """flatten unions fn's facts with those of the functions it calls in its own module.

    It returns the union and every function it visited, so their direct facts can be listed.
    """
    seen: dict[str, Func] = {}
    order: list[Func] = []

    def visit(f: Func) -> None:
        if f.qual in seen:
            return
        seen[f.qual] = f
        order.append(f)
        if f.qual not in cache:
            cache[f.qual] = direct_facts(f, ip)
        if STOP.match(f.name) and f is not fn:
            return
        for c in cache[f.qual]["calls"]:
            g = _resolve(f, c, ip)
            if g is not None and g.module is fn.module:
                visit(g)

    visit(fn)
    total = {
        "admin_check": False,
        "const_returns": set(),
        "env_switches": set(),
        "lookups": set(),
        "params": set(),
        "permissions": set(),
        "reads": set(),
        "requirements": set(),
        "sender_check": False,
        "via": [],
    }
    for f in order:
        d = cache[f.qual]
        if STOP.match(f.name) and f is not fn:
            continue
        total["admin_check"] |= d["admin_check"]
        total["sender_check"] |= d["sender_check"]
        for k in ("env_switches", "lookups", "permissions", "reads", "requirements"):
            total[k] |= set(d[k])
        total["params"] |= {(p["source"], p["key"]) for p in d["params"]}
        if f is fn:
            total["const_returns"] |= set(d["const_returns"])
            total["call_args"] = d["call_args"]
        else:
            total["via"].append(f.name)
    out = {
        "admin_check": total["admin_check"],
        "call_args": total.get("call_args", []),
        "const_returns": sorted(total["const_returns"]),
        "env_switches": sorted(total["env_switches"]),
        "lookups": sorted(total["lookups"]),
        "params": [{"source": s, "key": k} for s, k in sorted(total["params"])],
        "permissions": sorted(total["permissions"], key=PERM_ATTRS.index),
        "reads": sorted(total["reads"]),
        "requirements": sorted(total["requirements"]),
        "sender_check": total["sender_check"],
        "via": sorted(total["via"]),
    }
    out["verdict"] = verdict(out)
    return out, order


def after_verdict(f: dict) -> str:
    """after_verdict names what an after-request handler does, or "unparsed"."""
    if any(re.match(r"^store\.create_\w+_permission", x) for x in f["lookups"]):
        return "grant_creator"
    if any(re.match(r"^store\.(delete|rename)_", x) for x in f["lookups"]):
        return "update_permission_rows"
    if f["permissions"] or f["requirements"]:
        return "filter_response"
    return "unparsed"


def verdict(f: dict) -> str:
    """verdict names the kind of check, or "unparsed" when the facts do not say."""
    if f["permissions"] or f["requirements"]:
        return "permission"
    if f["sender_check"]:
        return "self_or_admin"
    if f["admin_check"]:
        return "admin"
    if f["const_returns"] == ["true"] and not f["params"]:
        return "allow"
    if f["const_returns"] == ["false"] and not f["params"]:
        return "deny_unless_admin"
    return "unparsed"
