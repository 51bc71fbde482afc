//! `dike node --config FILE`: a TOML file of `dike node` flags.
//!
//! Each key is a flag's long name (`name`, `listen`, `masters`, `data-dir`,
//! `in-memory`, …; `_` may stand for `-`). A key becomes the value of the
//! flag's `DIKE_*` variable unless that variable is set, so a flag on the
//! command line wins over the variable, which wins over the file. It runs
//! before the arguments are parsed, while the program is still single
//! threaded (setting variables is only sound then).

use super::args::Cli;
use super::error::CliError;
use clap::CommandFactory;
use std::path::Path;

/// The file given with `--config` to `dike node` in `args`, if any.
pub fn config_path(args: &[String]) -> Option<&str> {
    if args.get(1).map(String::as_str) != Some("node") {
        return None;
    }
    let mut rest = args.iter().skip(2);
    while let Some(a) = rest.next() {
        if a == "--config" {
            return rest.next().map(String::as_str);
        }
        if let Some(path) = a.strip_prefix("--config=") {
            return Some(path);
        }
    }
    None
}

/// The `(variable, value)` pairs the file at `path` sets, checked against
/// the flags of `dike node`.
pub fn variables(path: &Path) -> Result<Vec<(String, String)>, CliError> {
    let bad = |why: String| CliError::Usage(format!("config file {}: {why}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| bad(e.to_string()))?;
    let command = Cli::command();
    let node = command
        .find_subcommand("node")
        .ok_or_else(|| bad("this program has no node command".into()))?;
    let mut out = Vec::new();
    for (key, value) in &table {
        let flag = key.replace('_', "-");
        let arg = node
            .get_arguments()
            .find(|a| a.get_long() == Some(flag.as_str()))
            .filter(|a| a.get_env().is_some());
        let Some(arg) = arg else {
            let known: Vec<&str> = node
                .get_arguments()
                .filter(|a| a.get_env().is_some())
                .filter_map(|a| a.get_long())
                .collect();
            return Err(bad(format!(
                "unknown key {key:?}; known: {}",
                known.join(", ")
            )));
        };
        let var = arg
            .get_env()
            .and_then(|v| v.to_str())
            .ok_or_else(|| bad(format!("{key:?} has no variable")))?;
        let text = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => {
                let parts: Result<Vec<String>, CliError> = items
                    .iter()
                    .map(|i| match i {
                        toml::Value::String(s) => Ok(s.clone()),
                        other => Err(bad(format!("{key:?}: {other:?} is not a string"))),
                    })
                    .collect();
                parts?.join(",")
            }
            other => return Err(bad(format!("{key:?}: {other:?} is not a flag value"))),
        };
        out.push((var.to_owned(), text));
    }
    Ok(out)
}

/// Applies `dike node --config FILE` from `args` (see the module
/// documentation). Must run before any thread starts.
pub fn apply(args: &[String]) -> Result<(), CliError> {
    let Some(path) = config_path(args) else {
        return Ok(());
    };
    for (var, value) in variables(Path::new(path))? {
        if std::env::var_os(&var).is_none() {
            // Single-threaded here (see `apply`'s contract).
            std::env::set_var(&var, value);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_config_flag_is_found_only_for_node() {
        assert_eq!(
            config_path(&args(&["dike", "node", "--config", "f.toml"])),
            Some("f.toml")
        );
        assert_eq!(
            config_path(&args(&["dike", "node", "--name", "a", "--config=g"])),
            Some("g")
        );
        assert_eq!(
            config_path(&args(&["dike", "status", "--config", "f"])),
            None
        );
        assert_eq!(config_path(&args(&["dike", "node", "--name", "a"])), None);
    }

    #[test]
    fn keys_become_the_flags_variables_and_unknown_keys_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.toml");
        std::fs::write(
            &path,
            "name = \"n1\"\nlisten = \"127.0.0.1:7001\"\nmasters = [\"n1@127.0.0.1:7001\", \"n2@127.0.0.1:7002\"]\nin_memory = true\nreplace-after = 30\n",
        )
        .expect("write");
        let mut vars = variables(&path).expect("valid");
        vars.sort();
        assert_eq!(
            vars,
            [
                ("DIKE_IN_MEMORY".to_owned(), "true".to_owned()),
                ("DIKE_LISTEN".to_owned(), "127.0.0.1:7001".to_owned()),
                (
                    "DIKE_MASTERS".to_owned(),
                    "n1@127.0.0.1:7001,n2@127.0.0.1:7002".to_owned()
                ),
                ("DIKE_NAME".to_owned(), "n1".to_owned()),
                ("DIKE_REPLACE_AFTER".to_owned(), "30".to_owned()),
            ]
        );
        std::fs::write(
            &path,
            "tls-cert = \"n1.pem\"\ntls_key = \"n1-key.pem\"\ntls-ca = \"ca.pem\"\n",
        )
        .expect("write");
        let mut vars = variables(&path).expect("TLS keys");
        vars.sort();
        let names: Vec<&str> = vars.iter().map(|(v, _)| v.as_str()).collect();
        assert_eq!(names, ["DIKE_TLS_CA", "DIKE_TLS_CERT", "DIKE_TLS_KEY"]);
        std::fs::write(&path, "nmae = \"typo\"\n").expect("write");
        let err = variables(&path).expect_err("refused").to_string();
        assert!(err.contains("nmae") && err.contains("known"), "{err}");
        std::fs::write(&path, "name = \n").expect("write");
        assert!(variables(&path).is_err(), "not TOML");
    }
}
