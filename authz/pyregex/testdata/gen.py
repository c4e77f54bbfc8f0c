"""Writes python.json: what Python's re.match answers for each case below.

Run from this directory with the Python that mlflow-oidc-auth runs on:
    python3 gen.py > python.json
The Go test reads python.json and never runs Python. Each case is
[pattern, name, answer] where answer is true, false or "error" (re.compile
refuses the pattern, so mlflow-oidc-auth's resolver fails the request).
"""
import json
import re
import sys
import warnings

PATTERNS = [
    "", "team-a", "team-a/.*", "^team-a/", r"team-a\/", "prod$", r"prod\Z", "(?m)prod$", "prod$\n",
    ".*-prod", "[a-c]+x", "[^a-c]x", "[]a]+", "[a-]+", "[-a]+", r"[\d-]+", r"[\w.]+", "[.]", r"[\]]",
    r"\d+", r"\D+", r"\w+", r"\W", r"\s", r"\S+", r"\bteam\b", r"te\Bam",
    "(?i)TEAM", "(?i:TEAM)-x", "(?s).x", ".x", "(?m)^b", "a|b", "a|", "(a|b)c", "(?:a)+", "(?P<n>a)b",
    "a{2}", "a{2,}", "a{,2}b", "a{,}b", "a{}", "a{x}", "a{2", "{", "}", "a{3,2}", "a{2}?", "a*?b", "a??b",
    r"\x41", r"\x4", r"\u00e9", r"\U0001F600", r"\0", r"\012", r"\101", r"\1", r"(a)\1", r"\12",
    r"[\101]", r"[\8]", r"\N{DIGIT ONE}", r"\q", r"\é", r"\.", r"\-", r"\ ", "a\\", "(?=a)a", "(?!b)a",
    "(?<=a)b", "(?<!a)b", "(?>a)", "(a)(?(1)b)", "a*+", "a++", "a**", "*a", "^*", "a|*", "(?i)(?m)a$",
    "a(?i)b", "(?x) a", "(?a)\\w", "(?u)a", "(?L)a", "(?-i:a)", "(?i-s:a.)", "(?#c)a", "a(?#c)*", "(a",
    "a)", "[a", "[]", "[^]", "[z-a]", r"[\w-z]", r"[a-\w]", "[[:alpha:]]", "[a--b]", "(?P=n)", "(?P<1>a)",
    "(?<n>a)", r"[\b]", r"\b", r"[\s]", r"[\S]", r"[^\W]", "\u00e9t\u00e9", "caf\u00e9", r"\$", "$",
]

NAMES = [
    "", "team-a", "team-a/churn", "TEAM-a", "team", "team-b", "prod", "prod\n", "my-prod", "x-prod-y",
    "abx", "dx", "]a", "a-", "-a", "12-3", "a.b", "a1_", "AB", "a\nb", "a\x0bb", "a\x1cb", " ", "\t",
    "été", "café", "café-prod", "\u0663", "\u00a0", "\u212a", "ſ", "aa", "aaa", "b", "ab", "bc", "ac",
    "a{}", "a{x}", "a{2", "{", "}", "A", "\x00", "\n", "1", "\b", "$", "\\", "a$", "😀",
]


def answer(pattern, name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            compiled = re.compile(pattern)
        except re.error:
            return "error"
    return compiled.match(name) is not None


cases = [[p, n, answer(p, n)] for p in PATTERNS for n in NAMES]
sys.stdout.write('{"python": %s, "cases": [\n' % json.dumps(sys.version.split()[0]))
sys.stdout.write(",\n".join(json.dumps(c, ensure_ascii=False) for c in cases))
sys.stdout.write("\n]}\n")
