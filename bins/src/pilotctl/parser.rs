//! The command line, parsed by clap from the command table (`commands::COMMANDS`), so the
//! help, the completions, `context` and dispatch all come from one set of definitions.
//!
//! Before clap sees it, the command line is normalized to keep the reference's forms working
//! (`spec/services.md` §9 rules 1 and 5): `--json` anywhere is taken out and switches the
//! output mode; single-dash long flags (`-json`, `-timeout 5s`) become `--timeout`; and a
//! flag's value given as the next argument is joined to it (`--data -x` → `--data=-x`), so a
//! value may start with a dash and a boolean may be followed by `true`/`false`/`1`/`0`.

use super::args::{Args, Flag};
use super::commands::{Spec, COMMANDS};
use super::output::{CliError, Code};
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Arg, ArgAction, ArgMatches, Command};
use std::collections::BTreeMap;

/// The synopsis of the whole program, shown at the top of the help.
pub const USAGE: &str = "pilotctl [--json] <command> [arguments]";

/// Text after the top-level help.
const AFTER_HELP: &str = "\
<target> is an address (0:0000.0000.002A), a node ID (42) or a hostname.
Flags take --key=value, --key value or the reference's -key value; --json goes anywhere.
Exit status: 0 success, 1 failure, 2 command-line error (with --json every failure exits 1).
More: pilotctl help <command>, pilotctl context (every command as JSON)";

/// What the command line asks for.
pub enum Parsed {
    /// Run `spec` with `args`.
    Run {
        /// The command.
        spec: &'static Spec,
        /// Its arguments.
        args: Args,
    },
    /// Print this text on stdout and exit 0 (`--help`, `help`, `--version`).
    Print(String),
}

/// The command line after [`normalize`].
#[derive(Debug, PartialEq, Eq)]
pub struct Normalized {
    /// `--json` was given somewhere.
    pub json: bool,
    /// The arguments for clap.
    pub args: Vec<String>,
    /// The command they name, if they name one.
    pub command: Option<&'static str>,
}

fn is_bool_literal(text: &str) -> bool {
    matches!(text, "true" | "false" | "1" | "0")
}

/// The command `words` start with, and how many words its name takes.
fn find_command(words: &[&str]) -> Option<(&'static Spec, usize)> {
    if let [first, second, ..] = words {
        let two = format!("{first} {second}");
        if let Some(spec) = COMMANDS.iter().find(|s| s.name == two) {
            return Some((spec, 2));
        }
    }
    let first = words.first()?;
    COMMANDS
        .iter()
        .find(|s| s.name == *first)
        .map(|spec| (spec, 1))
}

/// A `-name` or `-name=value` argument in the reference's single-dash form, as `--…`.
fn double_dashed(arg: &str) -> Option<String> {
    let body = arg.strip_prefix('-')?;
    let name = body.split('=').next().unwrap_or_default();
    let long_name = name.len() > 1
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    (!body.starts_with('-') && long_name).then(|| format!("-{arg}"))
}

/// Normalizes a command line (see the module doc).
pub fn normalize(argv: &[String]) -> Normalized {
    let mut json = false;
    let mut words: Vec<&str> = Vec::new();
    // The command is named by the leading non-flag words.
    for arg in argv {
        if arg.starts_with('-') {
            if words.is_empty() {
                continue;
            }
            break;
        }
        words.push(arg);
        if words.len() == 2 {
            break;
        }
    }
    let found = find_command(&words);
    let flags: &[Flag] = found.map(|(spec, _)| spec.flags).unwrap_or(&[]);
    let mut out = Vec::with_capacity(argv.len());
    let mut iter = argv.iter().peekable();
    while let Some(arg) = iter.next() {
        if arg == "--" {
            out.push(arg.clone());
            out.extend(iter.by_ref().cloned());
            break;
        }
        let arg = double_dashed(arg).unwrap_or_else(|| arg.clone());
        if arg == "--json" {
            json = true;
            continue;
        }
        let Some(name) = arg.strip_prefix("--").filter(|n| !n.contains('=')) else {
            out.push(arg);
            continue;
        };
        let takes_next = match (flags.iter().find(|f| f.name == name), iter.peek()) {
            (Some(flag), Some(next)) if !next.starts_with("--") => {
                !flag.boolean || is_bool_literal(next)
            }
            _ => false,
        };
        match iter.next_if(|_| takes_next) {
            Some(value) => out.push(format!("{arg}={value}")),
            None => out.push(arg),
        }
    }
    Normalized {
        json,
        args: out,
        command: found.map(|(spec, _)| spec.name),
    }
}

/// The clap ids of positional arguments, in order (no command takes more).
const POSITIONAL_IDS: [&str; 4] = ["arg1", "arg2", "arg3", "arg4"];

/// Where a synopsis entry (`"<target>"`, `"[port=1000]"`, `"[--count 4]"`) is a positional
/// argument: its name and whether it is required.
fn positional(entry: &'static str) -> Option<(&'static str, bool)> {
    if let Some(inner) = entry.strip_prefix('<') {
        return Some((inner.trim_end_matches('>'), true));
    }
    let inner = entry.strip_prefix('[')?.trim_end_matches(']');
    (!inner.starts_with('-')).then_some((inner, false))
}

/// The synopsis entry that documents `--name`, and the placeholder after it.
fn flag_synopsis(spec: &'static Spec, name: &str) -> (Option<&'static str>, &'static str) {
    let long = format!("--{name}");
    for entry in spec.args {
        let mut words = entry
            .split(|c: char| c.is_whitespace() || c == '[' || c == ']')
            .filter(|w| !w.is_empty());
        while let Some(word) = words.next() {
            if word == long {
                let placeholder = words
                    .next()
                    .filter(|w| !w.starts_with("--") && *w != "|")
                    .unwrap_or("value");
                return (Some(entry), placeholder);
            }
        }
    }
    (None, "value")
}

/// The clap definition of one command.
fn leaf(spec: &'static Spec, name: &'static str) -> Command {
    let mut examples = String::from("Examples:");
    for example in spec.examples {
        examples.push_str("\n  ");
        examples.push_str(example);
    }
    let mut cmd = Command::new(name)
        .about(spec.description)
        .after_help(format!("Returns: {}\n\n{examples}", spec.returns))
        .allow_negative_numbers(true)
        .args_override_self(true);
    let mut index = 0;
    for entry in spec.args {
        if let Some((value_name, required)) = positional(entry) {
            index += 1;
            cmd = cmd.arg(
                Arg::new(POSITIONAL_IDS[index - 1])
                    .value_name(value_name)
                    .required(required)
                    .index(index),
            );
        }
    }
    for flag in spec.flags {
        let (help, placeholder) = flag_synopsis(spec, flag.name);
        let mut arg = Arg::new(flag.name).long(flag.name);
        if let Some(default) = help.and_then(|h| h.strip_prefix('[')).map(|_| placeholder) {
            if default.starts_with(|c: char| c.is_ascii_digit()) {
                arg = arg.help(format!("default: {default}"));
            }
        }
        arg = if flag.boolean {
            arg.num_args(0..=1)
                .require_equals(true)
                .default_missing_value("true")
                .value_parser(["true", "false", "1", "0"])
                .action(ArgAction::Set)
        } else {
            let value_name = if placeholder.starts_with(|c: char| c.is_ascii_digit()) {
                "value"
            } else {
                placeholder
            };
            arg.value_name(value_name).action(ArgAction::Set)
        };
        cmd = cmd.arg(arg);
    }
    cmd
}

/// The clap definition of pilotctl, generated from [`COMMANDS`].
pub fn command() -> Command {
    let mut root = Command::new("pilotctl")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Drive the local pilot daemon from a shell or a script")
        .override_usage(USAGE)
        .after_help(AFTER_HELP)
        .color(clap::ColorChoice::Never)
        .subcommand_required(true)
        .arg(
            Arg::new("json")
                .long("json")
                .global(true)
                .action(ArgAction::SetTrue)
                .help("Machine-readable output: {\"data\":…,\"status\":\"ok\"} on stdout, errors as JSON on stderr"),
        );
    for spec in COMMANDS {
        let name: &'static str = spec.name;
        root = match name.split_once(' ') {
            None => root.subcommand(leaf(spec, name)),
            Some((group, sub)) if root.find_subcommand(group).is_some() => {
                root.mut_subcommand(group, |g| g.subcommand(leaf(spec, sub)))
            }
            Some((group, sub)) => root.subcommand(
                Command::new(group)
                    .about(format!(
                        "The {group} sub-commands: {}",
                        group_members(group).replace('|', ", ")
                    ))
                    .subcommand_required(true)
                    .subcommand(leaf(spec, sub)),
            ),
        };
    }
    root
}

/// The sub-commands of group `group` (`daemon`, `task`), as `a|b|c`.
fn group_members(group: &str) -> String {
    COMMANDS
        .iter()
        .filter_map(|s| s.name.strip_prefix(group)?.strip_prefix(' '))
        .collect::<Vec<_>>()
        .join("|")
}

/// The text of a context value clap attached to an error.
fn context_text(err: &clap::Error, kind: ContextKind) -> Option<String> {
    match err.get(kind)? {
        ContextValue::String(s) => Some(s.clone()),
        ContextValue::Strings(v) => v.first().cloned(),
        _ => None,
    }
}

/// A clap error as pilotctl's `invalid_argument` error (or the text to print, for help).
fn from_clap(
    err: clap::Error,
    command: Option<&'static str>,
    argv: &[String],
) -> Result<Parsed, CliError> {
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        return Ok(Parsed::Print(err.render().to_string()));
    }
    let name = command.unwrap_or_default();
    let invalid = context_text(&err, ContextKind::InvalidArg).unwrap_or_default();
    let did_you_mean = |kind| {
        context_text(&err, kind)
            .map(|s| format!("; did you mean '{s}'?"))
            .unwrap_or_default()
    };
    let group = argv.iter().find(|a| !a.starts_with('-')).filter(|g| {
        COMMANDS
            .iter()
            .any(|s| s.name.starts_with(&format!("{g} ")))
    });
    let error = match err.kind() {
        ErrorKind::InvalidSubcommand | ErrorKind::MissingSubcommand
            if group.is_some() && command.is_none() =>
        {
            let group = group.map(String::as_str).unwrap_or_default();
            let members = group_members(group);
            let invalid_sub = (err.kind() == ErrorKind::InvalidSubcommand)
                .then(|| context_text(&err, ContextKind::InvalidSubcommand))
                .flatten();
            let message = match invalid_sub {
                Some(sub) => format!(
                    "'{group}' has no sub-command {sub:?}{}",
                    did_you_mean(ContextKind::SuggestedSubcommand)
                ),
                None => format!("'{group}' needs one of {}", members.replace('|', ", ")),
            };
            CliError::new(Code::InvalidArgument, message)
                .hint(format!("usage: pilotctl {group} {members}"))
        }
        ErrorKind::MissingSubcommand => CliError::new(Code::InvalidArgument, "no command given")
            .hint("run 'pilotctl context' for the full command list"),
        ErrorKind::InvalidSubcommand => {
            let sub = context_text(&err, ContextKind::InvalidSubcommand).unwrap_or_default();
            CliError::new(
                Code::InvalidArgument,
                format!(
                    "unknown command {sub:?}{}",
                    did_you_mean(ContextKind::SuggestedSubcommand)
                ),
            )
            .hint("run 'pilotctl context' for the full command list")
        }
        ErrorKind::UnknownArgument if invalid.starts_with('-') => {
            let flag = invalid.split('=').next().unwrap_or_default();
            CliError::usage(
                name,
                format!(
                    "unknown flag {flag} for '{name}'{}",
                    did_you_mean(ContextKind::SuggestedArg)
                ),
            )
        }
        ErrorKind::UnknownArgument => {
            let takes = COMMANDS
                .iter()
                .find(|s| s.name == name)
                .map_or(0, |s| s.args.iter().filter_map(|e| positional(e)).count());
            let takes = match takes {
                0 => "no arguments".to_string(),
                1 => "at most 1 argument".to_string(),
                n => format!("at most {n} arguments"),
            };
            CliError::usage(
                name,
                format!("unexpected argument {invalid:?} for '{name}' (it takes {takes})"),
            )
        }
        ErrorKind::MissingRequiredArgument => {
            CliError::usage(name, format!("'{name}' needs more arguments: {invalid}"))
        }
        _ => {
            let rendered = err.render().to_string();
            let first = rendered.lines().next().unwrap_or_default();
            CliError::usage(name, first.trim_start_matches("error: ").to_string())
        }
    };
    Err(error)
}

/// The matches of the command clap found, and its name in the table.
fn leaf_matches(matches: &ArgMatches) -> Option<(String, &ArgMatches)> {
    let (name, sub) = matches.subcommand()?;
    match sub.subcommand() {
        Some((inner, leaf)) => Some((format!("{name} {inner}"), leaf)),
        None => Some((name.to_string(), sub)),
    }
}

/// Parses the normalized command line `normalized` (see [`normalize`]).
pub fn parse(normalized: &Normalized) -> Result<Parsed, CliError> {
    let argv = std::iter::once("pilotctl".to_string()).chain(normalized.args.iter().cloned());
    let matches = match command().try_get_matches_from(argv) {
        Ok(m) => m,
        Err(err) => return from_clap(err, normalized.command, &normalized.args),
    };
    let (name, leaf) = leaf_matches(&matches)
        .ok_or_else(|| CliError::new(Code::Internal, "clap found no command"))?;
    let spec = COMMANDS.iter().find(|s| s.name == name).ok_or_else(|| {
        CliError::new(
            Code::Internal,
            format!("command {name} is not in the table"),
        )
    })?;
    let positional = POSITIONAL_IDS
        .iter()
        .take_while(|id| leaf.try_contains_id(id).is_ok())
        .filter_map(|id| leaf.get_one::<String>(id).cloned())
        .collect();
    let mut flags = BTreeMap::new();
    for flag in spec.flags {
        if let Some(value) = leaf.get_one::<String>(flag.name) {
            flags.insert(flag.name.to_string(), value.clone());
        }
    }
    Ok(Parsed::Run {
        spec,
        args: Args::new(spec.name, positional, flags),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    fn run(args: &[&str]) -> Result<(String, Args), CliError> {
        match parse(&normalize(&strings(args)))? {
            Parsed::Run { spec, args } => Ok((spec.name.to_string(), args)),
            Parsed::Print(text) => panic!("printed {text}"),
        }
    }

    #[test]
    fn the_clap_definition_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn reference_forms_normalize_to_double_dashes() {
        let n = normalize(&strings(&[
            "-json",
            "ping",
            "5",
            "-count",
            "3",
            "-timeout=5s",
        ]));
        assert!(n.json);
        assert_eq!(n.args, strings(&["ping", "5", "--count=3", "--timeout=5s"]));
        assert_eq!(n.command, Some("ping"));
        let n = normalize(&strings(&["send", "1", "80", "--data", "-x", "--json"]));
        assert_eq!(n.args, strings(&["send", "1", "80", "--data=-x"]));
        let n = normalize(&strings(&["inbox", "--clear", "false"]));
        assert_eq!(n.args, strings(&["inbox", "--clear=false"]));
        let n = normalize(&strings(&["daemon", "status", "--check", "x"]));
        assert_eq!(n.args, strings(&["daemon", "status", "--check", "x"]));
        assert_eq!(n.command, Some("daemon status"));
    }

    #[test]
    fn flags_and_positionals_reach_the_handler() {
        let (name, a) = run(&["ping", "-count", "3", "0:0000.0000.0005", "--json"]).unwrap();
        assert_eq!(name, "ping");
        assert_eq!(a.positional, strings(&["0:0000.0000.0005"]));
        assert_eq!(a.string("count"), Some("3"));
        let (name, a) = run(&["daemon", "status", "--check"]).unwrap();
        assert_eq!(name, "daemon status");
        assert!(a.bool("check"));
        let (_, a) = run(&["inbox", "--clear", "false"]).unwrap();
        assert!(!a.bool("clear"));
        let (_, a) = run(&["ping", "1", "--count", "2", "--count=5"]).unwrap();
        assert_eq!(a.string("count"), Some("5"), "the last one wins");
        let (_, a) = run(&["set-tags", "a", "b", "c"]).unwrap();
        assert_eq!(a.positional.len(), 3);
    }

    #[test]
    fn mistakes_are_usage_errors_with_suggestions() {
        let err = run(&["peer"]).unwrap_err();
        assert!(
            err.code == Code::InvalidArgument && err.message.contains("did you mean 'peers'"),
            "{err}"
        );
        let err = run(&["ping", "1", "--cont", "3"]).unwrap_err();
        assert!(err.message.contains("did you mean '--count'"), "{err}");
        assert!(err
            .hint
            .as_deref()
            .unwrap_or_default()
            .contains("usage: pilotctl ping"));
        let err = run(&["ping"]).unwrap_err();
        assert!(err.message.contains("needs more arguments"), "{err}");
        let err = run(&["ping", "1", "2"]).unwrap_err();
        assert!(err.message.contains("unexpected argument \"2\""), "{err}");
        assert!(err.message.contains("at most 1 argument"), "{err}");
        let err = run(&["daemon", "restart"]).unwrap_err();
        assert!(err.message.contains("'daemon' has no sub-command"), "{err}");
        assert_eq!(
            err.hint.as_deref(),
            Some("usage: pilotctl daemon start|stop|status")
        );
        let err = run(&["--json"]).unwrap_err();
        assert_eq!(err.message, "no command given");
        let err = run(&["daemon"]).unwrap_err();
        assert!(
            err.message
                .contains("'daemon' needs one of start, stop, status"),
            "{err}"
        );
    }

    #[test]
    fn help_and_version_print() {
        for args in [
            &["--help"][..],
            &["help", "ping"],
            &["ping", "--help"],
            &["--version"],
        ] {
            let parsed = parse(&normalize(&strings(args))).unwrap();
            assert!(matches!(parsed, Parsed::Print(_)), "{args:?}");
        }
        let Parsed::Print(text) =
            parse(&normalize(&strings(&["help", "daemon", "start"]))).unwrap()
        else {
            panic!("no help");
        };
        assert!(
            text.contains("--foreground") && text.contains("Examples:"),
            "{text}"
        );
    }
}
