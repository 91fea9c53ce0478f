//! `apiguard`: the native companion of the filter. Every subcommand reuses the filter's core
//! (the `apiguard` library crate), so a policy or a contract is judged by the same code the proxy runs.

mod serve;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

mod args;
mod check;
mod lint;
mod locate;
mod openapi_import;
mod policy_from_inventory;
mod policy_source;
mod render;
mod report;
mod rules;
mod sensitive;
mod source;
mod yaml_out;

const USAGE: &str = "usage: apiguard <command> [args]

commands:
  serve             the inventory service (discovery events in, catalogue, OpenAPI and findings out)
  check POLICY      compile a policy exactly as the filter does; errors with JSON path, line and column
  lint SPEC         posture of an OpenAPI contract, mapped to OWASP API Security Top 10 2023
  openapi import SPEC   an OpenAPI document (YAML or JSON, $ref across files) as the JSON the filter embeds
  render envoy|istio POLICY   the Envoy filter snippet or the Istio WasmPlugin for a policy
  policy from-inventory FILE  a starting policy (report mode) from a reviewed inventory

`apiguard <command> --help` describes each command.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    match command.as_str() {
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        "serve" => serve::main(rest),
        "--version" => {
            println!("apiguard {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        "check" => ExitCode::from(check::run(rest)),
        "lint" => ExitCode::from(lint::run(rest)),
        "policy" => ExitCode::from(policy_from_inventory::run_policy(rest)),
        "render" => ExitCode::from(render::run(rest)),
        "openapi" => ExitCode::from(openapi_import::run_openapi(rest)),
        other => {
            eprintln!("apiguard: unknown command `{other}`\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
