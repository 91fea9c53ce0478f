//! Every rule `apiguard check` and `apiguard lint` can report: id, default level, the OWASP API
//! Security Top 10 2023 category it guards against, why it matters and how to fix it. The same
//! text goes into SARIF (`rules`, with `help`) and is documented in docs/cli.md (a test keeps
//! them in step).

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Note,
    Warning,
    Error,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Note => "note",
        }
    }

    pub fn parse(s: &str) -> Option<Level> {
        match s {
            "error" => Some(Level::Error),
            "warning" => Some(Level::Warning),
            "note" => Some(Level::Note),
            _ => None,
        }
    }
}

#[derive(Debug)]
pub struct Rule {
    pub id: &'static str,
    pub level: Level,
    /// `API4:2023 Unrestricted Resource Consumption`, or `None` for reading errors.
    pub owasp: Option<&'static str>,
    pub short: &'static str,
    pub why: &'static str,
    pub fix: &'static str,
}

pub const API1: &str = "API1:2023 Broken Object Level Authorization";
pub const API2: &str = "API2:2023 Broken Authentication";
pub const API3: &str = "API3:2023 Broken Object Property Level Authorization";
pub const API4: &str = "API4:2023 Unrestricted Resource Consumption";
pub const API5: &str = "API5:2023 Broken Function Level Authorization";
pub const API8: &str = "API8:2023 Security Misconfiguration";
pub const API9: &str = "API9:2023 Improper Inventory Management";

pub const RULES: &[Rule] = &[
    // Reading documents (check, lint, openapi import).
    Rule {
        id: "syntax",
        level: Level::Error,
        owasp: None,
        short: "The file is not valid JSON or YAML.",
        why: "Nothing can be checked in a document that cannot be read; the filter refuses it too.",
        fix: "Correct the syntax at the position given.",
    },
    Rule {
        id: "openapi/not-carried",
        level: Level::Error,
        owasp: Some(API9),
        short: "Part of the OpenAPI document cannot be carried into the filter's configuration.",
        why: "The filter compiles the document when Envoy loads it and refuses what it cannot enforce (remote $ref, unsupported keywords, Swagger 2.0); an unresolved reference would refuse the whole configuration.",
        fix: "Follow the message: download remote documents and refer to the file, move recursive definitions under components, or remove the keyword.",
    },
    // apiguard check.
    Rule {
        id: "policy/invalid",
        level: Level::Error,
        owasp: Some(API8),
        short: "The filter refuses this configuration.",
        why: "Envoy would refuse the filter at start (on_configure returns false) and the listener would not serve.",
        fix: "Follow the hint; docs/config.md documents every field.",
    },
    Rule {
        id: "policy/not-found",
        level: Level::Error,
        owasp: None,
        short: "No apiguard policy was found in the file.",
        why: "An Envoy bootstrap without an apiguard Wasm filter, or a manifest without a WasmPlugin, checks nothing.",
        fix: "Point check at the policy itself, an Envoy bootstrap with the envoy.filters.http.wasm filter, or a WasmPlugin manifest.",
    },
    Rule {
        id: "policy/duplicate-key",
        level: Level::Warning,
        owasp: Some(API8),
        short: "A member is written twice in one JSON object.",
        why: "JSON readers keep one of them silently (the filter keeps the last): a second `rules` or `mode` written further down overrides the first without a word.",
        fix: "Remove one of them.",
    },
    Rule {
        id: "policy/report-mode",
        level: Level::Warning,
        owasp: Some(API8),
        short: "Report mode: nothing is refused.",
        why: "In report mode every decision is only counted and logged; requests that fail authentication, limits or schemas still reach the upstream.",
        fix: "Roll out in report mode, watch `<name>_report_only_denied`, then set `\"mode\": \"enforce\"` (or enforce per rule).",
    },
    Rule {
        id: "policy/allow-without-catch-all",
        level: Level::Warning,
        owasp: Some(API5),
        short: "`on_no_match: allow` and no rule matches every path.",
        why: "A route nobody listed (a new endpoint, an admin path, a shadow API) passes with no authentication at all.",
        fix: "Set `\"on_no_match\": \"deny\"` (least privilege), or end the rules with a catch-all (`{\"match\": {\"prefix\": \"/\"}, ...}`) that states what unlisted routes get.",
    },
    Rule {
        id: "policy/trusted-hops",
        level: Level::Warning,
        owasp: Some(API4),
        short: "A client-address limiter key depends on Envoy settings the file does not state.",
        why: "`client_address` is only the client's address when the connection manager sets `use_remote_address: true` (and, with `trusted_hops`, when exactly that many proxies append to x-forwarded-for and Envoy's own `xff_num_trusted_hops` is 0). Otherwise a client chooses its own key and escapes the limit.",
        fix: "Check the policy inside the Envoy bootstrap (check reads its connection manager), or render it with `apiguard render envoy`, which sets `use_remote_address: true`; use `trusted_hops` or `xff_num_trusted_hops`, not both.",
    },
    Rule {
        id: "policy/limit-key-missing",
        level: Level::Warning,
        owasp: Some(API4),
        short: "A rate-limit key part can be missing, and all requests without it share one budget.",
        why: "A header, a claim of an optional token or an API key on a rule without one can be absent; with `on_missing_key: fallback` and no `fallback_key`, every such request shares one marker budget (one client can exhaust it for all, or a client avoids its own budget by leaving the part out).",
        fix: "Give the policy a `fallback_key` (e.g. the client address), or `\"on_missing_key\": \"deny\"`, or key by a part the rule guarantees (a claim of a required token).",
    },
    Rule {
        id: "policy/redaction-off",
        level: Level::Warning,
        owasp: Some(API3),
        short: "A route carries sensitive-looking fields but has no redaction.",
        why: "The rule's schema declares fields such as card numbers, SSNs, passwords, tokens or e-mail addresses, and nothing masks them in bodies.",
        fix: "Name a `redaction` policy on the rule (`fields` or the built-in detectors), or confirm the exposure is intended.",
    },
    Rule {
        id: "policy/hs256-short-secret",
        level: Level::Warning,
        owasp: Some(API2),
        short: "An HMAC (HS256/384/512) key is shorter than its hash.",
        why: "RFC 7518 §3.2 requires a key at least as long as the hash output (32 bytes for HS256); a short secret can be brute-forced offline from one token.",
        fix: "Use a random key of at least 32 bytes (48 for HS384, 64 for HS512), or an asymmetric algorithm with a JWKS.",
    },
    // apiguard lint.
    Rule {
        id: "oas/operation-without-security",
        level: Level::Warning,
        owasp: Some(API2),
        short: "An operation has no security requirement.",
        why: "Neither the operation nor the document requires authentication, so anyone can call it.",
        fix: "Add a `security` requirement (at the root or on the operation); for a deliberately public operation, suppress the rule inline with a reason.",
    },
    Rule {
        id: "oas/http-server",
        level: Level::Warning,
        owasp: Some(API8),
        short: "A server URL uses plain http://.",
        why: "Credentials and data cross the network in clear text and can be read or changed on the way.",
        fix: "Serve the API over https:// only.",
    },
    Rule {
        id: "oas/credential-in-query",
        level: Level::Warning,
        owasp: Some(API2),
        short: "A credential travels in the query string.",
        why: "URLs are logged by proxies, servers and browsers, and leak through Referer headers.",
        fix: "Carry API keys and tokens in a header (`in: header`, `Authorization`).",
    },
    Rule {
        id: "oas/string-without-max-length",
        level: Level::Warning,
        owasp: Some(API4),
        short: "A string has no maxLength.",
        why: "Unbounded strings let a client send huge values that cost memory, storage and CPU downstream.",
        fix: "Set `maxLength` (or `enum`, `format` with a bounded form, or `pattern` anchored with a bounded repetition).",
    },
    Rule {
        id: "oas/array-without-max-items",
        level: Level::Warning,
        owasp: Some(API4),
        short: "An array has no maxItems.",
        why: "Unbounded arrays let one request carry any number of items to process.",
        fix: "Set `maxItems`.",
    },
    Rule {
        id: "oas/integer-without-bounds",
        level: Level::Warning,
        owasp: Some(API4),
        short: "An integer has no minimum or no maximum.",
        why: "Unbounded numbers reach code that allocates, loops or pages by them (a page size of 10^9).",
        fix: "Set `minimum` and `maximum` (or `enum`).",
    },
    Rule {
        id: "oas/additional-properties-open",
        level: Level::Warning,
        owasp: Some(API3),
        short: "A request body object accepts properties it does not declare.",
        why: "Mass assignment: a client adds `isAdmin` or `owner` and the server binds it.",
        fix: "Set `additionalProperties: false` on request body objects (or `unevaluatedProperties: false` where composition is used).",
    },
    Rule {
        id: "oas/sensitive-field-in-response",
        level: Level::Warning,
        owasp: Some(API3),
        short: "A response declares a sensitive-looking field.",
        why: "Fields named like card numbers, SSNs, passwords, tokens or e-mail addresses in responses are excessive data exposure unless the caller needs them.",
        fix: "Remove the field from the response schema, or mask it (apiguard `redaction` with `fields`) and suppress the rule inline with a reason.",
    },
    Rule {
        id: "oas/missing-auth-responses",
        level: Level::Note,
        owasp: Some(API2),
        short: "A secured operation declares no 401 or no 403 response.",
        why: "Clients and gateways are not told how refusals look, and tests derived from the contract never exercise them.",
        fix: "Declare `401` and `403` (a shared `components/responses` entry).",
    },
    Rule {
        id: "oas/missing-429",
        level: Level::Note,
        owasp: Some(API4),
        short: "An operation declares no 429 response.",
        why: "Without a documented rate limit clients do not back off, and nobody plans a limit for the operation.",
        fix: "Declare `429` with `Retry-After`, and limit the route (apiguard `rate_limits`).",
    },
    Rule {
        id: "oas/version-without-deprecation",
        level: Level::Warning,
        owasp: Some(API9),
        short: "Several API versions live side by side and the older one is not deprecated.",
        why: "Old versions stay reachable and unmaintained (zombie APIs), often with weaker controls.",
        fix: "Mark the older version's operations `deprecated: true` (and plan their removal), or retire them.",
    },
    Rule {
        id: "oas/id-in-path-without-scope",
        level: Level::Warning,
        owasp: Some(API1),
        short: "An operation addresses an object by id in its path and requires no scope.",
        why: "Broken object level authorization: with nothing but a login, a caller tries other ids.",
        fix: "Require an OAuth2 scope (or a role) for the operation and check ownership of the object in the service.",
    },
];

pub fn find(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique() {
        for (i, r) in RULES.iter().enumerate() {
            assert!(RULES[..i].iter().all(|o| o.id != r.id), "{}", r.id);
        }
    }

    /// docs/cli.md documents every command's flags and every rule with its OWASP category.
    #[test]
    fn docs_cli_covers_every_flag_and_rule() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/cli.md"))
            .unwrap();
        for help in [
            crate::check::HELP,
            crate::lint::HELP,
            crate::openapi_import::HELP,
            crate::render::HELP,
            crate::policy_from_inventory::HELP,
        ] {
            for word in help.split(|c: char| c.is_whitespace() || "[]|,()".contains(c)) {
                let flag = word.trim_end_matches(['.', ':']);
                if flag.starts_with("--") && flag.len() > 2 || flag == "-o" {
                    assert!(
                        doc.contains(&format!("`{flag}")),
                        "docs/cli.md does not document {flag}"
                    );
                }
            }
        }
        for rule in crate::rules::RULES {
            let row = doc
                .lines()
                .find(|l| l.starts_with(&format!("| `{}` |", rule.id)))
                .unwrap_or_else(|| panic!("docs/cli.md has no row for rule {}", rule.id));
            assert!(
                row.contains(&format!("| {} |", rule.level.name())),
                "{}: level",
                rule.id
            );
            if let Some(owasp) = rule.owasp {
                assert!(row.contains(owasp), "{}: OWASP category {owasp}", rule.id);
            }
        }
    }
}
