"""A small reader for the parts of .proto files that MLflow's route table uses.

MLflow's REST routes are declared in its .proto files, as the ``(rpc)`` option of each
service method (``databricks.proto``'s ``DatabricksRpcOptions``):

    rpc createExperiment(CreateExperiment) returns (CreateExperiment.Response) {
      option (rpc) = { endpoints: [{ method: "POST" path: "/mlflow/experiments/create"
                                     since: { major: 2 minor: 0 } }] visibility: PUBLIC };
    }

This module tokenizes proto source (it is not Python, so ``ast`` cannot read it) and keeps
packages, message and enum names (nested ones too), services, their methods, input types
and the ``(rpc)`` option as a plain dict. Field declarations are skipped. Python 3.11
standard library only.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<comment>//[^\n]*|/\*.*?\*/)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<number>-?(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?))
  | (?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<punct>[{}\[\]()<>;:,=.-])
    """,
    re.VERBOSE | re.DOTALL,
)


class ProtoSyntaxError(Exception):
    """ProtoSyntaxError says a .proto file has a construct this reader does not know."""


def _tokens(text: str) -> list[tuple[str, str]]:
    out = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ProtoSyntaxError(f"unexpected character {text[pos]!r} at offset {pos}")
        pos = m.end()
        kind = m.lastgroup
        if kind in ("ws", "comment"):
            continue
        out.append((kind, m.group()))
    return out


def _unquote(s: str) -> str:
    body = s[1:-1]
    return bytes(body, "utf-8").decode("unicode_escape") if "\\" in body else body


@dataclasses.dataclass
class Endpoint:
    """Endpoint is one HttpEndpoint of an (rpc) option."""

    method: str
    path: str
    since_major: int
    since_minor: int


@dataclasses.dataclass
class Method:
    """Method is one rpc of a proto service."""

    name: str
    input_type: str  # fully qualified, without a leading dot
    options: dict
    endpoints: list[Endpoint]


@dataclasses.dataclass
class Service:
    """Service is one proto service with its methods in source order."""

    name: str  # fully qualified
    file: str
    methods: list[Method]


@dataclasses.dataclass
class ProtoFile:
    """ProtoFile is what this reader keeps of one .proto file."""

    path: str
    package: str
    messages: list[str]  # fully qualified names, nested ones included
    services: list[Service]
    raw_services: list[tuple[str, list[tuple[str, str, dict]]]]


class _Parser:
    def __init__(self, toks: list[tuple[str, str]]):
        self.toks = toks
        self.i = 0

    def peek(self, k: int = 0) -> str | None:
        j = self.i + k
        return self.toks[j][1] if j < len(self.toks) else None

    def kind(self) -> str | None:
        return self.toks[self.i][0] if self.i < len(self.toks) else None

    def next(self) -> str:
        if self.i >= len(self.toks):
            raise ProtoSyntaxError("unexpected end of file")
        v = self.toks[self.i][1]
        self.i += 1
        return v

    def expect(self, v: str) -> None:
        got = self.next()
        if got != v:
            raise ProtoSyntaxError(f"expected {v!r}, got {got!r}")

    def skip_statement(self) -> None:
        # Skips to the end of a statement: a ';' at depth 0, or a balanced {...} block.
        depth = 0
        while True:
            t = self.next()
            if t in "{[(" and len(t) == 1:
                depth += 1
            elif t in "}])" and len(t) == 1:
                depth -= 1
                if depth == 0 and t == "}":
                    if self.peek() == ";":
                        self.next()
                    return
            elif t == ";" and depth == 0:
                return

    def text_value(self):
        # Protobuf text format: a message {...}, a list [...], a scalar.
        t = self.peek()
        if t == "{":
            return self.text_message()
        if t == "[":
            self.next()
            items = []
            while self.peek() != "]":
                items.append(self.text_value())
                if self.peek() == ",":
                    self.next()
            self.next()
            return items
        tok = self.next()
        if tok.startswith(('"', "'")):
            s = _unquote(tok)
            while self.peek() is not None and self.peek().startswith(('"', "'")):
                s += _unquote(self.next())
            return s
        if re.fullmatch(r"-?\d+", tok):
            return int(tok)
        return tok

    def text_message(self) -> dict:
        self.expect("{")
        out: dict = {}
        while self.peek() != "}":
            key = self.next()
            if key == "[":  # extension field name
                key = "[" + self.next() + "]"
                self.expect("]")
            if self.peek() == ":":
                self.next()
            val = self.text_value()
            if key in out:
                prev = out[key]
                out[key] = (prev if isinstance(prev, list) else [prev]) + (
                    val if isinstance(val, list) else [val]
                )
            else:
                out[key] = val
            if self.peek() in (",", ";"):
                self.next()
        self.next()
        return out

    def parse_file(self):
        package = ""
        messages: list[str] = []
        services = []
        while self.i < len(self.toks):
            t = self.peek()
            if t == "package":
                self.next()
                package = self.next()
                self.expect(";")
            elif t in ("message", "enum"):
                self.parse_message(package, messages)
            elif t == "service":
                services.append(self.parse_service())
            elif t == ";":
                self.next()
            else:  # syntax, import, option, extend
                self.skip_statement()
        return package, messages, services

    def parse_message(self, scope: str, messages: list[str]) -> None:
        self.next()  # message / enum
        name = self.next()
        full = f"{scope}.{name}" if scope else name
        messages.append(full)
        self.expect("{")
        while self.peek() != "}":
            t = self.peek()
            if t in ("message", "enum"):
                self.parse_message(full, messages)
            elif t in ("oneof", "extend"):
                self.next()
                self.next()
                self.skip_block()
            else:
                self.skip_statement()
        self.next()

    def skip_block(self) -> None:
        self.expect("{")
        depth = 1
        while depth:
            t = self.next()
            if t == "{":
                depth += 1
            elif t == "}":
                depth -= 1

    def parse_service(self):
        self.next()
        name = self.next()
        self.expect("{")
        methods = []
        while self.peek() != "}":
            if self.peek() == "rpc":
                self.next()
                mname = self.next()
                self.expect("(")
                if self.peek() == "stream":
                    self.next()
                req = self.next()
                self.expect(")")
                self.expect("returns")
                self.expect("(")
                while self.next() != ")":
                    pass
                options: dict = {}
                if self.peek() == "{":
                    self.next()
                    while self.peek() != "}":
                        if self.peek() == "option":
                            self.next()
                            oname = ""
                            while self.peek() != "=":
                                oname += self.next()
                            self.next()
                            options[oname] = self.text_value()
                            if self.peek() == ";":
                                self.next()
                        elif self.peek() == ";":
                            self.next()
                        else:
                            self.skip_statement()
                    self.next()
                elif self.peek() == ";":
                    self.next()
                methods.append((mname, req, options))
            else:
                self.skip_statement()
        self.next()
        return name, methods


def _resolve(type_name: str, scope: str, known: set[str]) -> str:
    """Resolves a proto type name as protoc does: innermost scope first."""
    if type_name.startswith("."):
        return type_name[1:]
    parts = scope.split(".") if scope else []
    while True:
        cand = ".".join(parts + [type_name])
        if cand in known:
            return cand
        if not parts:
            return type_name
        parts.pop()


def parse_tree(proto_dir: pathlib.Path) -> tuple[dict[str, ProtoFile], list[str]]:
    """parse_tree reads every .proto file directly under proto_dir.

    It returns the files by their name (``service.proto``) and a list of problems
    (files it could not read), so a caller can report them instead of guessing.
    """
    files: dict[str, ProtoFile] = {}
    problems: list[str] = []
    for p in sorted(proto_dir.glob("*.proto")):
        try:
            package, messages, raw = _Parser(_tokens(p.read_text())).parse_file()
        except ProtoSyntaxError as e:
            problems.append(f"{p.name}: {e}")
            continue
        files[p.name] = ProtoFile(p.name, package, messages, [], raw)
    known = {m for f in files.values() for m in f.messages}
    for f in files.values():
        for sname, methods in f.raw_services:
            full = f"{f.package}.{sname}" if f.package else sname
            svc = Service(full, f.path, [])
            for mname, req, options in methods:
                eps = []
                rpc = options.get("(rpc)", {})
                raw_eps = rpc.get("endpoints", []) if isinstance(rpc, dict) else []
                if isinstance(raw_eps, dict):
                    raw_eps = [raw_eps]
                for e in raw_eps:
                    since = e.get("since", {})
                    # Proto2 defaults, as the generated Python classes return them:
                    # HttpEndpoint.method defaults to "POST", ApiVersion fields to 0.
                    eps.append(
                        Endpoint(
                            e.get("method", "POST"),
                            e.get("path", ""),
                            since.get("major", 0),
                            since.get("minor", 0),
                        )
                    )
                svc.methods.append(Method(mname, _resolve(req, f.package, known), options, eps))
            f.services.append(svc)
    return files, problems
