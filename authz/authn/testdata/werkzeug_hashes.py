#!/usr/bin/env python3
"""Writes werkzeug_hashes.json: users.password_hash values with known passwords.

MLflow stores werkzeug.security.generate_password_hash(password) in
users.password_hash (mlflow/server/auth/sqlalchemy_store.py). This script
reproduces, with the Python standard library only, what werkzeug's
_hash_internal and generate_password_hash compute
(https://github.com/pallets/werkzeug/blob/3.1.8/src/werkzeug/security.py):

  scrypt:  hashlib.scrypt(password.encode(), salt=salt.encode(), n, r, p,
                          maxmem=132*n*r*p).hex()     -> "scrypt:n:r:p$salt$hex"
  pbkdf2:  hashlib.pbkdf2_hmac(name, password.encode(), salt.encode(),
                               iterations).hex()      -> "pbkdf2:name:iters$salt$hex"

The salt is the ASCII salt string itself, never decoded. werkzeug <= 3.1.8
draws it with gen_salt(16) (16 chars of [A-Za-z0-9]); its main branch uses
secrets.token_urlsafe(16) (22 chars of [A-Za-z0-9_-]); both are here. Salts
are fixed so the file is reproducible: python3 werkzeug_hashes.py > werkzeug_hashes.json
"""
import hashlib
import json


def scrypt(password, salt, n=2**15, r=8, p=1):
    h = hashlib.scrypt(password.encode(), salt=salt.encode(), n=n, r=r, p=p, maxmem=132 * n * r * p).hex()
    return f"scrypt:{n}:{r}:{p}${salt}${h}"


def pbkdf2(password, salt, iterations, name="sha256"):
    h = hashlib.pbkdf2_hmac(name, password.encode(), salt.encode(), iterations).hex()
    return f"pbkdf2:{name}:{iterations}${salt}${h}"


VECTORS = [
    # werkzeug >= 3.0 default (what MLflow 2.9+ writes).
    ("scrypt default", "alice-s3cret-pass", lambda pw: scrypt(pw, "eQ7rJ2mHx9LsTb4K")),
    ("scrypt token_urlsafe salt", "correct horse battery staple",
     lambda pw: scrypt(pw, "Zk3-_q9Xw1Lr7TbPc2Yh0A")),
    ("scrypt utf-8 password", "pässwörd-ünïcode-\U0001f511", lambda pw: scrypt(pw, "Ab12Cd34Ef56Gh78")),
    ("scrypt colon and dollar in password", "a:b$c:d$e-long-enough", lambda pw: scrypt(pw, "colonDollar12345")),
    ("scrypt other parameters", "alice-s3cret-pass", lambda pw: scrypt(pw, "smallParams12345", n=1024, r=4, p=2)),
    # werkzeug 2.3-3.0 pbkdf2 default, and werkzeug < 2.3.
    ("pbkdf2 600000", "alice-s3cret-pass", lambda pw: pbkdf2(pw, "pBkDf2SaLt000001", 600000)),
    ("pbkdf2 260000", "old-mlflow-pass", lambda pw: pbkdf2(pw, "pBkDf2SaLt000002", 260000)),
    ("pbkdf2 utf-8 password", "pässwörd-ünïcode-\U0001f511", lambda pw: pbkdf2(pw, "pBkDf2SaLt000003", 1000)),
]

print(json.dumps([{"name": n, "password": pw, "hash": f(pw)} for n, pw, f in VECTORS], indent=1, ensure_ascii=False))
