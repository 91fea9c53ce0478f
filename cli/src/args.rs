//! Command-line arguments, parsed by hand: positional arguments, `--flag value`, `--flag=value`
//! and switches. An unknown flag is a usage error (exit 2).

use crate::report::{Format, EXIT_OK, EXIT_USAGE};

/// A command: its name (as typed after `apiguard`) and its usage text.
pub struct Command {
    pub name: &'static str,
    pub help: &'static str,
}

impl Command {
    /// Prints a usage error with the usage text; the exit code to return.
    pub fn usage(&self, message: &str) -> u8 {
        eprintln!("apiguard {}: {message}\n\n{}", self.name, self.help);
        EXIT_USAGE
    }

    /// The arguments, or the exit code when the command is already done (`--help` printed: 0, a
    /// usage error: 2).
    pub fn parse(
        &self,
        argv: &[String],
        with_value: &[&str],
        switches: &[&str],
    ) -> Result<Args, u8> {
        let args = Args::parse(argv, with_value, switches).map_err(|e| self.usage(&e))?;
        if args.help() {
            print_out(&format!("{}\n", self.help));
            return Err(EXIT_OK);
        }
        Ok(args)
    }

    /// `--format text|json|sarif` (default text).
    pub fn format(&self, args: &Args) -> Result<Format, u8> {
        Format::parse(args.value("--format").unwrap_or("text"))
            .ok_or_else(|| self.usage("--format is text, json or sarif"))
    }
}

#[derive(Debug, Default)]
pub struct Args {
    pub positional: Vec<String>,
    values: Vec<(String, String)>,
    switches: Vec<String>,
}

impl Args {
    /// `with_value`: flags that take a value; `switches`: flags that do not. `--help` / `-h` is
    /// always a switch.
    pub fn parse(args: &[String], with_value: &[&str], switches: &[&str]) -> Result<Args, String> {
        let mut out = Args::default();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            if arg == "-h" || arg == "--help" {
                out.switches.push("--help".into());
            } else if arg == "-" || !arg.starts_with('-') {
                out.positional.push(arg.clone());
            } else if let Some((flag, value)) = arg.split_once('=') {
                if !with_value.contains(&flag) {
                    return Err(format!("unknown option `{flag}`"));
                }
                out.values.push((flag.to_string(), value.to_string()));
            } else if with_value.contains(&arg.as_str()) {
                let Some(value) = it.next() else {
                    return Err(format!("`{arg}` needs a value"));
                };
                out.values.push((arg.clone(), value.clone()));
            } else if switches.contains(&arg.as_str()) {
                out.switches.push(arg.clone());
            } else {
                return Err(format!("unknown option `{arg}`"));
            }
        }
        Ok(out)
    }

    /// The last value given for `flag`.
    pub fn value(&self, flag: &str) -> Option<&str> {
        self.values
            .iter()
            .rev()
            .find(|(f, _)| f == flag)
            .map(|(_, v)| v.as_str())
    }

    /// Every value given for a flag that may repeat.
    pub fn values(&self, flag: &str) -> Vec<&str> {
        self.values
            .iter()
            .filter(|(f, _)| f == flag)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn switch(&self, flag: &str) -> bool {
        self.switches.iter().any(|s| s == flag)
    }

    pub fn help(&self) -> bool {
        self.switch("--help")
    }
}

/// Writes to standard output; a closed pipe (`apiguard lint x | head`) is not an error worth a
/// panic, so write errors are dropped.
pub fn print_out(text: &str) {
    let _ = write_output(None, text);
}

/// Reads a file (`-` is standard input).
pub fn read_input(path: &str) -> Result<Vec<u8>, String> {
    if path == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
        return Ok(buf);
    }
    std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))
}

/// Writes to a file, or to standard output when `path` is `None` or `-`.
pub fn write_output(path: Option<&str>, text: &str) -> Result<(), String> {
    match path {
        None | Some("-") => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .map_err(|e| format!("cannot write: {e}"))
        }
        Some(p) => std::fs::write(p, text).map_err(|e| format!("cannot write {p}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn values_switches_and_unknown_flags() {
        let a = Args::parse(
            &v(&["x", "--format=sarif", "--strict", "-o", "f"]),
            &["--format", "-o"],
            &["--strict"],
        )
        .unwrap();
        assert_eq!(a.positional, vec!["x"]);
        assert_eq!(a.value("--format"), Some("sarif"));
        assert_eq!(a.value("-o"), Some("f"));
        assert!(a.switch("--strict"));
        assert!(Args::parse(&v(&["--nope"]), &[], &[]).is_err());
        assert!(Args::parse(&v(&["--format"]), &["--format"], &[]).is_err());
    }
}
