"""A small, side-effect-free evaluator for the module-level Python that builds MLflow's routes.

MLflow computes its route tables at import time (``handlers.get_endpoints()``, the dict
comprehensions that build ``BEFORE_REQUEST_VALIDATORS``, ``app.add_url_rule`` loops, FastAPI
router decorators). Copying those tables by hand is what drifted, so this module *runs* that
code on a model of its inputs instead of reading it with patterns:

- source is parsed with ``ast``; only the mlflow tree given on the command line is read;
- strings, numbers, lists, dicts, comprehensions, f-strings, ``re.sub`` and calls of functions
  defined in the tree are evaluated for real;
- protobuf classes and services are modelled from the .proto files (``protoparse``), with the
  small descriptor API that ``handlers.get_service_endpoints`` uses;
- Flask apps, FastAPI apps and routers are recorders that keep the routes registered on them;
- the process environment is empty (``os.environ.get`` returns None), which is how MLflow runs
  without ``--static-prefix``;
- anything else (third-party calls, I/O) is an ``Opaque`` value. A statement whose value needs
  an opaque input is skipped and logged, never guessed.

Python 3.11 standard library only.
"""

from __future__ import annotations

import ast
import dataclasses
import pathlib
import re
from typing import Any

from protoparse import ProtoFile, Service


class Unknown(Exception):
    """Unknown says a value depends on something this evaluator does not model."""


class Opaque:
    """Opaque stands for a value the evaluator does not compute (third-party objects, I/O)."""

    def __init__(self, desc: str):
        self.desc = desc

    def __repr__(self) -> str:
        return f"<opaque {self.desc}>"


class External:
    """External is a name imported from outside the mlflow tree (flask.Flask, os.environ)."""

    def __init__(self, qualname: str):
        self.qualname = qualname

    def __repr__(self) -> str:
        return f"<external {self.qualname}>"


class Func:
    """Func is a function or lambda defined in the mlflow tree."""

    def __init__(self, module: "Module", node: ast.AST, name: str, closure: dict | None, qual: str):
        self.module = module
        self.node = node
        self.name = name
        self.closure = closure
        self.qual = qual

    def __repr__(self) -> str:
        return f"<func {self.qual}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Func) and other.qual == self.qual

    def __hash__(self) -> int:
        return hash(("func", self.qual))


class Bound:
    """Bound is a method of a ClassVal bound to an instance (or the class)."""

    def __init__(self, func: Func, self_val: Any):
        self.func = func
        self.self_val = self_val


class ClassVal:
    """ClassVal is a class defined in the mlflow tree, with its class-level attributes."""

    def __init__(self, module: "Module", name: str, node: ast.ClassDef):
        self.module = module
        self.name = name
        self.node = node
        self.attrs: dict[str, Any] = {}
        self.bases: list[Any] = []
        self.qual = f"{module.name}.{name}"

    def lookup(self, attr: str) -> Any:
        if attr in self.attrs:
            return self.attrs[attr]
        for b in self.bases:
            if isinstance(b, ClassVal):
                try:
                    return b.lookup(attr)
                except Unknown:
                    pass
        raise Unknown(f"{self.qual}.{attr}")

    def __repr__(self) -> str:
        return f"<class {self.qual}>"


class EnumMember:
    """EnumMember is ``SomeEnum.NAME`` for a class in the tree; hashable for dict keys."""

    def __init__(self, cls: ClassVal, name: str, value: Any):
        self.cls = cls
        self.name = name
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EnumMember) and (other.cls.qual, other.name) == (
            self.cls.qual,
            self.name,
        )

    def __hash__(self) -> int:
        return hash((self.cls.qual, self.name))


class Instance:
    """Instance is an object of a ClassVal; only its class attributes are known."""

    def __init__(self, cls: ClassVal):
        self.cls = cls


@dataclasses.dataclass(frozen=True)
class Pattern:
    """Pattern is a compiled regular expression (``re.compile``), kept as its source."""

    pattern: str


# --- protobuf model -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ProtoMsg:
    """ProtoMsg is a generated message class, identified by its full proto name."""

    full: str


class _Obj:
    """_Obj is a plain record whose attributes the evaluated code may read."""

    def __init__(self, **kw: Any):
        self.__dict__.update(kw)


class ProtoServiceVal:
    """ProtoServiceVal models a generated service class, as get_service_endpoints uses it."""

    def __init__(self, svc: Service):
        self.svc = svc
        methods = []
        for m in svc.methods:
            eps = [
                _Obj(method=e.method, path=e.path, since=_Obj(major=e.since_major, minor=e.since_minor))
                for e in m.endpoints
            ]
            rpc = _Obj(endpoints=eps)
            methods.append(_Obj(name=m.name, _input=m.input_type, _options=_Obj(Extensions=_RpcExt(rpc))))
        self.DESCRIPTOR = _Obj(methods=methods, full_name=svc.name, name=svc.name.rsplit(".", 1)[-1])

    def __repr__(self) -> str:
        return f"<service {self.svc.name}>"


class _RpcExt:
    def __init__(self, rpc: _Obj):
        self.rpc = rpc


class ProtoServiceInstance:
    """ProtoServiceInstance is ``Service()``; it knows GetRequestClass."""

    def __init__(self, svc: ProtoServiceVal):
        self.svc = svc


class ProtoModule:
    """ProtoModule is a generated ``*_pb2`` module, backed by its .proto file."""

    def __init__(self, name: str, pf: ProtoFile | None):
        self.name = name
        self.pf = pf


class ModuleRef:
    """ModuleRef is ``import mlflow.x`` style access to a package path."""

    def __init__(self, name: str):
        self.name = name


# --- recorders --------------------------------------------------------------------------------


class Recorder:
    """Recorder collects route registrations made on a Flask app, FastAPI app or router."""

    def __init__(self, kind: str, desc: str, kwargs: dict | None = None):
        self.kind = kind  # flask | fastapi | router
        self.desc = desc
        self.kwargs = kwargs or {}
        self.routes: list[dict] = []
        self.included: list[tuple[Any, dict]] = []
        self.mounts: list[tuple[Any, Any]] = []
        self.hooks: list[tuple[str, Any]] = []


class RouteDecorator:
    """RouteDecorator is the result of ``app.route(...)`` or ``router.get(...)``."""

    def __init__(self, rec: Recorder, path: Any, methods: list[str] | None, kwargs: dict):
        self.rec = rec
        self.path = path
        self.methods = methods
        self.kwargs = kwargs


# --- evaluator ----------------------------------------------------------------------------------


class ReturnSignal(Exception):
    def __init__(self, value: Any):
        self.value = value


class BreakSignal(Exception):
    pass


class ContinueSignal(Exception):
    pass


_ROUTER_METHODS = {
    "get": ["GET"],
    "post": ["POST"],
    "put": ["PUT"],
    "patch": ["PATCH"],
    "delete": ["DELETE"],
    "head": ["HEAD"],
    "options": ["OPTIONS"],
    "api_route": None,
}

_SAFE_METHODS = {
    str: {
        "startswith", "endswith", "rstrip", "lstrip", "strip", "replace", "format", "join",
        "split", "lower", "upper", "partition", "rpartition", "removeprefix", "removesuffix",
    },
    list: {"append", "extend", "index", "count", "copy"},
    tuple: {"index", "count"},
    dict: {"get", "items", "keys", "values", "update", "copy", "setdefault", "pop"},
    set: {"add", "update", "union", "copy"},
    frozenset: {"union"},
}

_BUILTINS = {
    "len": len, "list": list, "tuple": tuple, "dict": dict, "set": set, "frozenset": frozenset,
    "sorted": sorted, "str": str, "int": int, "bool": bool, "any": any, "all": all,
    "enumerate": enumerate, "zip": zip, "range": range, "reversed": reversed, "min": min,
    "max": max, "float": float, "isinstance": None, "True": True, "False": False, "None": None,
}


class Module:
    """Module is one evaluated source file of the tree."""

    def __init__(self, name: str, path: pathlib.Path, tree: ast.Module, source: str):
        self.name = name
        self.path = path
        self.tree = tree
        self.source = source
        self.env: dict[str, Any] = {}
        self.funcs: dict[str, Func] = {}
        self.done = False


class Interp:
    """Interp loads modules of one MLflow source tree and evaluates them."""

    def __init__(self, root: pathlib.Path, protos: dict[str, ProtoFile]):
        self.root = root
        self.protos = protos
        self.modules: dict[str, Module] = {}
        self.log: list[str] = []
        self.services: dict[str, ProtoServiceVal] = {}
        self.recorders: list[Recorder] = []
        self.depth = 0
        self.lenient_funcs: set[str] = set()
        self.environ: dict[str, str] = {}

    # ---- modules

    def module_path(self, name: str) -> pathlib.Path | None:
        base = self.root.joinpath(*name.split("."))
        if (base / "__init__.py").is_file():
            return base / "__init__.py"
        if base.with_suffix(".py").is_file():
            return base.with_suffix(".py")
        return None

    def load(self, name: str) -> Module | ProtoModule | None:
        if name in self.modules:
            return self.modules[name]
        if name.endswith("_pb2") and name.startswith("mlflow.protos."):
            pf = self.protos.get(name.rsplit(".", 1)[1][: -len("_pb2")] + ".proto")
            return ProtoModule(name, pf)
        path = self.module_path(name)
        if path is None:
            return None
        src = path.read_text()
        mod = Module(name, path, ast.parse(src, filename=str(path)), src)
        self.modules[name] = mod
        self.exec_block(mod.tree.body, mod, mod.env, lenient=True)
        mod.done = True
        return mod

    def is_package(self, name: str) -> bool:
        return (self.root.joinpath(*name.split(".")) / "__init__.py").is_file() or self.root.joinpath(
            *name.split(".")
        ).is_dir()

    def module_attr(self, modname: str, attr: str) -> Any:
        mod = self.load(modname)
        if isinstance(mod, ProtoModule):
            return self.proto_attr(mod, attr)
        sub = f"{modname}.{attr}"
        if mod is not None and attr in mod.env:
            v = mod.env[attr]
            if isinstance(v, _LazyImport):
                if (v.module, v.name) == (modname, attr):
                    # "from mlflow.server import handlers" inside mlflow.server itself.
                    return ModuleRef(sub)
                v = v.resolve()
                mod.env[attr] = v
            return v
        if self.module_path(sub) is not None or sub.endswith("_pb2"):
            return ModuleRef(sub)
        if mod is not None and not mod.done:
            raise Unknown(f"{modname}.{attr} (circular import)")
        if mod is None:
            raise Unknown(f"module {modname} not in tree")
        raise Unknown(f"{modname}.{attr} not defined")

    def proto_attr(self, mod: ProtoModule, attr: str) -> Any:
        pf = mod.pf
        if pf is None:
            return Opaque(f"{mod.name}.{attr}")
        full = f"{pf.package}.{attr}" if pf.package else attr
        for svc in pf.services:
            if svc.name == full:
                if full not in self.services:
                    self.services[full] = ProtoServiceVal(svc)
                return self.services[full]
        if full in pf.messages:
            return ProtoMsg(full)
        return Opaque(f"{mod.name}.{attr}")

    # ---- statements

    def exec_block(self, body: list[ast.stmt], mod: Module, env: dict, lenient: bool) -> None:
        for st in body:
            if lenient:
                try:
                    self.exec_stmt(st, mod, env, lenient)
                except (ReturnSignal, BreakSignal, ContinueSignal):
                    raise
                except Unknown as e:
                    self.log.append(f"{mod.name}:{st.lineno}: skipped: {e}")
                    for name in _targets(st):
                        env.setdefault(name, Opaque(f"{mod.name}.{name}"))
                except RecursionError:
                    self.log.append(f"{mod.name}:{st.lineno}: skipped: recursion")
            else:
                self.exec_stmt(st, mod, env, lenient)

    def exec_stmt(self, st: ast.stmt, mod: Module, env: dict, lenient: bool) -> None:
        if isinstance(st, ast.Import):
            for a in st.names:
                if a.asname:
                    env[a.asname] = self.import_value(a.name)
                else:
                    top = a.name.split(".")[0]
                    env[top] = self.import_value(top)
        elif isinstance(st, ast.ImportFrom):
            base = st.module or ""
            if st.level:
                parts = mod.name.split(".")
                if mod.path.name != "__init__.py":
                    parts = parts[:-1]
                parts = parts[: len(parts) - (st.level - 1)]
                base = ".".join(parts + ([st.module] if st.module else []))
            for a in st.names:
                if a.name == "*":
                    continue
                env[a.asname or a.name] = _LazyImport(self, base, a.name)
        elif isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef)):
            qual = f"{mod.name}.{st.name}" if env is mod.env else f"{mod.name}.<local>.{st.name}"
            fn = Func(mod, st, st.name, None if env is mod.env else env, qual)
            if env is mod.env:
                mod.funcs[st.name] = fn
            env[st.name] = fn
            for dec in st.decorator_list:
                try:
                    d = self.eval_decorator(dec, mod, env)
                except Unknown:
                    continue
                if isinstance(d, RouteDecorator):
                    d.rec.routes.append(
                        {"path": d.path, "methods": d.methods, "view": fn, "kwargs": d.kwargs, "line": st.lineno}
                    )
        elif isinstance(st, ast.ClassDef):
            cls = ClassVal(mod, st.name, st)
            env[st.name] = cls
            for b in st.bases:
                try:
                    cls.bases.append(self.eval(b, mod, env))
                except Unknown:
                    cls.bases.append(Opaque("base"))
            is_enum = any(
                isinstance(b, External) and b.qualname.split(".")[-1] in ("Enum", "StrEnum", "IntEnum")
                for b in cls.bases
            )
            cenv = dict(env)
            for cst in st.body:
                if isinstance(cst, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    cls.attrs[cst.name] = Func(mod, cst, cst.name, None, f"{cls.qual}.{cst.name}")
                elif isinstance(cst, (ast.Assign, ast.AnnAssign)) and getattr(cst, "value", None) is not None:
                    tgts = cst.targets if isinstance(cst, ast.Assign) else [cst.target]
                    try:
                        v = self.eval(cst.value, mod, cenv)
                    except Unknown:
                        v = Opaque(f"{cls.qual} attr")
                    for t in tgts:
                        if isinstance(t, ast.Name):
                            val = EnumMember(cls, t.id, v) if is_enum else v
                            cls.attrs[t.id] = val
                            cenv[t.id] = v
        elif isinstance(st, ast.Assign):
            v = self.eval(st.value, mod, env)
            for t in st.targets:
                self.assign(t, v, mod, env)
        elif isinstance(st, ast.AnnAssign):
            if st.value is not None:
                self.assign(st.target, self.eval(st.value, mod, env), mod, env)
        elif isinstance(st, ast.AugAssign):
            cur = self.eval(st.target, mod, env)
            v = self.binop(st.op, cur, self.eval(st.value, mod, env))
            self.assign(st.target, v, mod, env)
        elif isinstance(st, ast.Expr):
            if isinstance(st.value, ast.Constant):
                return
            self.eval(st.value, mod, env)
        elif isinstance(st, ast.Return):
            raise ReturnSignal(None if st.value is None else self.eval(st.value, mod, env))
        elif isinstance(st, ast.If):
            try:
                test = self.truth(self.eval(st.test, mod, env))
            except Unknown:
                if not lenient:
                    raise
                self.log.append(f"{mod.name}:{st.lineno}: both branches of an undecidable if")
                self.exec_block(st.body, mod, env, lenient)
                self.exec_block(st.orelse, mod, env, lenient)
                return
            self.exec_block(st.body if test else st.orelse, mod, env, lenient)
        elif isinstance(st, ast.For):
            it = self.eval(st.iter, mod, env)
            if isinstance(it, (Opaque, External)):
                raise Unknown(f"loop over {it!r}")
            for item in list(it):
                self.assign(st.target, item, mod, env)
                try:
                    self.exec_block(st.body, mod, env, lenient)
                except BreakSignal:
                    break
                except ContinueSignal:
                    continue
        elif isinstance(st, ast.Try):
            self.exec_block(st.body, mod, env, lenient)
            self.exec_block(st.orelse, mod, env, lenient)
            self.exec_block(st.finalbody, mod, env, lenient)
        elif isinstance(st, ast.With):
            self.exec_block(st.body, mod, env, lenient)
        elif isinstance(st, ast.Pass):
            return
        elif isinstance(st, ast.Break):
            raise BreakSignal()
        elif isinstance(st, ast.Continue):
            raise ContinueSignal()
        elif isinstance(st, ast.Raise):
            raise Unknown("raise")
        elif isinstance(st, (ast.Global, ast.Nonlocal, ast.Assert, ast.Delete)):
            return
        else:
            raise Unknown(f"statement {type(st).__name__}")

    def eval_decorator(self, dec: ast.expr, mod: Module, env: dict) -> Any:
        # Route decorators carry keyword arguments (response_model=..., dependencies=...)
        # that may be opaque; the route itself must not be lost because of them.
        if not isinstance(dec, ast.Call):
            return self.eval(dec, mod, env)
        fn = self.eval(dec.func, mod, env)
        if not isinstance(fn, _RecorderMethod):
            return self.eval(dec, mod, env)
        args = [self.eval(a, mod, env) for a in dec.args]
        kwargs = {}
        for k in dec.keywords:
            try:
                kwargs[k.arg] = self.eval(k.value, mod, env)
            except Unknown:
                kwargs[k.arg] = Opaque(ast.unparse(k.value))
        return fn.call(self, args, kwargs)

    def assign(self, target: ast.expr, v: Any, mod: Module, env: dict) -> None:
        if isinstance(target, ast.Name):
            env[target.id] = v
        elif isinstance(target, (ast.Tuple, ast.List)):
            if isinstance(v, (Opaque, External)):
                for el in target.elts:
                    self.assign(el, Opaque("unpacked"), mod, env)
                return
            vals = list(v)
            if len(vals) != len(target.elts):
                raise Unknown("unpack length")
            for el, x in zip(target.elts, vals):
                self.assign(el, x, mod, env)
        elif isinstance(target, ast.Subscript):
            obj = self.eval(target.value, mod, env)
            key = self.eval(target.slice, mod, env)
            if isinstance(obj, (dict, list)):
                obj[key] = v
            else:
                raise Unknown("subscript assignment on opaque")
        elif isinstance(target, ast.Attribute):
            obj = self.eval(target.value, mod, env)
            if isinstance(obj, Recorder):
                return
            raise Unknown("attribute assignment")
        else:
            raise Unknown(f"assign to {type(target).__name__}")

    # ---- expressions

    def truth(self, v: Any) -> bool:
        if isinstance(v, (Opaque, External)):
            raise Unknown(f"truth of {v!r}")
        return bool(v)

    def lookup(self, name: str, mod: Module, env: dict) -> Any:
        if name in env:
            v = env[name]
        elif name in mod.env:
            v = mod.env[name]
        elif name in _BUILTINS:
            v = _BUILTINS[name]
            if v is None and name != "None":
                return External(name)
            return v
        elif name == "__name__":
            return mod.name
        elif name == "__file__":
            return str(mod.path)
        else:
            raise Unknown(f"name {name} in {mod.name}")
        if isinstance(v, _LazyImport):
            holder = env if name in env else mod.env
            v = v.resolve()
            holder[name] = v
        return v

    def eval(self, node: ast.expr, mod: Module, env: dict) -> Any:
        m = getattr(self, "ev_" + type(node).__name__, None)
        if m is None:
            raise Unknown(f"expression {type(node).__name__}")
        return m(node, mod, env)

    def ev_Constant(self, n, mod, env):
        return n.value

    def ev_Name(self, n, mod, env):
        return self.lookup(n.id, mod, env)

    def ev_JoinedStr(self, n, mod, env):
        out = []
        for v in n.values:
            if isinstance(v, ast.Constant):
                out.append(v.value)
            else:
                x = self.eval(v.value, mod, env)
                if isinstance(x, (Opaque, External)) or not isinstance(x, (str, int, float)):
                    raise Unknown("f-string of non-scalar")
                spec = ""
                if v.format_spec is not None:
                    spec = self.eval(v.format_spec, mod, env)
                out.append(format(x, spec))
        return "".join(out)

    def eval_items(self, elts: list[ast.expr], mod: Module, env: dict) -> list:
        """Evaluates list elements or positional arguments, expanding *starred ones."""
        out = []
        for e in elts:
            if isinstance(e, ast.Starred):
                out.extend(self.eval(e.value, mod, env))
            else:
                out.append(self.eval(e, mod, env))
        return out

    def ev_List(self, n, mod, env):
        return self.eval_items(n.elts, mod, env)

    def ev_Tuple(self, n, mod, env):
        return tuple(self.ev_List(n, mod, env))

    def ev_Set(self, n, mod, env):
        return set(self.ev_List(n, mod, env))

    def ev_Dict(self, n, mod, env):
        out = {}
        for k, v in zip(n.keys, n.values):
            if k is None:
                out.update(self.eval(v, mod, env))
            else:
                out[self.eval(k, mod, env)] = self.eval(v, mod, env)
        return out

    def ev_BinOp(self, n, mod, env):
        return self.binop(n.op, self.eval(n.left, mod, env), self.eval(n.right, mod, env))

    def binop(self, op, a, b):
        if any(isinstance(x, (Opaque, External)) for x in (a, b)):
            raise Unknown("binop on opaque")
        ops = {
            ast.Add: lambda: a + b,
            ast.Mod: lambda: a % b,
            ast.BitOr: lambda: a | b,
            ast.Sub: lambda: a - b,
            ast.Mult: lambda: a * b,
            ast.Pow: lambda: a**b,
            ast.Div: lambda: a / b,
            ast.FloorDiv: lambda: a // b,
        }
        f = ops.get(type(op))
        if f is None:
            raise Unknown(f"operator {type(op).__name__}")
        try:
            return f()
        except TypeError as e:
            raise Unknown(f"binop: {e}") from None

    def ev_UnaryOp(self, n, mod, env):
        v = self.eval(n.operand, mod, env)
        if isinstance(n.op, ast.Not):
            return not self.truth(v)
        if isinstance(n.op, ast.USub) and isinstance(v, (int, float)):
            return -v
        raise Unknown("unary")

    def ev_BoolOp(self, n, mod, env):
        if isinstance(n.op, ast.And):
            v = True
            for e in n.values:
                v = self.eval(e, mod, env)
                if not self.truth(v):
                    return v
            return v
        v = False
        for e in n.values:
            v = self.eval(e, mod, env)
            if self.truth(v):
                return v
        return v

    def ev_Compare(self, n, mod, env):
        left = self.eval(n.left, mod, env)
        for op, comp in zip(n.ops, n.comparators):
            right = self.eval(comp, mod, env)
            if isinstance(op, (ast.Is, ast.IsNot)):
                r = left is right if not isinstance(left, Opaque) else None
                if r is None:
                    raise Unknown("is on opaque")
                r = r if isinstance(op, ast.Is) else not r
            else:
                if any(isinstance(x, (Opaque, External)) for x in (left, right)):
                    raise Unknown("compare opaque")
                try:
                    r = {
                        ast.Eq: lambda: left == right,
                        ast.NotEq: lambda: left != right,
                        ast.In: lambda: left in right,
                        ast.NotIn: lambda: left not in right,
                        ast.Lt: lambda: left < right,
                        ast.LtE: lambda: left <= right,
                        ast.Gt: lambda: left > right,
                        ast.GtE: lambda: left >= right,
                    }[type(op)]()
                except TypeError as e:
                    raise Unknown(f"compare: {e}") from None
            if not r:
                return False
            left = right
        return True

    def ev_IfExp(self, n, mod, env):
        return self.eval(n.body if self.truth(self.eval(n.test, mod, env)) else n.orelse, mod, env)

    def ev_NamedExpr(self, n, mod, env):
        v = self.eval(n.value, mod, env)
        env[n.target.id] = v
        return v

    def ev_Subscript(self, n, mod, env):
        obj = self.eval(n.value, mod, env)
        if isinstance(n.slice, ast.Slice):
            lo = self.eval(n.slice.lower, mod, env) if n.slice.lower else None
            hi = self.eval(n.slice.upper, mod, env) if n.slice.upper else None
            return obj[lo:hi]
        key = self.eval(n.slice, mod, env)
        if isinstance(obj, _RpcExt):
            return obj.rpc
        if isinstance(obj, (dict, list, tuple, str)):
            try:
                return obj[key]
            except (KeyError, IndexError, TypeError) as e:
                raise Unknown(f"subscript: {e!r}") from None
        if isinstance(obj, (External, Opaque, ClassVal)):
            return Opaque("subscript")  # typing generics and third-party containers
        raise Unknown("subscript")

    def ev_Attribute(self, n, mod, env):
        obj = self.eval(n.value, mod, env)
        return self.getattr(obj, n.attr)

    def getattr(self, obj: Any, attr: str) -> Any:
        if isinstance(obj, ModuleRef):
            return self.module_attr(obj.name, attr)
        if isinstance(obj, ProtoModule):
            return self.proto_attr(obj, attr)
        if isinstance(obj, External):
            return External(f"{obj.qualname}.{attr}")
        if isinstance(obj, Opaque):
            return Opaque(f"{obj.desc}.{attr}")
        if isinstance(obj, Func):
            if attr == "__name__":
                return obj.name
            raise Unknown(f"attribute {attr} of function")
        if isinstance(obj, ClassVal):
            if attr == "__name__":
                return obj.name
            return obj.lookup(attr)
        if isinstance(obj, Instance):
            v = obj.cls.lookup(attr)
            return Bound(v, obj) if isinstance(v, Func) else v
        if isinstance(obj, EnumMember):
            if attr == "value":
                return obj.value
            if attr == "name":
                return obj.name
            raise Unknown("enum attribute")
        if isinstance(obj, ProtoMsg):
            return ProtoMsg(f"{obj.full}.{attr}")
        if isinstance(obj, Recorder):
            return _RecorderMethod(obj, attr)
        if isinstance(obj, (ProtoServiceVal, _Obj)):
            if attr in ("GetOptions",):
                return _Native(lambda: obj._options)
            try:
                return getattr(obj, attr)
            except AttributeError:
                raise Unknown(f"attribute {attr}") from None
        if isinstance(obj, ProtoServiceInstance):
            if attr == "GetRequestClass":
                return _Native(lambda m: ProtoMsg(m._input))
            raise Unknown(f"service attribute {attr}")
        if isinstance(obj, Pattern):
            if attr == "pattern":
                return obj.pattern
            raise Unknown("pattern method")
        for typ, allowed in _SAFE_METHODS.items():
            if isinstance(obj, typ) and attr in allowed:
                return _Native(getattr(obj, attr))
        raise Unknown(f"attribute {attr} of {type(obj).__name__}")

    def ev_Call(self, n, mod, env):
        fn = self.eval(n.func, mod, env)
        args = self.eval_items(n.args, mod, env)
        kwargs = {}
        for k in n.keywords:
            if k.arg is None:
                kwargs.update(self.eval(k.value, mod, env))
            else:
                kwargs[k.arg] = self.eval(k.value, mod, env)
        return self.call(fn, args, kwargs)

    def call(self, fn: Any, args: list, kwargs: dict) -> Any:
        if isinstance(fn, _Native):
            try:
                return fn.f(*args, **kwargs)
            except (TypeError, ValueError, KeyError) as e:
                raise Unknown(f"native call: {e!r}") from None
        if isinstance(fn, Func):
            return self.call_func(fn, args, kwargs)
        if isinstance(fn, Bound):
            return self.call_func(fn.func, [fn.self_val, *args], kwargs)
        if isinstance(fn, ClassVal):
            return Instance(fn)
        if isinstance(fn, ProtoServiceVal):
            return ProtoServiceInstance(fn)
        if isinstance(fn, ProtoMsg):
            return fn  # a request message instance stands for its class
        if isinstance(fn, _RecorderMethod):
            return fn.call(self, args, kwargs)
        if isinstance(fn, External):
            return self.call_external(fn.qualname, args, kwargs)
        if fn in (len, list, tuple, dict, set, frozenset, sorted, str, int, bool, any, all,
                  enumerate, zip, range, reversed, min, max, float):
            if any(isinstance(a, (Opaque, External)) for a in args):
                raise Unknown("builtin on opaque")
            return fn(*args, **kwargs)
        if isinstance(fn, Opaque):
            return Opaque(f"{fn.desc}()")
        raise Unknown(f"call of {type(fn).__name__}")

    def call_external(self, q: str, args: list, kwargs: dict) -> Any:
        if q in ("os.environ.get", "os.getenv"):
            if args and args[0] in self.environ:
                return self.environ[args[0]]
            return kwargs.get("default", args[1] if len(args) > 1 else None)
        if q == "re.sub":
            if not all(isinstance(a, str) for a in args[:3]):
                raise Unknown("re.sub on non-strings")
            return re.sub(*args[:3])
        if q == "re.compile":
            if not isinstance(args[0], str):
                raise Unknown("re.compile of non-string")
            return Pattern(args[0])
        if q == "re.escape":
            return re.escape(args[0])
        if q in ("flask.Flask",):
            rec = Recorder("flask", "flask.Flask", kwargs)
            folder = kwargs.get("static_folder", "static")
            url = kwargs.get("static_url_path")
            if isinstance(folder, str) and url is None:
                # Flask (sansio/scaffold.py static_url_path) serves the static folder at
                # "/" + basename(static_folder) unless static_url_path is given.
                url = "/" + folder.rstrip("/").rsplit("/", 1)[-1]
            if isinstance(url, str):
                rec.routes.append(
                    {"path": f"{url}/<path:filename>", "methods": None, "view": None,
                     "kwargs": {}, "implicit": "Flask static_folder"}
                )
            self.recorders.append(rec)
            return rec
        if q in ("fastapi.FastAPI",):
            rec = Recorder("fastapi", "fastapi.FastAPI", kwargs)
            self.recorders.append(rec)
            return rec
        if q in ("fastapi.APIRouter", "fastapi.routing.APIRouter"):
            rec = Recorder("router", "fastapi.APIRouter", kwargs)
            self.recorders.append(rec)
            return rec
        if q == "isinstance":
            raise Unknown("isinstance")
        if q.startswith("functools."):
            return Opaque(q)
        return Opaque(f"{q}()")

    def call_func(self, fn: Func, args: list, kwargs: dict) -> Any:
        node = fn.node
        self.depth += 1
        if self.depth > 60:
            self.depth -= 1
            raise Unknown("call depth")
        try:
            local: dict = {}
            a = node.args
            params = [p.arg for p in a.posonlyargs + a.args]
            defaults = a.defaults
            env_for_defaults = fn.closure if fn.closure is not None else fn.module.env
            for i, p in enumerate(params):
                if i < len(args):
                    local[p] = args[i]
                elif p in kwargs:
                    local[p] = kwargs[p]
                else:
                    di = i - (len(params) - len(defaults))
                    if di < 0:
                        raise Unknown(f"missing argument {p} of {fn.qual}")
                    local[p] = self.eval(defaults[di], fn.module, env_for_defaults)
            if a.vararg:
                local[a.vararg.arg] = tuple(args[len(params):])
            for k, d in zip(a.kwonlyargs, a.kw_defaults):
                if k.arg in kwargs:
                    local[k.arg] = kwargs[k.arg]
                elif d is not None:
                    local[k.arg] = self.eval(d, fn.module, env_for_defaults)
                else:
                    raise Unknown(f"missing keyword {k.arg}")
            if a.kwarg:
                local[a.kwarg.arg] = {k: v for k, v in kwargs.items() if k not in local}
            env = dict(fn.closure) if fn.closure is not None else {}
            env.update(local)
            if isinstance(node, ast.Lambda):
                return self.eval(node.body, fn.module, env)
            lenient = fn.qual in self.lenient_funcs
            try:
                self.exec_block(node.body, fn.module, env, lenient)
            except ReturnSignal as r:
                return r.value
            return None
        finally:
            self.depth -= 1

    def ev_Lambda(self, n, mod, env):
        return Func(mod, n, "<lambda>", dict(env), f"{mod.name}.<lambda>@{n.lineno}:{n.col_offset}")

    def comprehension(self, gens, mod, env, emit):
        def rec(i, e):
            if i == len(gens):
                emit(e)
                return
            g = gens[i]
            it = self.eval(g.iter, mod, e)
            if isinstance(it, (Opaque, External)):
                raise Unknown("comprehension over opaque")
            for item in list(it):
                e2 = dict(e)
                self.assign(g.target, item, mod, e2)
                if all(self.truth(self.eval(c, mod, e2)) for c in g.ifs):
                    rec(i + 1, e2)

        rec(0, dict(env))

    def ev_ListComp(self, n, mod, env):
        out = []
        self.comprehension(n.generators, mod, env, lambda e: out.append(self.eval(n.elt, mod, e)))
        return out

    ev_GeneratorExp = ev_ListComp

    def ev_SetComp(self, n, mod, env):
        return set(self.ev_ListComp(n, mod, env))

    def ev_DictComp(self, n, mod, env):
        out = {}

        def emit(e):
            out[self.eval(n.key, mod, e)] = self.eval(n.value, mod, e)

        self.comprehension(n.generators, mod, env, emit)
        return out

    def ev_Await(self, n, mod, env):
        raise Unknown("await")

    def import_value(self, name: str) -> Any:
        if name == "mlflow" or name.startswith("mlflow."):
            return ModuleRef(name)
        return External(name)


class _Native:
    def __init__(self, f):
        self.f = f


class _RecorderMethod:
    def __init__(self, rec: Recorder, attr: str):
        self.rec = rec
        self.attr = attr

    def call(self, ip: Interp, args: list, kwargs: dict) -> Any:
        rec, attr = self.rec, self.attr
        if rec.kind == "flask":
            if attr == "route":
                return RouteDecorator(rec, args[0] if args else kwargs.get("rule"), kwargs.get("methods"), kwargs)
            if attr == "add_url_rule":
                rule = args[0] if args else kwargs.get("rule")
                view = kwargs.get("view_func", args[2] if len(args) > 2 else None)
                rec.routes.append({"path": rule, "methods": kwargs.get("methods"), "view": view, "kwargs": {}})
                return None
            if attr in ("before_request", "after_request", "teardown_request"):
                rec.hooks.append((attr, args[0] if args else None))
                return args[0] if args else None
        else:
            if attr in _ROUTER_METHODS:
                methods = _ROUTER_METHODS[attr]
                if methods is None:
                    methods = kwargs.get("methods")
                return RouteDecorator(rec, args[0] if args else kwargs.get("path"), methods, kwargs)
            if attr == "include_router":
                rec.included.append((args[0], kwargs))
                return None
            if attr == "mount":
                rec.mounts.append((args[0] if args else kwargs.get("path"), args[1] if len(args) > 1 else kwargs.get("app")))
                return None
            if attr == "middleware":
                return Opaque("middleware decorator")
        return Opaque(f"{rec.desc}.{attr}()")


class _LazyImport:
    def __init__(self, ip: Interp, module: str, name: str):
        self.ip = ip
        self.module = module
        self.name = name

    def resolve(self) -> Any:
        if self.module == "mlflow" or self.module.startswith("mlflow."):
            return self.ip.module_attr(self.module, self.name)
        return External(f"{self.module}.{self.name}")


def _targets(st: ast.stmt) -> list[str]:
    out = []
    if isinstance(st, ast.Assign):
        for t in st.targets:
            out += [n.id for n in ast.walk(t) if isinstance(n, ast.Name)]
    elif isinstance(st, (ast.AnnAssign, ast.AugAssign)) and isinstance(st.target, ast.Name):
        out.append(st.target.id)
    return out
