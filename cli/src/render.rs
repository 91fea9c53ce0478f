//! `apiguard render envoy|istio POLICY`: the deployment a policy needs, with the settings
//! docs/deployment.md and docs/operations.md recommend.
//!
//! - `envoy`: a bootstrap (listener, connection manager with path normalisation and
//!   `use_remote_address: true`, the apiguard Wasm filter with `failure_policy: FAIL_RELOAD`, the
//!   router) and the clusters the policy calls: every remote JWKS and the discovery collector.
//! - `istio`: the `WasmPlugin` (`phase: AUTHN`, `failStrategy: FAIL_RELOAD`) with the policy as
//!   `pluginConfig`, cluster names rewritten to Istio's `outbound|<port>||<host>`, a `ServiceEntry`
//!   (and a TLS `DestinationRule`) for every external host, one with a `grpc` port for the rate
//!   limit service (`--rate-limit-service`), and the `EnvoyFilter` with the connection-manager
//!   hygiene.
//!
//! The policy is checked first (`check`): nothing is rendered for a policy the filter refuses.

use crate::args::{read_input, write_output, Args, Command};
use crate::check;
use crate::policy_source;
use crate::report::{self, Format, EXIT_FINDINGS, EXIT_OK, EXIT_USAGE};
use crate::rules::Level;
use crate::source::escape_token;
use crate::yaml_out::to_yaml;
use serde_json::{json, Value};

pub const HELP: &str = "usage: apiguard render envoy [--wasm PATH] [--listen HOST:PORT] [--upstream HOST:PORT]
                              [--admin HOST:PORT] [--ca-file PATH] [--rate-limit-service HOST:PORT]
                              [-o OUT] POLICY
       apiguard render istio [--url URL] [--namespace NS] [--selector KEY=VALUE]
                             [--rate-limit-service HOST:PORT] [-o OUT] POLICY

envoy: an Envoy bootstrap with the apiguard filter and the clusters the policy calls (remote JWKS,
discovery collector), with docs/deployment.md's connection-manager settings.
  --wasm PATH        the module Envoy loads (default /etc/envoy/apiguard.wasm)
  --listen HOST:PORT the listener (default 0.0.0.0:10000)
  --upstream HOST:PORT  the service behind Envoy (default 127.0.0.1:8080)
  --admin HOST:PORT  Envoy's admin interface (default 127.0.0.1:9901)
  --ca-file PATH     CA bundle for https JWKS and collector clusters
                     (default /etc/ssl/certs/ca-certificates.crt)
  --rate-limit-service HOST:PORT  where the clusters named by `rate_limits.*.service.cluster` point
                     (default 127.0.0.1:8081); rendered with HTTP/2, which gRPC from wasm requires

istio: a WasmPlugin with the policy as pluginConfig, a ServiceEntry (and DestinationRule for
TLS) per external host, and the EnvoyFilter with the connection-manager settings.
  --url URL          where Istio pulls the module (default oci://registry.example.com/apiguard:0.1.0)
  --namespace NS     default istio-system
  --selector K=V     workload selector (default istio=ingressgateway)
  --rate-limit-service HOST:PORT  the rate limit service of `rate_limits.*.service`: its clusters
                     become Istio's `outbound|PORT||HOST`, with a ServiceEntry whose port is named
                     `grpc` (protocol GRPC: Istio speaks HTTP/2, which gRPC from wasm requires); a
                     `*.svc.cluster.local` host gets no ServiceEntry (name its Service's port `grpc`)

  --json             JSON instead of YAML (istio: one `List` of the objects)

POLICY is read as `apiguard check` reads it. exit: 0 rendered, 1 the policy is refused,
2 usage error";

pub fn run(argv: &[String]) -> u8 {
    let args = match COMMAND.parse(
        argv,
        &[
            "--wasm",
            "--listen",
            "--upstream",
            "--admin",
            "--ca-file",
            "--rate-limit-service",
            "--url",
            "--namespace",
            "--selector",
            "-o",
        ],
        &["--json"],
    ) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let [target, file] = args.positional.as_slice() else {
        return usage("name the target (envoy or istio) and one policy");
    };
    let bytes = match read_input(file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("apiguard render: {e}");
            return EXIT_USAGE;
        }
    };
    let findings = check::check_file(file, &bytes);
    if findings.iter().any(|f| f.level == Level::Error) {
        eprint!(
            "{}",
            report::render(
                Format::Text,
                &findings,
                "not rendered: the filter refuses this policy"
            )
        );
        return EXIT_FINDINGS;
    }
    let policies: Vec<Value> = match policy_source::find(file, &bytes) {
        Ok(found) => found.into_iter().map(|f| policy_value(&f.bytes)).collect(),
        Err(_) => return EXIT_FINDINGS,
    };
    let [policy] = policies.as_slice() else {
        return usage("the file holds several policies; render one policy file");
    };
    let rendered = match target.as_str() {
        "envoy" => envoy(policy, &args),
        "istio" => istio(policy, &args),
        other => return usage(&format!("unknown target `{other}` (envoy or istio)")),
    };
    let (text, notes) = match rendered {
        Ok(r) => r,
        Err(e) => return usage(&e),
    };
    for n in notes {
        eprintln!("apiguard render: note: {n}");
    }
    match write_output(args.value("-o"), &text) {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("apiguard render: {e}");
            EXIT_USAGE
        }
    }
}

const COMMAND: Command = Command {
    name: "render",
    help: HELP,
};

fn usage(message: &str) -> u8 {
    COMMAND.usage(message)
}

/// The policy as a value (the bytes compiled; empty means `{}`).
fn policy_value(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return json!({});
    }
    serde_json::from_slice(bytes).unwrap_or_else(|_| json!({}))
}

/// An `http(s)://host[:port]/path` URI: (https, host, port).
fn endpoint(uri: &str) -> Option<(bool, String, u16)> {
    let (tls, rest) = match uri.split_once("://")? {
        ("https", r) => (true, r),
        ("http", r) => (false, r),
        _ => return None,
    };
    let authority = rest.split('/').next()?;
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => match p.parse() {
            Ok(p) => (h.trim_matches(['[', ']']).to_string(), p),
            Err(_) => (authority.to_string(), if tls { 443 } else { 80 }),
        },
        _ => (authority.to_string(), if tls { 443 } else { 80 }),
    };
    Some((tls, host, port))
}

/// A cluster the policy calls: (pointer of its `cluster` member, cluster name, uri).
fn called_clusters(policy: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    if let Some(Value::Object(providers)) = policy.get("jwt_providers") {
        for (name, p) in providers {
            if let (Some(c), Some(u)) = (
                p.pointer("/remote_jwks/cluster").and_then(Value::as_str),
                p.pointer("/remote_jwks/uri").and_then(Value::as_str),
            ) {
                out.push((
                    format!("/jwt_providers/{}/remote_jwks/cluster", escape_token(name)),
                    c.to_string(),
                    u.to_string(),
                ));
            }
        }
    }
    if let (Some(c), Some(u)) = (
        policy
            .pointer("/discovery/collector/cluster")
            .and_then(Value::as_str),
        policy
            .pointer("/discovery/collector/uri")
            .and_then(Value::as_str),
    ) {
        out.push((
            "/discovery/collector/cluster".into(),
            c.to_string(),
            u.to_string(),
        ));
    }
    out
}

/// The rate limit service clusters the policy's `rate_limits.<name>.service.cluster` members name, each once.
fn service_clusters(policy: &Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (_, c) in service_cluster_members(policy) {
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

/// Every `rate_limits.<name>.service.cluster` member: (its JSON pointer, the cluster name).
fn service_cluster_members(policy: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(Value::Object(limits)) = policy.get("rate_limits") {
        for (name, p) in limits {
            if let Some(c) = p.pointer("/service/cluster").and_then(Value::as_str) {
                let pointer = format!("/rate_limits/{}/service/cluster", escape_token(name));
                out.push((pointer, c.to_string()));
            }
        }
    }
    out
}

/// gRPC from wasm reaches only clusters that speak HTTP/2 (every call fails with status 14 otherwise).
fn http2_cluster(name: &str, host: &str, port: u16) -> Value {
    let mut c = cluster(name, host, port, false, "");
    c["typed_extension_protocol_options"] = json!({
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}},
        },
    });
    c
}

fn host_port(s: &str, flag: &str) -> Result<(String, u16), String> {
    let (h, p) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{flag} is HOST:PORT"))?;
    let p = p
        .parse()
        .map_err(|_| format!("{flag}: bad port in {s:?}"))?;
    Ok((h.trim_matches(['[', ']']).to_string(), p))
}

fn socket(host: &str, port: u16) -> Value {
    json!({"socket_address": {"address": host, "port_value": port}})
}

fn is_ip(host: &str) -> bool {
    host.parse::<std::net::IpAddr>().is_ok()
}

fn envoy(policy: &Value, args: &Args) -> Result<(String, Vec<String>), String> {
    let wasm = args.value("--wasm").unwrap_or("/etc/envoy/apiguard.wasm");
    let (listen_host, listen_port) = host_port(
        args.value("--listen").unwrap_or("0.0.0.0:10000"),
        "--listen",
    )?;
    let (up_host, up_port) = host_port(
        args.value("--upstream").unwrap_or("127.0.0.1:8080"),
        "--upstream",
    )?;
    let (admin_host, admin_port) =
        host_port(args.value("--admin").unwrap_or("127.0.0.1:9901"), "--admin")?;
    let ca = args
        .value("--ca-file")
        .unwrap_or("/etc/ssl/certs/ca-certificates.crt");
    let name = policy
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("apiguard");
    let configuration = serde_json::to_string_pretty(policy).map_err(|e| e.to_string())?;
    let mut plugin = json!({
        "name": name,
        "root_id": "apiguard",
        // A trapped VM is replaced for the next request; the failing request is refused
        // (docs/operations.md). Never FAIL_OPEN for an enforcing policy.
        "failure_policy": "FAIL_RELOAD",
        "vm_config": {
            "vm_id": name,
            "runtime": "envoy.wasm.runtime.v8",
            "code": {"local": {"filename": wasm}},
        },
        "configuration": {
            "@type": "type.googleapis.com/google.protobuf.StringValue",
            "value": configuration,
        },
    });
    if policy.get("allow_on_headers_stop_iteration") == Some(&Value::Bool(true)) {
        plugin["allow_on_headers_stop_iteration"] = json!(true);
    }
    let hcm = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "ingress",
        "codec_type": "AUTO",
        // docs/deployment.md: one canonical path for Envoy, apiguard and the upstream.
        "normalize_path": true,
        "merge_slashes": true,
        "path_with_escaped_slashes_action": "REJECT_REQUEST",
        "strip_trailing_host_dot": true,
        "common_http_protocol_options": {"headers_with_underscores_action": "REJECT_REQUEST"},
        // source.address is the TCP peer: client-address rate-limit keys cannot be forged.
        "use_remote_address": true,
        "route_config": {
            "name": "local",
            "virtual_hosts": [{
                "name": "all",
                "domains": ["*"],
                "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "upstream"}}],
            }],
        },
        "http_filters": [
            {"name": "envoy.filters.http.wasm", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                "config": plugin,
            }},
            {"name": "envoy.filters.http.router", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
            }},
        ],
    });
    let mut clusters = vec![cluster("upstream", &up_host, up_port, false, ca)];
    let mut notes = Vec::new();
    for (_, cluster_name, uri) in called_clusters(policy) {
        if clusters.iter().any(|c| c["name"] == cluster_name.as_str()) {
            continue;
        }
        let Some((tls, host, port)) = endpoint(&uri) else {
            notes.push(format!(
                "cluster `{cluster_name}`: cannot read {uri:?}; define it yourself"
            ));
            continue;
        };
        clusters.push(cluster(&cluster_name, &host, port, tls, ca));
    }
    let service = service_clusters(policy);
    if !service.is_empty() {
        let (rls_host, rls_port) = host_port(
            args.value("--rate-limit-service")
                .unwrap_or("127.0.0.1:8081"),
            "--rate-limit-service",
        )?;
        for name in service {
            if clusters.iter().any(|c| c["name"] == name.as_str()) {
                continue;
            }
            notes.push(format!(
                "cluster `{name}`: the rate limit service at {rls_host}:{rls_port} (HTTP/2)"
            ));
            clusters.push(http2_cluster(&name, &rls_host, rls_port));
        }
    }
    let bootstrap = json!({
        "admin": {"address": socket(&admin_host, admin_port)},
        "static_resources": {
            "listeners": [{
                "name": "ingress",
                "address": socket(&listen_host, listen_port),
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": hcm,
                }]}],
            }],
            "clusters": clusters,
        },
    });
    let header = "# Rendered by `apiguard render envoy`. The apiguard filter sits before the router; the\n\
                  # connection manager has docs/deployment.md's settings (path normalisation, escaped slashes\n\
                  # refused, use_remote_address). Clusters: `upstream` (the service) and every cluster the policy\n\
                  # calls (remote JWKS, discovery collector). Check it with: envoy --mode validate -c FILE\n";
    if args.switch("--json") {
        return Ok((pretty(&bootstrap), notes));
    }
    Ok((format!("{header}{}", to_yaml(&bootstrap)), notes))
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default() + "\n"
}

fn cluster(name: &str, host: &str, port: u16, tls: bool, ca: &str) -> Value {
    let mut c = json!({
        "name": name,
        "type": if is_ip(host) { "STATIC" } else { "LOGICAL_DNS" },
        "connect_timeout": "2s",
        "dns_lookup_family": "V4_PREFERRED",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket(host, port)}}]}],
        },
    });
    if tls {
        c["transport_socket"] = json!({
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": host,
                "common_tls_context": {"validation_context": {
                    "trusted_ca": {"filename": ca},
                    "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": host}}],
                }},
            },
        });
    }
    c
}

fn istio(policy: &Value, args: &Args) -> Result<(String, Vec<String>), String> {
    let url = args
        .value("--url")
        .unwrap_or("oci://registry.example.com/apiguard:0.1.0");
    let namespace = args.value("--namespace").unwrap_or("istio-system");
    let (sel_key, sel_value) = args
        .value("--selector")
        .unwrap_or("istio=ingressgateway")
        .split_once('=')
        .ok_or("--selector is KEY=VALUE")?;
    let mut notes = Vec::new();
    let mut config = policy.clone();
    let mut hosts: Vec<(String, u16, bool)> = Vec::new();
    for (pointer, cluster_name, uri) in called_clusters(policy) {
        let Some((tls, host, port)) = endpoint(&uri) else {
            continue;
        };
        let istio_name = format!("outbound|{port}||{host}");
        if cluster_name != istio_name {
            notes.push(format!("{pointer}: cluster `{cluster_name}` becomes `{istio_name}` (Istio's name for {host}:{port})"));
            if let Some(slot) = config.pointer_mut(&pointer) {
                *slot = Value::String(istio_name);
            }
        }
        if !hosts.iter().any(|(h, p, _)| *h == host && *p == port) && !is_ip(&host) {
            hosts.push((host, port, tls));
        }
    }
    let members = service_cluster_members(policy);
    let mut rls = None;
    match args.value("--rate-limit-service") {
        _ if members.is_empty() => {}
        None => notes.push("rate_limits.*.service: pass --rate-limit-service HOST:PORT to name Istio's cluster for the rate limit service and render its ServiceEntry (port `grpc`)".into()),
        Some(value) => {
            let (host, port) = host_port(value, "--rate-limit-service")?;
            let istio_name = format!("outbound|{port}||{host}");
            for (pointer, cluster_name) in members {
                if cluster_name != istio_name {
                    notes.push(format!("{pointer}: cluster `{cluster_name}` becomes `{istio_name}` (Istio's name for the rate limit service)"));
                    if let Some(slot) = config.pointer_mut(&pointer) {
                        *slot = Value::String(istio_name.clone());
                    }
                }
            }
            if is_ip(&host) {
                notes.push(format!("{host}: a ServiceEntry needs a host name; give --rate-limit-service a name"));
            } else if host.ends_with(".svc.cluster.local") {
                notes.push(format!("{host}: a Service of the mesh; name its port `grpc` (or appProtocol: grpc) so Istio speaks HTTP/2 to it (envoy/istio/ratelimit-service.yaml)"));
            } else {
                rls = Some((host, port));
            }
        }
    }
    if policy.get("allow_on_headers_stop_iteration") == Some(&Value::Bool(true)) {
        notes.push("allow_on_headers_stop_iteration: WasmPlugin has no such field; set it with an EnvoyFilter patch, or apiguard lets headers go ahead while it reads bodies".into());
    }
    let mut docs = vec![json!({
        "apiVersion": "extensions.istio.io/v1alpha1",
        "kind": "WasmPlugin",
        "metadata": {"name": "apiguard", "namespace": namespace},
        "spec": {
            "selector": {"matchLabels": {sel_key: sel_value}},
            "url": url,
            "imagePullPolicy": "IfNotPresent",
            // Before Istio's own authorization filters, like Envoy's jwt_authn.
            "phase": "AUTHN",
            // A failed VM: the request is refused and a new VM serves the next (Istio 1.27+).
            "failStrategy": "FAIL_RELOAD",
            "pluginConfig": config,
        },
    })];
    for (host, port, tls) in &hosts {
        let name = host.replace('.', "-");
        docs.push(json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "ServiceEntry",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "hosts": [host],
                "ports": [{"number": port, "name": if *tls { "https" } else { "http" }, "protocol": if *tls { "TLS" } else { "HTTP" }}],
                "resolution": "DNS",
                "location": "MESH_EXTERNAL",
            },
        }));
        if *tls {
            docs.push(json!({
                "apiVersion": "networking.istio.io/v1",
                "kind": "DestinationRule",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"host": host, "trafficPolicy": {"tls": {"mode": "SIMPLE", "sni": host}}},
            }));
        }
    }
    if let Some((host, port)) = &rls {
        // gRPC from wasm needs HTTP/2: Istio speaks it to a port of protocol GRPC.
        docs.push(json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "ServiceEntry",
            "metadata": {"name": host.replace('.', "-"), "namespace": namespace},
            "spec": {
                "hosts": [host],
                "ports": [{"number": port, "name": "grpc", "protocol": "GRPC"}],
                "resolution": "DNS",
                "location": "MESH_EXTERNAL",
            },
        }));
    }
    docs.push(json!({
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "EnvoyFilter",
        "metadata": {"name": "apiguard-hcm-hygiene", "namespace": namespace},
        "spec": {
            "workloadSelector": {"labels": {sel_key: sel_value}},
            "configPatches": [{
                "applyTo": "NETWORK_FILTER",
                "match": {"context": "GATEWAY", "listener": {"filterChain": {"filter": {"name": "envoy.filters.network.http_connection_manager"}}}},
                "patch": {"operation": "MERGE", "value": {"typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "normalize_path": true,
                    "merge_slashes": true,
                    "path_with_escaped_slashes_action": "REJECT_REQUEST",
                    "strip_trailing_host_dot": true,
                    "common_http_protocol_options": {"headers_with_underscores_action": "REJECT_REQUEST"},
                }}},
            }],
        },
    }));
    let header = "# Rendered by `apiguard render istio`: the WasmPlugin (phase AUTHN, failStrategy FAIL_RELOAD),\n\
                  # a ServiceEntry (and DestinationRule for TLS) per host the policy calls (port `grpc` for the rate\n\
                  # limit service), and the connection-\n\
                  # manager hygiene of docs/deployment.md (for sidecars: context SIDECAR_INBOUND, the workload's labels).\n";
    if args.switch("--json") {
        return Ok((
            pretty(&json!({"apiVersion": "v1", "kind": "List", "items": docs})),
            notes,
        ));
    }
    let body: Vec<String> = docs.iter().map(to_yaml).collect();
    Ok((format!("{header}{}", body.join("---\n")), notes))
}

#[cfg(test)]
mod tests {
    use super::endpoint;

    #[test]
    fn endpoints() {
        assert_eq!(
            endpoint("https://idp.example.com/jwks"),
            Some((true, "idp.example.com".into(), 443))
        );
        assert_eq!(
            endpoint("http://127.0.0.1:8081/x"),
            Some((false, "127.0.0.1".into(), 8081))
        );
        assert_eq!(endpoint("ftp://x"), None);
    }
}
