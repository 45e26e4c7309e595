//! The manifest's TOML shape, as serde reads it. Fields that errors point at are `Spanned`, so a
//! message can give the line and column; unknown fields are refused so a typo is an error, not a
//! silently ignored setting.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::ops::Range;
use toml::Spanned;

/// The whole manifest file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// `"from -> to"` or `"from.side-output -> to"` strings.
    #[serde(default)]
    pub edges: Vec<Spanned<String>>,
    #[serde(default)]
    pub job: JobSpec,
    #[serde(default)]
    pub limits: LimitsSpec,
    pub checkpoint: Option<Spanned<CheckpointSpec>>,
    pub restart: Option<Spanned<RestartSpec>>,
    #[serde(default)]
    pub sources: BTreeMap<String, Spanned<SourceSpec>>,
    #[serde(default)]
    pub operators: BTreeMap<String, Spanned<OperatorSpec>>,
    #[serde(default)]
    pub windows: BTreeMap<String, Spanned<WindowSpec>>,
    #[serde(default)]
    pub sinks: BTreeMap<String, Spanned<SinkSpec>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    pub name: Option<String>,
    pub max_parallelism: Option<Spanned<u32>>,
    pub parallelism: Option<Spanned<u32>>,
    pub chaining: Option<bool>,
    pub buffer_bytes: Option<Spanned<u64>>,
    pub network_mib: Option<Spanned<u64>>,
    pub flush_ms: Option<Spanned<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    pub memory_mib: Option<Spanned<u64>>,
    pub call_timeout_ms: Option<Spanned<u64>>,
    pub state_mib: Option<Spanned<u64>>,
    pub log_lines_per_s: Option<Spanned<u64>>,
    pub component_mib: Option<Spanned<u64>>,
}

/// `[checkpoint]`: durations are strings such as `"1s"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSpec {
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub min_pause: Option<Spanned<String>>,
    pub max_concurrent: Option<Spanned<u64>>,
    pub mode: Option<Spanned<String>>,
    pub retain: Option<Spanned<u64>>,
    pub retain_on_cancel: Option<bool>,
    pub incremental: Option<bool>,
    pub backend: Option<Spanned<String>>,
    pub dir: Option<Spanned<String>>,
}

/// `[restart]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartSpec {
    pub strategy: Spanned<String>,
    pub attempts: Option<Spanned<u64>>,
    pub delay: Option<Spanned<String>>,
    pub initial: Option<Spanned<String>>,
    pub max: Option<Spanned<String>>,
    pub multiplier: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    pub kind: Spanned<String>,
    pub parallelism: Option<Spanned<u32>>,
    // file
    pub path: Option<Spanned<String>>,
    pub format: Option<Spanned<String>>,
    pub key_field: Option<Spanned<String>>,
    // datagen
    pub seed: Option<Spanned<u64>>,
    pub count: Option<Spanned<u64>>,
    pub rate: Option<Spanned<f64>>,
    pub shape: Option<Spanned<String>>,
    pub words_per_line: Option<Spanned<u64>>,
    pub vocabulary: Option<Spanned<u64>>,
    // wasm
    pub component: Option<Spanned<String>>,
    pub config: Option<Spanned<toml::Table>>,
    // event time
    /// `"record"`, `"ingestion"` or `{ field = "ts", invalid = "fail" | "<side output>" }`.
    pub timestamp: Option<Spanned<toml::Value>>,
    pub watermarks: Option<Spanned<WatermarkSpec>>,
}

/// A source's `watermarks` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatermarkSpec {
    pub strategy: Spanned<String>,
    pub max_delay: Option<Spanned<String>>,
    pub idle_timeout: Option<Spanned<String>>,
    pub interval: Option<Spanned<String>>,
}

/// `[windows.X]`: the host's window operator.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    pub assigner: Spanned<AssignerSpec>,
    pub time: Option<Spanned<String>>,
    pub allowed_lateness: Option<Spanned<String>>,
    pub late_output: Option<Spanned<String>>,
    pub function: Spanned<FunctionSpec>,
    /// `"default"` or `{ kind = "count", count = N }`.
    pub trigger: Option<Spanned<toml::Value>>,
    pub parallelism: Option<Spanned<u32>>,
    pub partition: Option<Spanned<String>>,
}

/// A window's `assigner`: sizes are durations, or record counts for `count`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignerSpec {
    pub kind: Spanned<String>,
    pub size: Option<Spanned<toml::Value>>,
    pub slide: Option<Spanned<toml::Value>>,
    pub offset: Option<Spanned<String>>,
    pub gap: Option<Spanned<String>>,
}

/// A window's `function`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionSpec {
    pub kind: Spanned<String>,
    pub component: Spanned<String>,
    #[serde(default)]
    pub config: toml::Table,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorSpec {
    pub component: Spanned<String>,
    pub parallelism: Option<Spanned<u32>>,
    pub partition: Option<Spanned<String>>,
    #[serde(default)]
    pub config: toml::Table,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkSpec {
    pub kind: Spanned<String>,
    pub parallelism: Option<Spanned<u32>>,
    pub partition: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
    /// Test hook and demo of backpressure: sleep this long per record written.
    pub delay_us: Option<Spanned<u64>>,
    /// A latency sink also writes each record's making and arrival times (for benchmarks).
    pub trace: Option<Spanned<bool>>,
}

impl SourceSpec {
    /// Each connector-specific field that is set: its name, the source kind it belongs to, and
    /// where it is.
    pub fn kind_fields(&self) -> Vec<(&'static str, &'static str, Range<usize>)> {
        fn at<T>(v: &Option<Spanned<T>>) -> Option<Range<usize>> {
            v.as_ref().map(Spanned::span)
        }
        [
            ("path", "file", at(&self.path)),
            ("format", "file", at(&self.format)),
            ("key_field", "file", at(&self.key_field)),
            ("seed", "datagen", at(&self.seed)),
            ("count", "datagen", at(&self.count)),
            ("rate", "datagen", at(&self.rate)),
            ("shape", "datagen", at(&self.shape)),
            ("words_per_line", "datagen", at(&self.words_per_line)),
            ("vocabulary", "datagen", at(&self.vocabulary)),
            ("component", "wasm", at(&self.component)),
            ("config", "wasm", at(&self.config)),
        ]
        .into_iter()
        .filter_map(|(name, kind, span)| Some((name, kind, span?)))
        .collect()
    }
}
