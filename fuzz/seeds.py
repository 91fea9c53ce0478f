#!/usr/bin/env python3
"""Regenerates the seed corpora under fuzz/corpus/<target>/ (deterministic except ECDSA/RSA-PSS signatures).

Run from the repository root: python3 fuzz/seeds.py. Needs the `cryptography` package. Seeds are small
on purpose: the fuzzer grows its own corpus under fuzz/corpus (new files there are not meant to be
committed unless they cover something the seeds do not).
"""
import base64, hashlib, hmac, json, os, re, shutil

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEYS = os.path.join(ROOT, "tests", "fixtures", "keys")
CORPUS = os.path.join(ROOT, "fuzz", "corpus")
NOW = 1_700_000_000  # the fixed clock of tests/fuzz_targets/mod.rs
ISS, AUD = "https://idp.example", "api"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def load(name):
    with open(os.path.join(KEYS, name), "rb") as f:
        return serialization.load_pem_private_key(f.read(), password=None)


HS_SECRET = base64.urlsafe_b64decode(
    json.load(open(os.path.join(KEYS, "hs.jwks.json")))["keys"][0]["k"] + "==")


def sign(alg, kid, payload, header_extra=None):
    header = {"alg": alg, "typ": "JWT"}
    if kid:
        header["kid"] = kid
    header.update(header_extra or {})
    signing_input = f"{b64(json.dumps(header, separators=(',', ':')).encode())}." \
                    f"{b64(json.dumps(payload, separators=(',', ':')).encode())}".encode()
    if alg == "HS256":
        sig = hmac.new(HS_SECRET, signing_input, hashlib.sha256).digest()
    elif alg == "RS256":
        sig = load("rsa2048.pem").sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    elif alg == "PS256":
        sig = load("rsa2048.pem").sign(
            signing_input, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())
    elif alg in ("ES256", "ES384"):
        key = load("p256.pem" if alg == "ES256" else "p384.pem")
        der = key.sign(signing_input, ec.ECDSA(hashes.SHA256() if alg == "ES256" else hashes.SHA384()))
        r, s = utils.decode_dss_signature(der)
        n = 32 if alg == "ES256" else 48
        sig = r.to_bytes(n, "big") + s.to_bytes(n, "big")
    elif alg == "EdDSA":
        sig = load("ed25519.pem").sign(signing_input)
    else:
        raise ValueError(alg)
    return f"{signing_input.decode()}.{b64(sig)}"


def claims(**extra):
    c = {"iss": ISS, "aud": AUD, "sub": "alice", "iat": NOW - 60, "exp": NOW + 3600,
         "scope": "orders:read", "realm": {"role": "admin"}}
    c.update(extra)
    return c


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def reset(target):
    shutil.rmtree(os.path.join(CORPUS, target), ignore_errors=True)


# ---------------------------------------------------------------- config
reset("config")
with open(os.path.join(ROOT, "docs", "config.md")) as f:
    blocks = re.findall(r"```json\n(.*?)```", f.read(), re.S)
for i, block in enumerate(blocks):
    write("config", f"docs_{i}.json", block)
HS_JWKS = open(os.path.join(KEYS, "hs.jwks.json")).read()
full = {
    "name": "fuzz", "mode": "enforce", "on_no_match": "deny", "strip_failure_response": False,
    "jwt_cache": {"max_entries": 16},
    "jwt_providers": {"idp": {
        "issuer": ISS, "audiences": [AUD], "require_expiration": True, "clock_skew": "30s", "max_lifetime": "24h",
        "local_jwks": {"inline_string": HS_JWKS},
        "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}], "from_params": ["access_token"],
        "from_cookies": ["session"], "forward": False, "forward_payload_header": "x-jwt-payload",
        "claim_to_headers": [{"header_name": "x-sub", "claim_name": "sub"}], "max_token_bytes": 4096}},
    "api_keys": {"partners": {"from_header": "x-api-key", "from_param": "api_key", "forward": False,
                              "keys": [{"name": "acme", "sha256": hashlib.sha256(b"acme-key").hexdigest(),
                                        "scopes": ["orders:read"], "roles": ["partner"]}]}},
    "rate_limits": {"global": {"requests": 10, "period": "1s"},
                    "per_key": {"requests": 1, "period": "1s", "burst": 2, "key": [{"header": "x-tenant"}],
                                "on_missing_key": "deny"}},
    "schemas": {"order": {"json_schema": {"type": "object", "required": ["id"],
                                          "properties": {"id": {"type": "integer", "minimum": 1}}},
                          "draft": "2020-12", "max_body_bytes": 1024, "max_depth": 8}},
    "redaction": {"pii": {"detectors": ["card", "email"], "fields": ["password"], "action": "redact"}},
    "rules": [
        {"name": "public", "match": {"exact": "/healthz", "methods": ["GET"]}},
        {"name": "orders", "match": {"template": "/orders/{id}", "hosts": ["api.example"]},
         "jwt": {"provider": "idp"}, "authz": {"scopes": ["orders:read"]}, "rate_limits": ["global"],
         "schema": "order", "redaction": "pii"},
        {"name": "partners", "match": {"prefix": "/partners/"}, "mode": "report", "api_key": "partners",
         "rate_limits": ["per_key"]},
    ],
}
write("config", "full.json", json.dumps(full, indent=1))
variations = [
    {}, [], "", 0, None, {"rules": []}, {"mode": "report"}, {"mode": "bogus"}, {"unknown": 1},
    {"rules": [{"match": {}}]}, {"rules": [{"match": {"prefix": "/"}, "jwt": {"provider": "nope"}}]},
    {"jwt_providers": {"": {}}}, {"jwt_providers": {"a": {"local_jwks": {"inline": {"keys": []}}}}},
    {"rate_limits": {"r": {"requests": 0, "period": "0s"}}},
    {"rate_limits": {"r": {"requests": 18446744073709551615, "period": "99999999h"}}},
    {"schemas": {"s": {"openapi": "{\"openapi\":\"3.1.0\",\"paths\":{}}"}}},
    {"schemas": {"s": {"json_schema": {"$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#/$defs/a"}}}}}},
    {"redaction": {"r": {"custom": [{"name": "x", "regex": "(a+)+$"}]}}},
    {"rules": [{"match": {"template": "/{a}/{a}/{b}"}}]},
    {"jwt_cache": {"max_entries": -1}},
]
for i, v in enumerate(variations):
    write("config", f"var_{i:02}.json", json.dumps(v))
write("config", "trailing_garbage.json", json.dumps(full)[:200])

# ---------------------------------------------------------------- jwt_parse_verify
reset("jwt_parse_verify")
write("jwt_parse_verify", "hs256.jwt", sign("HS256", "hs1", claims()))
write("jwt_parse_verify", "rs256.jwt", sign("RS256", "rsa1", claims()))
write("jwt_parse_verify", "es256.jwt", sign("ES256", "ec256", claims()))
write("jwt_parse_verify", "es384.jwt", sign("ES384", "ec384", claims()))
write("jwt_parse_verify", "eddsa.jwt", sign("EdDSA", "ed1", claims()))
write("jwt_parse_verify", "ps256_no_kid.jwt", sign("PS256", None, claims()))
write("jwt_parse_verify", "expired.jwt", sign("HS256", "hs1", claims(exp=NOW - 3600)))
write("jwt_parse_verify", "not_yet.jwt", sign("HS256", "hs1", claims(nbf=NOW + 3600)))
write("jwt_parse_verify", "aud_list.jwt", sign("ES256", "ec256", claims(aud=["x", "https://api/"])))
write("jwt_parse_verify", "wrong_iss.jwt", sign("EdDSA", "ed1", claims(iss="https://evil")))
write("jwt_parse_verify", "no_exp.jwt", sign("HS256", "hs1", {"iss": ISS, "aud": AUD}))
write("jwt_parse_verify", "crit.jwt", sign("HS256", "hs1", claims(), {"crit": ["exp"]}))
write("jwt_parse_verify", "alg_none.jwt", b64(b'{"alg":"none"}') + "." + b64(b'{"iss":"x"}') + ".")
write("jwt_parse_verify", "rs_as_hs.jwt", sign("HS256", "rsa1", claims()))
write("jwt_parse_verify", "dup_member.jwt", b64(b'{"alg":"HS256","alg":"none"}') + "." + b64(b"{}") + ".c2ln")
write("jwt_parse_verify", "jwe.jwt", "a.b.c.d.e")
write("jwt_parse_verify", "padded.jwt", sign("HS256", "hs1", claims()) + "==")
write("jwt_parse_verify", "bad_types.jwt",
      sign("HS256", "hs1", {"iss": 1, "aud": {"a": 1}, "exp": "soon", "nbf": 1.5, "iat": -1}))

# ---------------------------------------------------------------- jwks
reset("jwks")
for name in ("jwks.json", "hs.jwks.json", "rsa2048.pub.jwk.json", "rsa2048.pub.pem", "p256.pub.pem",
             "p384.pub.pem", "ed25519.pub.pem"):
    write("jwks", name, open(os.path.join(KEYS, name), "rb").read())
jwks = json.load(open(os.path.join(KEYS, "jwks.json")))
for k in jwks["keys"]:
    write("jwks", f"single_{k['kid']}.json", json.dumps({"keys": [k]}))
write("jwks", "x509_set.json", json.dumps({"k1": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}))
write("jwks", "trailing_comma.json", '{"keys":[{"kty":"oct","k":"c2VjcmV0",},],}')
write("jwks", "rsa_tiny.json", json.dumps({"keys": [{"kty": "RSA", "n": "AQ", "e": "AQAB"}]}))
write("jwks", "rsa_even_e.json", json.dumps({"keys": [{"kty": "RSA", "n": jwks["keys"][0]["n"], "e": "Ag"}]}))
write("jwks", "ec_off_curve.json", json.dumps({"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]}))
write("jwks", "okp_short.json", json.dumps({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}]}))
write("jwks", "no_keys.json", "{}")
write("jwks", "pem_no_armor.pem", "".join(open(os.path.join(KEYS, "p256.pub.pem")).read().splitlines()[1:-1]))

# ---------------------------------------------------------------- schema
# byte 0: mode (bits 0-1: 0 draft 2020-12, 1 draft 7, 2 OpenAPI 3.0 schema object, 3 OpenAPI document;
# bit 2: formats on; bits 3-4: undeclared for documents), then the document, a NUL, the instance.
# For OpenAPI documents the instance is a request: "METHOD /path?query\nname: value\n...\n\nbody".
reset("schema")
def schema_seed(name, mode, doc, instance):
    write("schema", name, bytes([mode]) + json.dumps(doc).encode() + b"\0" + instance.encode())
schema_seed("object.bin", 4, {"type": "object", "required": ["id", "email"], "additionalProperties": False,
                              "properties": {"id": {"type": "integer", "minimum": 1, "maximum": 1e9},
                                             "email": {"type": "string", "format": "email"},
                                             "tags": {"type": "array", "items": {"type": "string", "maxLength": 8},
                                                      "uniqueItems": True, "maxItems": 4}}},
            '{"id": 0, "email": "nope", "tags": ["a", "a", "toolongtoolong"], "x": null}')
schema_seed("combinators.bin", 0, {"oneOf": [{"type": "string", "pattern": "^[a-z]+$"}, {"type": "number", "multipleOf": 0.5}],
                                   "not": {"const": "forbidden"}}, '"abc"')
schema_seed("refs.bin", 0, {"$defs": {"node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/node"}}}},
                            "$ref": "#/$defs/node"}, '{"next": {"next": {"next": 1}}}')
schema_seed("draft7_items.bin", 1, {"items": [{"type": "integer"}, {"type": "string"}], "additionalItems": False,
                                    "dependencies": {"a": ["b"]}}, '[1, "x", true]')
schema_seed("prefix_items.bin", 0, {"prefixItems": [{"type": "integer"}], "items": {"type": "string"},
                                    "contains": {"const": "x"}, "minContains": 1, "maxContains": 2}, '[1, "x", "x", "x"]')
schema_seed("dependent.bin", 0, {"dependentRequired": {"a": ["b"]}, "dependentSchemas": {"c": {"required": ["d"]}},
                                 "propertyNames": {"maxLength": 3}, "patternProperties": {"^x-": {"type": "boolean"}}},
            '{"a": 1, "c": 2, "x-y": 3, "long_name": 4}')
schema_seed("nullable30.bin", 6, {"type": "string", "nullable": True, "format": "date-time",
                                  "exclusiveMinimum": True, "minimum": 0}, 'null')
schema_seed("formats.bin", 4, {"type": "array", "items": {"anyOf": [{"format": "ipv4"}, {"format": "ipv6"},
                               {"format": "uuid"}, {"format": "date"}, {"format": "uri"}, {"format": "hostname"}]}},
            '["1.2.3.4", "::1", "not-a-uuid", "2024-02-30", "http://x", "-bad-"]')
schema_seed("bool_schema.bin", 0, True, '{}')
schema_seed("unsupported.bin", 0, {"unevaluatedProperties": False}, '{}')
schema_seed("deep.bin", 0, {"type": "array"}, "[" * 200 + "]" * 200)
schema_seed("if_then.bin", 0, {"if": {"properties": {"k": {"const": 1}}}, "then": {"required": ["v"]},
                               "else": {"maxProperties": 1}}, '{"k": 1}')
schema_seed("no_instance.bin", 0, {"enum": [1, "a", None, [1], {"a": 1}]}, "")
petstore = {
    "openapi": "3.0.3", "servers": [{"url": "https://api.example/v1"}],
    "paths": {
        "/pets": {
            "get": {"operationId": "list", "parameters": [
                {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 100}},
                {"name": "tags", "in": "query", "style": "form", "explode": False,
                 "schema": {"type": "array", "items": {"type": "string"}}},
                {"name": "x-trace", "in": "header", "required": True, "schema": {"type": "string", "format": "uuid"}}]},
            "post": {"operationId": "create", "requestBody": {"required": True, "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/Pet"}}}}}},
        "/pets/{petId}": {"parameters": [{"name": "petId", "in": "path", "required": True,
                                          "schema": {"type": "integer"}}],
                          "get": {}, "delete": {}},
        "/pets/mine": {"get": {}},
        "/files/{name}.{ext}": {"put": {"requestBody": {"content": {"*/*": {}}}}},
    },
    "components": {"schemas": {"Pet": {"type": "object", "required": ["name"], "properties": {
        "name": {"type": "string", "minLength": 1}, "tag": {"type": "string", "nullable": True}}}}},
}
schema_seed("openapi_get.bin", 3 | 4, petstore, "GET /v1/pets?limit=1000&tags=a,b\nx-trace: nope\n\n")
schema_seed("openapi_post.bin", 3 | 4, petstore, 'POST /v1/pets\ncontent-type: application/json\n\n{"name": "", "tag": null}')
schema_seed("openapi_405.bin", 3 | 8, petstore, "PATCH /v1/pets/12\n\n")
schema_seed("openapi_path.bin", 3 | 16, petstore, "GET /v1/pets/abc\n\n")
schema_seed("openapi_file.bin", 3, petstore, "PUT /v1/files/report.pdf\ncontent-type: application/pdf\n\nbytes")
pet31 = dict(petstore, openapi="3.1.0")
schema_seed("openapi31.bin", 3, pet31, 'POST /v1/pets\ncontent-type: application/merge-patch+json\n\n{"name": 1}')

# ---------------------------------------------------------------- redact
# byte 0: policy (bits 0-2) and body kind (bits 3-4: json, form, text, xml); bytes 1-2: split points
# (fractions of the body, /256); the rest is the body.
reset("redact")
def redact_seed(name, policy, kind, body, a=64, b=192):
    write("redact", name, bytes([policy | (kind << 3), a, b]) + body.encode())
redact_seed("json_pii.bin", 0, 0, json.dumps({"user": {"email": "a.b@example.com", "dob": "1990-01-01", "card": 4111111111111111,
                                              "password": "hunter2", "ssn": "123-45-6789", "iban": "DE89 3704 0044 0532 0130 00",
                                              "phone": "+1 415 555 2671", "note": "call EMP-123456"}}))
redact_seed("json_jwt.bin", 1, 0, json.dumps({"token": sign("HS256", "hs1", claims()), "k": "AKIAIOSFODNN7EXAMPLE"}))
redact_seed("form.bin", 0, 1, "email=a%40b.com&card=4111+1111+1111+1111&password=x&ssn=123+45+6789")
redact_seed("text.bin", 2, 2, "contact me at bob@example.org or 4012-8888-8888-1881; ghp_" + "a" * 36 + " xoxb-123-456-abc")
redact_seed("xml.bin", 3, 3, "<u><mail>x@y.io</mail><cc>5555555555554444</cc></u>")
redact_seed("pem.bin", 0, 2, "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n")
redact_seed("ndjson.bin", 4, 0, '{"a":"x@y.io"}\n{"password":{"nested":[1,2]}}\n{"b":"sk_live_' + "0" * 24 + '"}\n')
redact_seed("escapes.bin", 0, 0, '{"a":"\\n4111111111111111\\u0041","password":"\\"q\\"","x":-4111111111111111e0}', 10, 11)
redact_seed("broken_json.bin", 0, 0, '{"a": [1, 2, "4111111111111111" } ] ] x@y.io', 0, 255)
redact_seed("report.bin", 5, 2, "x@y.io 4111111111111111")
redact_seed("empty.bin", 0, 0, "", 0, 0)

# ---------------------------------------------------------------- discovery
# Lines: method, path (with query), content-type, soapaction, upgrade, :protocol, response content-type;
# everything after the 7th newline is the body (an empty line means "absent").
reset("discovery")
def disc(name, method, path, ct="", soap="", upgrade="", proto="", resp="", body=""):
    write("discovery", name, "\n".join([method, path, ct, soap, upgrade, proto, resp, body]))
disc("rest.txt", "GET", "/api/v1/users/12345/orders/550e8400-e29b-41d4-a716-446655440000?x=1")
disc("templater.txt", "GET", "/a//b/./c/../%2e%2e/%2E/d;jsessionid=ABC/2024-01-31/bob%40example.com/deadbeef12/eyJhbGciOiJIUzI1NiJ9abc/INV-2024-0001")
disc("deep.txt", "GET", "/" + "/".join(f"s{i}" for i in range(40)))
disc("long.txt", "GET", "/" + "x" * 100 + "/" + "/".join(["y" * 60] * 12))
disc("graphql_get.txt", "GET", "/graphql?query=query%20Q%20%7B%20a%20%7D&operationName=Q")
disc("graphql_post.txt", "POST", "/graphql", "application/json", body='{"query":"mutation M($x: ID!) { del(id: $x) { ok } }","operationName":"M"}')
disc("graphql_doc.txt", "POST", "/graphql", "application/graphql", body='fragment F on T { a } query A { ...F } subscription S { s }')
disc("jsonrpc.txt", "POST", "/rpc", "application/json", body='[{"jsonrpc":"2.0","method":"a","id":1},{"jsonrpc":"2.0","method":"b"}]')
disc("soap11.txt", "POST", "/ws", "text/xml; charset=utf-8", soap='"urn:GetQuote"',
     body='<?xml version="1.0"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><m:GetQuote/></soap:Body></soap:Envelope>')
disc("soap12.txt", "POST", "/ws", 'application/soap+xml; action="urn:Buy"',
     body='<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Body><Buy/></env:Body></env:Envelope>')
disc("xmlrpc.txt", "POST", "/RPC2", "text/xml", body="<?xml version='1.0'?><methodCall><methodName>examples.getStateName</methodName></methodCall>")
disc("grpc.txt", "POST", "/helloworld.Greeter/SayHello", "application/grpc+proto")
disc("grpcweb.txt", "POST", "/pkg.Svc/Method", "application/grpc-web-text")
disc("websocket.txt", "GET", "/chat", upgrade="websocket")
disc("connect.txt", "CONNECT", "/chat", proto="websocket")
disc("sse.txt", "GET", "/events", resp="text/event-stream")

# ---------------------------------------------------------------- pipeline
# "METHOD PATH\nname: value\n...\n\nbody" (authority from a `host` header, default api.example).
reset("pipeline")
def req(name, method, path, headers=(), body=""):
    head = "\n".join([f"{method} {path}"] + [f"{k}: {v}" for k, v in headers])
    write("pipeline", name, head + "\n\n" + body)
good = sign("HS256", "hs1", claims())
req("public.txt", "GET", "/public/x")
req("no_rule.txt", "GET", "/nothing")
req("orders_ok.txt", "GET", "/orders/1", [("authorization", f"Bearer {good}")])
req("orders_post.txt", "POST", "/orders/1", [("authorization", f"Bearer {good}"), ("content-type", "application/json")],
    '{"id": 1, "note": "x"}')
req("orders_bad_body.txt", "POST", "/orders/1", [("authorization", f"Bearer {good}"), ("content-type", "application/json")],
    '{"id": "one"}')
req("orders_no_scope.txt", "GET", "/orders/1", [("authorization", "Bearer " + sign("HS256", "hs1", claims(scope="x")))])
req("orders_es256.txt", "GET", "/orders/1", [("authorization", "Bearer " + sign("ES256", "ec256", claims()))])
req("orders_expired.txt", "GET", "/orders/1", [("authorization", "Bearer " + sign("HS256", "hs1", claims(exp=NOW - 999)))])
req("orders_query.txt", "GET", "/orders/1?access_token=" + good, [("x-sub", "spoofed")])
req("orders_missing.txt", "GET", "/orders/1")
req("partners.txt", "GET", "/partners/x", [("x-api-key", "acme-key")])
req("partners_param.txt", "GET", "/partners/x?api_key=wrong")
req("limited.txt", "GET", "/limited/a", [("x-tenant", "t1")])
req("limited_missing.txt", "GET", "/limited/a")
req("pets.txt", "GET", "/pets/12?x=1")
req("pets_post.txt", "POST", "/pets", [("content-type", "application/json")], '{"name": ""}')
req("dry.txt", "GET", "/dry/x", [("authorization", "Bearer garbage"), ("host", "weird host\"name")])
req("any.txt", "GET", "/any/x", [("cookie", "a=b; session=" + good)])
# ---------------------------------------------------------------- canonical_path
# Byte 0: method (0 GET, 1 HEAD, 2 get, 3 POST); then the :path.
reset("canonical_path")
def canon(name, path, method=0):
    write("canonical_path", name, bytes([method]) + path.encode())
canon("dotdot.txt", "/public/../api/x")
canon("encoded_dotdot.txt", "/public/%2e%2e/api/x")
canon("dot_encoded_dot.txt", "/public/.%2E/api/x?q=1")
canon("dot.txt", "/./api/./x/")
canon("slashes.txt", "//api///x//")
canon("unreserved.txt", "/%61pi/%7Euser/%41")
canon("encoded_slash.txt", "/public%2F..%2Fapi/x")
canon("backslash.txt", "/public\\..\\api/x")
canon("upper.txt", "/API/x")
canon("legacy.txt", "/LEGACY/x")
canon("matrix.txt", "/api;jsessionid=0A1B/x;v=2?a=b")
canon("tomcat.txt", "/public/..;/api/x")
canon("head.txt", "/files/a", 1)
canon("lower_get.txt", "/files/a", 2)
canon("post.txt", "/users/7/orders/9", 3)
canon("nul.txt", "/api/x%00.json")
canon("overlong.txt", "/%c0%ae%c0%ae/api")
canon("malformed.txt", "/%%32%65%%32%65/api/x%4")
canon("fragment.txt", "/public#/../api")
canon("relative.txt", "api/x")
canon("star.txt", "*", 3)
canon("multibyte.txt", "/caf\u00e9/%e2%82%ac/../static/x")
canon("static.txt", "/static/../static/./a//b")
canon("exact.txt", "/admin/.")

print("seeds written under", CORPUS)
