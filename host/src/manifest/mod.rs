//! Reading a job manifest (TOML) into a checked [`JobGraph`], with errors that name the field,
//! its line and column, and what is wrong.
//!
//! ```toml
//! edges = ["lines -> split", "split -> count", "count -> out"]
//!
//! [job]
//! name = "wordcount"
//! max_parallelism = 128          # key groups
//! parallelism = 2                # default for every node
//!
//! [sources.lines]
//! kind = "file"
//! path = "input.txt"
//!
//! [operators.split]
//! component = "split.wasm"
//!
//! [operators.count]
//! component = "count.wasm"
//! partition = "hash"
//!
//! [sinks.out]
//! kind = "file"
//! path = "out"
//! ```

mod overrides;
mod portable;
mod spec;
mod time;

pub use overrides::Override;
pub use portable::portable;
pub use time::warnings;

use crate::checkpoint::{
    Backend, CheckpointSettings, Mode, RestartStrategy, Schedule, parse_duration,
};
use crate::connectors::{
    DatagenConfig, DatagenShape, FileSourceConfig, LineFormat, MAX_DELAY_US, MAX_WORDS_PER_LINE,
    SinkConfig, SourceConfig, open_input,
};
use crate::plan::{
    Edge, GuestLimits, JobGraph, MAX_NAME_BYTES, Node, NodeKind, OperatorNode, Partition,
    is_valid_name,
};
use spec::{CheckpointSpec, OperatorSpec, RestartSpec, SinkSpec, SourceSpec, Spec};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::{Range, RangeInclusive};
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

pub use crate::plan::{MAX_KEY_GROUPS, MAX_SUBTASKS};
const DEFAULT_MAX_PARALLELISM: u32 = 128;
/// The largest manifest read.
const MAX_MANIFEST_BYTES: u64 = 16 << 20;

/// A manifest that cannot be run, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    pub file: PathBuf,
    /// Line and column (1-based) of the offending field, when known.
    pub at: Option<(usize, usize)>,
    /// The dotted field path, e.g. `operators.count.parallelism`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, col)) = self.at {
            write!(f, ":{line}:{col}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ManifestError {}

/// Reads and checks the manifest at `path`, after applying `overrides`.
///
/// Relative paths in the file resolve against the manifest's directory; relative paths set with
/// `--set` resolve against the current directory, as on any command line.
pub fn load(path: &Path, overrides: &[Override]) -> Result<JobGraph, ManifestError> {
    load_with(path, overrides, &ComponentFiles)
}

/// [`load`], with the components resolved through `components`.
pub fn load_with(
    path: &Path,
    overrides: &[Override],
    components: &dyn Components,
) -> Result<JobGraph, ManifestError> {
    let whole = |message: String| ManifestError {
        file: path.to_path_buf(),
        at: None,
        field: String::new(),
        message,
    };
    let bytes = crate::files::read_limited(path, MAX_MANIFEST_BYTES, None)
        .map_err(|e| whole(format!("cannot read the manifest: {e}")))?;
    let text = String::from_utf8(bytes)
        .map_err(|e| whole(format!("the manifest is not UTF-8 text: {e}")))?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    load_text(&text, path, &base, overrides, components)
}

/// Where the components a manifest names come from.
pub trait Components {
    /// The component `name` (as written in the manifest, at field `field`) stands for: a file
    /// that exists, or why there is none.
    fn resolve(&self, base: &Path, name: &str) -> Result<PathBuf, String>;
}

/// Components are files, relative to the manifest's directory.
pub struct ComponentFiles;

impl Components for ComponentFiles {
    fn resolve(&self, base: &Path, name: &str) -> Result<PathBuf, String> {
        let path = base.join(name);
        if path.is_dir() {
            return Err(format!(
                "{} is a directory: to build the project it holds first, run with --build \
                 (or name the .wasm that `weir build` prints)",
                path.display()
            ));
        }
        crate::files::check_regular(&path).map_err(|e| {
            let hint = match e {
                crate::files::FileError::Missing { .. } => " (build the example guests first?)",
                _ => "",
            };
            format!("component file {e}{hint}")
        })?;
        Ok(path)
    }
}

/// The largest manifest accepted (as text).
pub const MAX_MANIFEST_TEXT: u64 = MAX_MANIFEST_BYTES;

/// Checks manifest `text` (called `file` in errors) after applying `overrides`: relative paths
/// in it resolve against `base`, components through `components`.
pub fn load_text(
    text: &str,
    file: &Path,
    base: &Path,
    overrides: &[Override],
    components: &dyn Components,
) -> Result<JobGraph, ManifestError> {
    let whole = |message: String| ManifestError {
        file: file.to_path_buf(),
        at: None,
        field: String::new(),
        message,
    };
    let (text, overridden) =
        overrides::apply(text, overrides).map_err(|e| whole(format!("--set: {e}")))?;
    let cx = Checker {
        file: file.to_path_buf(),
        text: &text,
        base: base.to_path_buf(),
        overridden,
        components,
    };
    let spec: Spec = toml::from_str(&text).map_err(|e| {
        let at = e.span().map(|s| cx.position(s.start));
        ManifestError {
            file: file.to_path_buf(),
            at,
            field: String::new(),
            message: e.message().trim().to_string(),
        }
    })?;
    cx.check(spec)
}

/// The nodes read so far, by uid, with where each set `partition` (nodes without it get
/// Flink's default once the edges are known).
#[derive(Default)]
struct NodeSet {
    default_parallelism: u32,
    max_parallelism: u32,
    nodes: Vec<Node>,
    partition_spans: Vec<Option<Range<usize>>>,
    index: BTreeMap<String, usize>,
}

impl NodeSet {
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        cx: &Checker<'_>,
        section: &str,
        uid: &str,
        span: Range<usize>,
        parallelism: Option<&Spanned<u32>>,
        partition: Option<&Spanned<String>>,
        kind: NodeKind,
    ) -> Result<(), ManifestError> {
        let field = format!("{section}.{uid}");
        if !is_valid_name(uid) {
            return Err(cx.err(
                Some(span),
                field,
                format!("a uid is 1 to {MAX_NAME_BYTES} letters, digits, `_` or `-`"),
            ));
        }
        let parallelism = cx.parallelism(
            &format!("{field}.parallelism"),
            parallelism,
            self.default_parallelism,
            self.max_parallelism,
        )?;
        let explicit = cx.partition(&field, partition)?;
        let partition_span = partition.map(Spanned::span);
        if self
            .index
            .insert(uid.to_string(), self.nodes.len())
            .is_some()
        {
            return Err(cx.err(
                Some(span),
                field,
                format!(
                    "uid `{uid}` is used twice; uids are unique across sources, operators and sinks"
                ),
            ));
        }
        let partition = explicit.unwrap_or(Partition::Forward);
        self.nodes.push(Node {
            uid: uid.to_string(),
            parallelism,
            partition,
            kind,
            time: None,
        });
        self.partition_spans.push(partition_span);
        Ok(())
    }
}

struct Checker<'a> {
    file: PathBuf,
    text: &'a str,
    base: PathBuf,
    overridden: BTreeSet<String>,
    components: &'a dyn Components,
}

impl Checker<'_> {
    fn position(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }

    fn err(
        &self,
        span: Option<Range<usize>>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> ManifestError {
        ManifestError {
            file: self.file.clone(),
            at: span.map(|s| self.position(s.start)),
            field: field.into(),
            message: message.into(),
        }
    }

    /// Resolves a path field: against the current directory if it came from `--set`.
    fn path(&self, field: &str, value: &str) -> PathBuf {
        let p = PathBuf::from(value);
        if p.is_absolute() || self.overridden.contains(field) {
            p
        } else {
            self.base.join(p)
        }
    }

    fn parallelism(
        &self,
        field: &str,
        p: Option<&Spanned<u32>>,
        default: u32,
        max: u32,
    ) -> Result<u32, ManifestError> {
        let Some(p) = p else { return Ok(default) };
        let v = *p.get_ref();
        if v == 0 {
            return Err(self.err(Some(p.span()), field, "parallelism must be at least 1"));
        }
        if v > max {
            return Err(self.err(
                Some(p.span()),
                field,
                format!("parallelism {v} exceeds job.max_parallelism {max} (the number of key groups); raise max_parallelism or lower the parallelism"),
            ));
        }
        Ok(v)
    }

    /// A numeric field's value, which must lie in `range` (`unit` follows the bounds in the
    /// message); `None` when the field is absent.
    fn bounded(
        &self,
        field: &str,
        v: Option<&Spanned<u64>>,
        range: RangeInclusive<u64>,
        unit: &str,
    ) -> Result<Option<u64>, ManifestError> {
        let Some(v) = v else { return Ok(None) };
        if !range.contains(v.get_ref()) {
            return Err(self.err(
                Some(v.span()),
                field,
                format!(
                    "{} is out of range: must be between {} and {}{unit}",
                    v.get_ref(),
                    range.start(),
                    range.end()
                ),
            ));
        }
        Ok(Some(*v.get_ref()))
    }

    /// A duration field (`"250ms"`, `"1s"`, ...) within `range`; `default` when absent.
    fn duration(
        &self,
        field: &str,
        v: Option<&Spanned<String>>,
        range: RangeInclusive<Duration>,
        default: Duration,
    ) -> Result<Duration, ManifestError> {
        let Some(v) = v else { return Ok(default) };
        let d = parse_duration(v.get_ref()).map_err(|e| self.err(Some(v.span()), field, e))?;
        if !range.contains(&d) {
            return Err(self.err(
                Some(v.span()),
                field,
                format!(
                    "`{}` is out of range: must be between {:?} and {:?}",
                    v.get_ref(),
                    range.start(),
                    range.end()
                ),
            ));
        }
        Ok(d)
    }

    /// One of `choices` (manifest spellings and their values); `default` when absent.
    fn choice<T: Copy>(
        &self,
        field: &str,
        v: Option<&Spanned<String>>,
        choices: &[(&str, T)],
        default: T,
    ) -> Result<T, ManifestError> {
        let Some(v) = v else { return Ok(default) };
        choices
            .iter()
            .find(|(name, _)| name == v.get_ref())
            .map(|&(_, value)| value)
            .ok_or_else(|| {
                let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
                self.err(
                    Some(v.span()),
                    field,
                    format!(
                        "unknown value `{}`; use {}",
                        v.get_ref(),
                        names.join(" or ")
                    ),
                )
            })
    }

    fn checkpoint(&self, c: &CheckpointSpec) -> Result<CheckpointSettings, ManifestError> {
        const DAY: Duration = Duration::from_secs(86_400);
        let ms = Duration::from_millis;
        let schedule = Schedule {
            interval: self.duration(
                "checkpoint.interval",
                c.interval.as_ref(),
                ms(10)..=DAY,
                Duration::from_secs(1),
            )?,
            timeout: self.duration(
                "checkpoint.timeout",
                c.timeout.as_ref(),
                ms(10)..=DAY,
                Duration::from_secs(600),
            )?,
            min_pause: self.duration(
                "checkpoint.min_pause",
                c.min_pause.as_ref(),
                Duration::ZERO..=DAY,
                Duration::ZERO,
            )?,
            max_concurrent: self
                .bounded(
                    "checkpoint.max_concurrent",
                    c.max_concurrent.as_ref(),
                    1..=16,
                    "",
                )?
                .unwrap_or(1) as u32,
        };
        let dir = c.dir.as_ref().map_or_else(
            || self.base.join("checkpoints"),
            |d| self.path("checkpoint.dir", d.get_ref()),
        );
        Ok(CheckpointSettings {
            schedule,
            mode: self.choice(
                "checkpoint.mode",
                c.mode.as_ref(),
                &[
                    ("exactly_once", Mode::ExactlyOnce),
                    ("at_least_once", Mode::AtLeastOnce),
                ],
                Mode::ExactlyOnce,
            )?,
            retain: self
                .bounded("checkpoint.retain", c.retain.as_ref(), 1..=1000, "")?
                .unwrap_or(1) as u32,
            retain_on_cancel: c.retain_on_cancel.unwrap_or(false),
            incremental: c.incremental.unwrap_or(false),
            backend: self.choice(
                "checkpoint.backend",
                c.backend.as_ref(),
                &[("memory", Backend::Memory), ("redb", Backend::Redb)],
                Backend::Memory,
            )?,
            dir,
        })
    }

    /// `[restart]`; absent, a job restarts three times a second apart when it checkpoints
    /// (there is something to restart from), and not at all otherwise.
    fn restart(
        &self,
        r: Option<&Spanned<RestartSpec>>,
        checkpointing: bool,
    ) -> Result<RestartStrategy, ManifestError> {
        let Some(r) = r.map(Spanned::get_ref) else {
            return Ok(if checkpointing {
                RestartStrategy::FixedDelay {
                    attempts: 3,
                    delay: Duration::from_secs(1),
                }
            } else {
                RestartStrategy::None
            });
        };
        const HOUR: Duration = Duration::from_secs(3600);
        let attempts = self
            .bounded("restart.attempts", r.attempts.as_ref(), 0..=1_000_000, "")?
            .unwrap_or(3) as u32;
        let unused = |fields: &[(&str, Option<Range<usize>>)]| {
            self.only("restart", r.strategy.get_ref(), "strategy", fields)
        };
        let span = |v: &Option<Spanned<String>>| v.as_ref().map(Spanned::span);
        match r.strategy.get_ref().as_str() {
            "none" => {
                unused(&[
                    ("attempts", r.attempts.as_ref().map(Spanned::span)),
                    ("delay", span(&r.delay)),
                    ("initial", span(&r.initial)),
                    ("max", span(&r.max)),
                    ("multiplier", r.multiplier.as_ref().map(Spanned::span)),
                ])?;
                Ok(RestartStrategy::None)
            }
            "fixed_delay" => {
                unused(&[
                    ("initial", span(&r.initial)),
                    ("max", span(&r.max)),
                    ("multiplier", r.multiplier.as_ref().map(Spanned::span)),
                ])?;
                Ok(RestartStrategy::FixedDelay {
                    attempts,
                    delay: self.duration(
                        "restart.delay",
                        r.delay.as_ref(),
                        Duration::ZERO..=HOUR,
                        Duration::from_secs(1),
                    )?,
                })
            }
            "exponential_delay" => {
                unused(&[("delay", span(&r.delay))])?;
                let multiplier = match &r.multiplier {
                    None => 2.0,
                    Some(m) if (1.0..=100.0).contains(m.get_ref()) => *m.get_ref(),
                    Some(m) => {
                        return Err(self.err(
                            Some(m.span()),
                            "restart.multiplier",
                            "must be between 1 and 100",
                        ));
                    }
                };
                Ok(RestartStrategy::ExponentialDelay {
                    attempts,
                    initial: self.duration(
                        "restart.initial",
                        r.initial.as_ref(),
                        Duration::ZERO..=HOUR,
                        Duration::from_secs(1),
                    )?,
                    max: self.duration(
                        "restart.max",
                        r.max.as_ref(),
                        Duration::ZERO..=HOUR,
                        Duration::from_secs(60),
                    )?,
                    multiplier,
                })
            }
            other => Err(self.err(
                Some(r.strategy.span()),
                "restart.strategy",
                format!("unknown strategy `{other}`; use fixed_delay, exponential_delay or none"),
            )),
        }
    }

    fn check(&self, spec: Spec) -> Result<JobGraph, ManifestError> {
        let job = &spec.job;
        let max_parallelism = match &job.max_parallelism {
            None => DEFAULT_MAX_PARALLELISM,
            Some(m) if (1..=MAX_KEY_GROUPS).contains(m.get_ref()) => *m.get_ref(),
            Some(m) => {
                return Err(self.err(
                    Some(m.span()),
                    "job.max_parallelism",
                    format!("must be between 1 and {MAX_KEY_GROUPS}"),
                ));
            }
        };
        let default_parallelism = self.parallelism(
            "job.parallelism",
            job.parallelism.as_ref(),
            1,
            max_parallelism,
        )?;
        let buffer_bytes = self
            .bounded(
                "job.buffer_bytes",
                job.buffer_bytes.as_ref(),
                256..=64 << 20,
                " bytes",
            )?
            .map_or(32 * 1024, |b| b as usize);
        let network_mib = self
            .bounded("job.network_mib", job.network_mib.as_ref(), 1..=65_536, "")?
            .unwrap_or(1024);
        let flush_ms = self
            .bounded("job.flush_ms", job.flush_ms.as_ref(), 0..=600_000, " ms")?
            .unwrap_or(100);
        let l = &spec.limits;
        let mut limits = GuestLimits::default();
        if let Some(m) = self.bounded("limits.memory_mib", l.memory_mib.as_ref(), 1..=4096, "")? {
            limits.memory_bytes = (m as usize) << 20;
        }
        if let Some(t) = self.bounded(
            "limits.call_timeout_ms",
            l.call_timeout_ms.as_ref(),
            1..=3_600_000,
            " ms",
        )? {
            limits.call_timeout = Duration::from_millis(t);
        }
        if let Some(m) = self.bounded("limits.state_mib", l.state_mib.as_ref(), 1..=1 << 20, "")? {
            limits.state_bytes = (m as usize) << 20;
        }
        if let Some(n) = self.bounded(
            "limits.log_lines_per_s",
            l.log_lines_per_s.as_ref(),
            1..=100_000,
            "",
        )? {
            limits.log_lines_per_s = n as u32;
        }
        if let Some(m) = self.bounded(
            "limits.component_mib",
            l.component_mib.as_ref(),
            1..=4096,
            "",
        )? {
            limits.component_bytes = m << 20;
        }

        let checkpoint = spec
            .checkpoint
            .as_ref()
            .map(|c| self.checkpoint(c.get_ref()))
            .transpose()?;
        let restart = self.restart(spec.restart.as_ref(), checkpoint.is_some())?;

        // Nodes, by uid; uids are unique across sources, operators and sinks.
        let mut set = NodeSet {
            default_parallelism,
            max_parallelism,
            ..NodeSet::default()
        };
        for (uid, s) in &spec.sources {
            let field = format!("sources.{uid}");
            let timestamp = self.timestamp(&field, s.get_ref())?;
            let kind = self.source(&field, s.get_ref(), &timestamp)?;
            let time =
                self.source_time(&field, s.get_ref(), s.get_ref().kind.get_ref(), &timestamp)?;
            set.add(
                self,
                "sources",
                uid,
                s.span(),
                s.get_ref().parallelism.as_ref(),
                None,
                kind,
            )?;
            if let Some(node) = set.nodes.last_mut() {
                node.time = time;
            }
        }
        for (uid, w) in &spec.windows {
            let window = w.get_ref();
            let kind = NodeKind::Window(self.window(&format!("windows.{uid}"), window)?);
            set.add(
                self,
                "windows",
                uid,
                w.span(),
                window.parallelism.as_ref(),
                window.partition.as_ref(),
                kind,
            )?;
        }
        for (uid, o) in &spec.operators {
            let op = o.get_ref();
            let kind = NodeKind::Operator(self.operator(&format!("operators.{uid}"), op)?);
            set.add(
                self,
                "operators",
                uid,
                o.span(),
                op.parallelism.as_ref(),
                op.partition.as_ref(),
                kind,
            )?;
        }
        for (uid, s) in &spec.sinks {
            let sink = s.get_ref();
            let kind = NodeKind::Sink(self.sink(&format!("sinks.{uid}"), sink)?);
            set.add(
                self,
                "sinks",
                uid,
                s.span(),
                sink.parallelism.as_ref(),
                sink.partition.as_ref(),
                kind,
            )?;
        }
        let NodeSet {
            mut nodes,
            partition_spans,
            index,
            ..
        } = set;

        let subtasks: u64 = nodes.iter().map(|n| u64::from(n.parallelism)).sum();
        if subtasks > MAX_SUBTASKS {
            return Err(self.err(
                job.parallelism.as_ref().map(Spanned::span),
                "job.parallelism",
                format!(
                    "the job has {subtasks} subtasks (every node's parallelism added up); one process runs at most {MAX_SUBTASKS}"
                ),
            ));
        }
        if !nodes.iter().any(|n| n.kind.is_source()) {
            return Err(self.err(None, "sources", "the job has no source"));
        }
        if !nodes.iter().any(|n| matches!(n.kind, NodeKind::Sink(_))) {
            return Err(self.err(None, "sinks", "the job has no sink"));
        }

        // Edges.
        let mut edges = Vec::new();
        let mut edge_spans = Vec::new();
        for e in &spec.edges {
            let span = Some(e.span());
            let Some((from, to)) = e.get_ref().split_once("->") else {
                return Err(self.err(
                    span,
                    "edges",
                    format!(
                        "`{}` is not of the form \"from -> to\" or \"from.side-output -> to\"",
                        e.get_ref()
                    ),
                ));
            };
            let (from, to) = (from.trim(), to.trim());
            let (from_uid, output) = match from.split_once('.') {
                Some((u, o)) => (u, Some(o.to_string())),
                None => (from, None),
            };
            if let Some(o) = &output
                && !is_valid_name(o)
            {
                return Err(self.err(
                    span,
                    "edges",
                    format!(
                        "side output `{o}` in edge `{}`: a side-output name is 1 to {MAX_NAME_BYTES} letters, digits, `_` or `-`",
                        e.get_ref()
                    ),
                ));
            }
            let lookup = |uid: &str| {
                index.get(uid).copied().ok_or_else(|| {
                    self.err(
                        span.clone(),
                        "edges",
                        format!(
                            "unknown operator `{uid}` in edge `{}`; known: {}",
                            e.get_ref(),
                            index.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    )
                })
            };
            let (f, t) = (lookup(from_uid)?, lookup(to)?);
            match (&nodes[f].kind, &nodes[t].kind) {
                (NodeKind::Sink(_), _) => {
                    return Err(self.err(
                        span,
                        "edges",
                        format!("`{from_uid}` is a sink and has no output"),
                    ));
                }
                (_, k) if k.is_source() => {
                    return Err(self.err(
                        span,
                        "edges",
                        format!("`{to}` is a source and takes no input"),
                    ));
                }
                (NodeKind::Source(SourceConfig::File(f)), _)
                    if output.is_some()
                        && f.timestamp.as_ref().and_then(|t| t.invalid.as_ref())
                            == output.as_ref() => {}
                (k, _) if k.is_source() && output.is_some() => {
                    return Err(self.err(
                        span,
                        "edges",
                        format!(
                            "`{from_uid}` is a source; its only side output is the one its `timestamp.invalid` names"
                        ),
                    ));
                }
                (NodeKind::Window(w), _)
                    if output.is_some() && w.late_output.as_ref() != output.as_ref() =>
                {
                    return Err(self.err(
                        span,
                        "edges",
                        format!(
                            "window `{from_uid}`'s only side output is the one its `late_output` names{}",
                            w.late_output.as_ref().map_or(" (it sets none)".into(), |o| format!(": `{o}`"))
                        ),
                    ));
                }
                _ => {}
            }
            let edge = Edge {
                from: f,
                output,
                to: t,
            };
            if edges.contains(&edge) {
                return Err(self.err(
                    span,
                    "edges",
                    format!("edge `{}` is listed twice", e.get_ref()),
                ));
            }
            edges.push(edge);
            edge_spans.push(span);
        }
        for (i, n) in nodes.iter().enumerate() {
            if !n.kind.is_source() && !edges.iter().any(|e| e.to == i) {
                return Err(self.err(
                    None,
                    "edges",
                    format!(
                        "`{}` has no input: add an edge \"<upstream> -> {}\"",
                        n.uid, n.uid
                    ),
                ));
            }
        }

        // Partitioning: Flink's default is forward between equal parallelism, else rebalance.
        for i in 0..nodes.len() {
            let inputs: Vec<usize> = edges.iter().filter(|e| e.to == i).map(|e| e.from).collect();
            if partition_spans[i].is_none() && matches!(nodes[i].kind, NodeKind::Window(_)) {
                // A window groups by key, as Flink's windows follow a keyBy.
                nodes[i].partition = Partition::Hash;
            } else if partition_spans[i].is_none() {
                let all_equal = inputs
                    .iter()
                    .all(|&u| nodes[u].parallelism == nodes[i].parallelism);
                nodes[i].partition = if all_equal {
                    Partition::Forward
                } else {
                    Partition::Rebalance
                };
            } else if nodes[i].partition == Partition::Forward
                && let Some(&u) = inputs
                    .iter()
                    .find(|&&u| nodes[u].parallelism != nodes[i].parallelism)
            {
                let section = match nodes[i].kind {
                    NodeKind::Sink(_) => "sinks",
                    NodeKind::Window(_) => "windows",
                    _ => "operators",
                };
                return Err(self.err(
                    partition_spans[i].clone(),
                    format!("{section}.{}.partition", nodes[i].uid),
                    format!(
                        "forward needs equal parallelism, but `{}` has {} and `{}` has {}; use rebalance or hash",
                        nodes[u].uid, nodes[u].parallelism, nodes[i].uid, nodes[i].parallelism
                    ),
                ));
            }
        }

        let (nodes, edges) = self.topological(nodes, edges, &edge_spans)?;
        Ok(JobGraph {
            name: job.name.clone().unwrap_or_else(|| {
                self.file
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "job".into())
            }),
            max_parallelism,
            chaining: job.chaining.unwrap_or(true),
            buffer_bytes,
            network_bytes: network_mib << 20,
            flush_interval: Duration::from_millis(flush_ms),
            limits,
            checkpoint,
            restart,
            nodes,
            edges,
        })
    }

    /// Orders nodes so that every node follows its inputs; refuses cycles.
    fn topological(
        &self,
        nodes: Vec<Node>,
        edges: Vec<Edge>,
        spans: &[Option<Range<usize>>],
    ) -> Result<(Vec<Node>, Vec<Edge>), ManifestError> {
        let n = nodes.len();
        let mut indegree = vec![0usize; n];
        for e in &edges {
            indegree[e.to] += 1;
        }
        let mut order = Vec::with_capacity(n);
        let mut ready: Vec<usize> = (0..n).filter(|&i| indegree[i] == 0).rev().collect();
        while let Some(i) = ready.pop() {
            order.push(i);
            for e in edges.iter().filter(|e| e.from == i) {
                indegree[e.to] -= 1;
                if indegree[e.to] == 0 {
                    ready.push(e.to);
                }
            }
        }
        if order.len() < n {
            let stuck: Vec<&str> = (0..n)
                .filter(|&i| indegree[i] > 0)
                .map(|i| nodes[i].uid.as_str())
                .collect();
            let at = edges
                .iter()
                .position(|e| indegree[e.to] > 0 && indegree[e.from] > 0)
                .and_then(|i| spans[i].clone());
            return Err(self.err(
                at,
                "edges",
                format!("the edges form a cycle through {}", stuck.join(", ")),
            ));
        }
        let mut new_index = vec![0; n];
        for (new, &old) in order.iter().enumerate() {
            new_index[old] = new;
        }
        let mut slots: Vec<Option<Node>> = nodes.into_iter().map(Some).collect();
        let nodes = order
            .iter()
            .map(|&old| slots[old].take().expect("each node is placed once"))
            .collect();
        let edges = edges
            .into_iter()
            .map(|e| Edge {
                from: new_index[e.from],
                to: new_index[e.to],
                output: e.output,
            })
            .collect();
        Ok((nodes, edges))
    }

    fn operator(&self, field: &str, op: &OperatorSpec) -> Result<OperatorNode, ManifestError> {
        self.component(field, &op.component, &op.config)
    }

    /// A component file (which must exist) and the config table passed to its `open`.
    fn component(
        &self,
        field: &str,
        component: &Spanned<String>,
        config: &toml::Table,
    ) -> Result<OperatorNode, ManifestError> {
        let span = component.span();
        let field_name = format!("{field}.component");
        let base = if self.overridden.contains(&field_name) {
            PathBuf::new()
        } else {
            self.base.clone()
        };
        let component = self
            .components
            .resolve(&base, component.get_ref())
            .map_err(|why| self.err(Some(span), field_name, why))?;
        let config_json = serde_json::to_string(config).map_err(|e| {
            self.err(
                None,
                format!("{field}.config"),
                format!("cannot be passed as JSON: {e}"),
            )
        })?;
        Ok(OperatorNode {
            component,
            config_json,
        })
    }

    fn partition(
        &self,
        field: &str,
        p: Option<&Spanned<String>>,
    ) -> Result<Option<Partition>, ManifestError> {
        let Some(p) = p else { return Ok(None) };
        Partition::parse(p.get_ref()).map(Some).ok_or_else(|| {
            self.err(
                Some(p.span()),
                format!("{field}.partition"),
                format!(
                    "unknown partitioning `{}`; use forward, hash, rebalance or broadcast",
                    p.get_ref()
                ),
            )
        })
    }

    /// Refuses fields that do not apply to a connector kind, so a misplaced setting is not ignored.
    fn only(
        &self,
        field: &str,
        kind: &str,
        what: &str,
        present: &[(&str, Option<Range<usize>>)],
    ) -> Result<(), ManifestError> {
        match present.iter().find(|(_, span)| span.is_some()) {
            Some((name, span)) => Err(self.err(
                span.clone(),
                format!("{field}.{name}"),
                format!("does not apply to a `{kind}` {what}"),
            )),
            None => Ok(()),
        }
    }

    fn source(
        &self,
        field: &str,
        s: &SourceSpec,
        timestamp: &time::TimestampSetting,
    ) -> Result<NodeKind, ManifestError> {
        let kind = s.kind.get_ref().as_str();
        if ["file", "datagen", "wasm"].contains(&kind)
            && let Some((name, _, span)) = s
                .kind_fields()
                .into_iter()
                .find(|(_, owner, _)| *owner != kind)
        {
            return Err(self.err(
                Some(span),
                format!("{field}.{name}"),
                format!("does not apply to a `{kind}` connector"),
            ));
        }
        if kind == "wasm" {
            let component = s.component.as_ref().ok_or_else(|| {
                self.err(
                    Some(s.kind.span()),
                    format!("{field}.component"),
                    "a wasm source needs `component`",
                )
            })?;
            let empty = toml::Table::new();
            let config = s.config.as_ref().map_or(&empty, Spanned::get_ref);
            return Ok(NodeKind::WasmSource(
                self.component(field, component, config)?,
            ));
        }
        Ok(NodeKind::Source(
            self.native_source(field, s, kind, timestamp)?,
        ))
    }

    fn native_source(
        &self,
        field: &str,
        s: &SourceSpec,
        kind: &str,
        timestamp: &time::TimestampSetting,
    ) -> Result<SourceConfig, ManifestError> {
        let span_s = |o: &Option<Spanned<String>>| o.as_ref().map(Spanned::span);
        match kind {
            "file" => {
                let path = s.path.as_ref().ok_or_else(|| {
                    self.err(
                        Some(s.kind.span()),
                        format!("{field}.path"),
                        "a file source needs `path`",
                    )
                })?;
                let resolved = self.path(&format!("{field}.path"), path.get_ref());
                if let Err(e) = open_input(&resolved) {
                    return Err(self.err(
                        Some(path.span()),
                        format!("{field}.path"),
                        format!("input file {e}"),
                    ));
                }
                let format = match s.format.as_ref().map(|f| f.get_ref().as_str()) {
                    None | Some("text") => LineFormat::Text,
                    Some("json") => LineFormat::Json,
                    Some(other) => {
                        return Err(self.err(
                            span_s(&s.format),
                            format!("{field}.format"),
                            format!("unknown format `{other}`; use text or json"),
                        ));
                    }
                };
                if s.key_field.is_some() && format != LineFormat::Json {
                    return Err(self.err(
                        span_s(&s.key_field),
                        format!("{field}.key_field"),
                        "key_field needs format = \"json\"",
                    ));
                }
                let timestamp = match timestamp {
                    time::TimestampSetting::Field(_) if format != LineFormat::Json => {
                        return Err(self.err(
                            s.timestamp.as_ref().map(Spanned::span),
                            format!("{field}.timestamp"),
                            "a timestamp field needs format = \"json\"",
                        ));
                    }
                    time::TimestampSetting::Field(f) => Some(f.clone()),
                    _ => None,
                };
                Ok(SourceConfig::File(FileSourceConfig {
                    path: resolved,
                    format,
                    key_field: s.key_field.as_ref().map(|k| k.get_ref().clone()),
                    timestamp,
                }))
            }
            "datagen" => {
                if let Some(r) = &s.rate
                    && !(r.get_ref().is_finite() && (1e-3..=1e9).contains(r.get_ref()))
                {
                    return Err(self.err(
                        Some(r.span()),
                        format!("{field}.rate"),
                        "rate must be between 0.001 and 1e9 records per second",
                    ));
                }
                let shape = match s.shape.as_ref().map(|f| f.get_ref().as_str()) {
                    None | Some("lines") => {
                        let words_per_line = self
                            .bounded(
                                &format!("{field}.words_per_line"),
                                s.words_per_line.as_ref(),
                                1..=u64::from(MAX_WORDS_PER_LINE),
                                "",
                            )?
                            .map_or(8, |w| w as u32);
                        let vocabulary = self
                            .bounded(
                                &format!("{field}.vocabulary"),
                                s.vocabulary.as_ref(),
                                1..=u64::MAX,
                                "",
                            )?
                            .unwrap_or(10_000);
                        DatagenShape::Lines {
                            words_per_line,
                            vocabulary,
                        }
                    }
                    Some("sequence") => DatagenShape::Sequence,
                    Some("clock") => DatagenShape::Clock,
                    Some(other) => {
                        return Err(self.err(
                            span_s(&s.shape),
                            format!("{field}.shape"),
                            format!("unknown shape `{other}`; use lines, sequence or clock"),
                        ));
                    }
                };
                Ok(SourceConfig::Datagen(DatagenConfig {
                    seed: s.seed.as_ref().map_or(0, |v| *v.get_ref()),
                    count: s.count.as_ref().map(|v| *v.get_ref()),
                    rate: s.rate.as_ref().map(|v| *v.get_ref()),
                    shape,
                }))
            }
            other => Err(self.err(
                Some(s.kind.span()),
                format!("{field}.kind"),
                format!("unknown source kind `{other}`; use file, datagen or wasm"),
            )),
        }
    }

    fn sink(&self, field: &str, s: &SinkSpec) -> Result<SinkConfig, ManifestError> {
        let delay = Duration::from_micros(
            self.bounded(
                &format!("{field}.delay_us"),
                s.delay_us.as_ref(),
                0..=MAX_DELAY_US,
                " us per record",
            )?
            .unwrap_or(0),
        );
        if let Some(t) = &s.trace
            && s.kind.get_ref() != "latency"
        {
            return Err(self.err(
                Some(t.span()),
                format!("{field}.trace"),
                "`trace` is a field of latency sinks",
            ));
        }
        match s.kind.get_ref().as_str() {
            "file" => {
                let path = s.path.as_ref().ok_or_else(|| {
                    self.err(
                        Some(s.kind.span()),
                        format!("{field}.path"),
                        "a file sink needs `path` (a directory)",
                    )
                })?;
                Ok(SinkConfig::File {
                    dir: self.path(&format!("{field}.path"), path.get_ref()),
                    delay,
                })
            }
            "stdout" => {
                self.only(
                    field,
                    "stdout",
                    "connector",
                    &[("path", s.path.as_ref().map(Spanned::span))],
                )?;
                Ok(SinkConfig::Stdout { delay })
            }
            "latency" => {
                let path = s.path.as_ref().ok_or_else(|| {
                    self.err(
                        Some(s.kind.span()),
                        format!("{field}.path"),
                        "a latency sink needs `path` (a directory for its figures)",
                    )
                })?;
                Ok(SinkConfig::Latency {
                    dir: self.path(&format!("{field}.path"), path.get_ref()),
                    trace: s.trace.as_ref().is_some_and(|t| *t.get_ref()),
                })
            }
            other => Err(self.err(
                Some(s.kind.span()),
                format!("{field}.kind"),
                format!("unknown sink kind `{other}`; use file, stdout or latency"),
            )),
        }
    }
}
