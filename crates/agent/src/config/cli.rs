//! The command line, built from the settings table. clap only collects
//! strings: environment, file and defaults are layered in `config` so every
//! source is resolved (and named in errors) the same way.

use std::collections::HashMap;
use std::ffi::OsString;

use clap::{Arg, ArgAction, Command};

use super::table::SETTINGS;

const ABOUT: &str = "Zero-code eBPF instrumentation: HTTP spans and RED metrics for the \
selected processes, without kprobes and without touching them.\n\n\
With no selector at all, every process on the host but the agent is instrumented. \
Selectors combine as a union. Precedence: flag > environment > --config file > default \
(see docs/configuration.md).";

pub fn command() -> Command {
    let mut cmd = Command::new("ratatosk")
        .version(env!("CARGO_PKG_VERSION"))
        .about(ABOUT);
    for s in SETTINGS {
        let mut help = format!("{}\n[env: {}]", s.help, s.env);
        if !s.aliases.is_empty() {
            help.push_str(&format!(" [aliases: {}]", s.aliases.join(", ")));
        }
        if let Some(y) = s.yaml {
            help.push_str(&format!(" [file: {y}]"));
        }
        help.push_str(&format!(" [default: {}]", s.default));
        let mut arg = Arg::new(s.id)
            .long(s.flag)
            .value_name(s.value_name)
            .help(help);
        arg = match s.id {
            // Repeatable, like a comma list.
            "pid" => arg.action(ArgAction::Append),
            // `--resource-command-args` alone means true.
            "resource_command_args" | "raw_db_query_text" => arg
                .num_args(0..=1)
                .default_missing_value("true")
                .action(ArgAction::Set),
            _ => arg.action(ArgAction::Set),
        };
        cmd = cmd.arg(arg);
    }
    cmd
}

/// The flags given, by setting id, as text.
#[derive(Debug, Default)]
pub struct CliValues(HashMap<&'static str, String>);

impl CliValues {
    pub fn get(&self, id: &str) -> Option<&str> {
        self.0.get(id).map(String::as_str)
    }
}

pub fn parse_from<I, T>(args: I) -> Result<CliValues, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let m = command().try_get_matches_from(args)?;
    let mut out = HashMap::new();
    for s in SETTINGS {
        if let Some(vals) = m.get_many::<String>(s.id) {
            let v: Vec<&str> = vals.map(String::as_str).collect();
            out.insert(s.id, v.join(","));
        }
    }
    Ok(CliValues(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_is_well_formed() {
        command().debug_assert();
    }

    #[test]
    fn help_names_the_environment_and_aliases() {
        let help = command().render_long_help().to_string();
        assert!(help.contains("--open-port <PORTS>"), "{help}");
        assert!(help.contains("RATATOSK_OPEN_PORT") && help.contains("BEYLA_OPEN_PORT"));
        assert!(help.contains("OTEL_EXPORTER_OTLP_ENDPOINT"));
    }

    #[test]
    fn repeated_pids_and_bare_bool() {
        let v = parse_from([
            "ratatosk",
            "--pid",
            "1,2",
            "--pid",
            "3",
            "--resource-command-args",
        ])
        .unwrap();
        assert_eq!(v.get("pid"), Some("1,2,3"));
        assert_eq!(v.get("resource_command_args"), Some("true"));
        assert_eq!(v.get("open_port"), None);
    }
}
