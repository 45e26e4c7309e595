//! The event-time parts of a manifest: a source's `timestamp` and `watermarks`, and the
//! `[windows.X]` tables.

use super::spec::{AssignerSpec, SourceSpec, WatermarkSpec, WindowSpec};
use super::{Checker, ManifestError};
use crate::connectors::TimestampField;
use crate::plan::{
    MAX_NAME_BYTES, SourceTime, TimeKind, Timestamps, WatermarkSettings, WindowAssigner,
    WindowFunctionKind, WindowNode, WindowTrigger, is_valid_name,
};
use std::time::Duration;
use toml::Spanned;

/// The longest duration a window, a lateness or a watermark delay may have: about 290 years,
/// so that sums of timestamps and durations stay far from overflowing.
const MAX_SPAN: Duration = Duration::from_secs(1 << 33);

/// How a source's record timestamps are set, as its manifest table says.
pub(super) enum TimestampSetting {
    /// Not set.
    None,
    Record,
    Ingestion,
    /// A JSON field (file sources).
    Field(TimestampField),
}

impl Checker<'_> {
    /// A source's `timestamp` field.
    pub(super) fn timestamp(
        &self,
        field: &str,
        s: &SourceSpec,
    ) -> Result<TimestampSetting, ManifestError> {
        let Some(t) = &s.timestamp else {
            return Ok(TimestampSetting::None);
        };
        let field = format!("{field}.timestamp");
        let err = |message: String| self.err(Some(t.span()), &field, message);
        match t.get_ref() {
            toml::Value::String(s) if s == "record" => Ok(TimestampSetting::Record),
            toml::Value::String(s) if s == "ingestion" => Ok(TimestampSetting::Ingestion),
            toml::Value::Table(table) => {
                let mut name = None;
                let mut invalid = None;
                for (k, v) in table {
                    match (k.as_str(), v) {
                        ("field", toml::Value::String(f)) if !f.is_empty() => name = Some(f),
                        ("invalid", toml::Value::String(i)) if i == "fail" => {}
                        ("invalid", toml::Value::String(i)) if is_valid_name(i) => {
                            invalid = Some(i.clone())
                        }
                        ("invalid", _) => {
                            return Err(err(format!(
                                "`invalid` is \"fail\" or the name of a side output (1 to {MAX_NAME_BYTES} letters, digits, `_` or `-`)"
                            )));
                        }
                        (other, _) => {
                            return Err(err(format!(
                                "`{other}` is not a field of a timestamp: use field and invalid"
                            )));
                        }
                    }
                }
                let field = name.ok_or_else(|| {
                    err("a timestamp table needs `field`, the JSON field holding it (ms)".into())
                })?;
                Ok(TimestampSetting::Field(TimestampField {
                    field: field.clone(),
                    invalid,
                }))
            }
            _ => Err(err(
                "use \"record\" (the source component sets them), \"ingestion\" or { field = \"...\" } (JSON lines)".into(),
            )),
        }
    }

    /// A source's event time from its `timestamp` (already read) and `watermarks`; `kind` is
    /// the connector kind.
    pub(super) fn source_time(
        &self,
        field: &str,
        s: &SourceSpec,
        kind: &str,
        timestamp: &TimestampSetting,
    ) -> Result<Option<SourceTime>, ManifestError> {
        let t_span = s.timestamp.as_ref().map(Spanned::span);
        let timestamps = match (timestamp, kind) {
            (TimestampSetting::None, "wasm") if s.watermarks.is_some() => Some(Timestamps::Record),
            (TimestampSetting::None, _) => None,
            (TimestampSetting::Record, "wasm") => Some(Timestamps::Record),
            (TimestampSetting::Record, _) => {
                return Err(self.err(
                    t_span,
                    format!("{field}.timestamp"),
                    format!(
                        "a `{kind}` source's records carry no timestamps: use \"ingestion\"{}",
                        if kind == "file" {
                            " or { field = \"...\" } with format = \"json\""
                        } else {
                            ""
                        }
                    ),
                ));
            }
            (TimestampSetting::Ingestion, _) => Some(Timestamps::Ingestion),
            (TimestampSetting::Field(_), "file") => Some(Timestamps::Record),
            (TimestampSetting::Field(_), _) => {
                return Err(self.err(
                    t_span,
                    format!("{field}.timestamp"),
                    "a timestamp field is read from JSON lines, by a `file` source with format = \"json\"",
                ));
            }
        };
        let watermarks = s
            .watermarks
            .as_ref()
            .map(|w| self.watermarks(&format!("{field}.watermarks"), w.get_ref()))
            .transpose()?;
        match (timestamps, watermarks) {
            (None, None) => Ok(None),
            (None, Some(_)) => Err(self.err(
                s.watermarks.as_ref().map(Spanned::span),
                format!("{field}.watermarks"),
                "watermarks follow timestamps: set `timestamp` too (\"ingestion\", or a JSON field)",
            )),
            (Some(timestamps), watermarks) => Ok(Some(SourceTime {
                timestamps,
                watermarks,
            })),
        }
    }

    fn watermarks(
        &self,
        field: &str,
        w: &WatermarkSpec,
    ) -> Result<WatermarkSettings, ManifestError> {
        let max_delay = match w.strategy.get_ref().as_str() {
            "bounded_out_of_orderness" => {
                let d = w.max_delay.as_ref().ok_or_else(|| {
                    self.err(
                        Some(w.strategy.span()),
                        format!("{field}.max_delay"),
                        "bounded_out_of_orderness needs `max_delay`, how late a record may come (e.g. \"2s\")",
                    )
                })?;
                self.duration(
                    &format!("{field}.max_delay"),
                    Some(d),
                    Duration::ZERO..=MAX_SPAN,
                    Duration::ZERO,
                )?
            }
            "monotonous" => {
                if let Some(d) = &w.max_delay {
                    return Err(self.err(
                        Some(d.span()),
                        format!("{field}.max_delay"),
                        "monotonous timestamps have no delay; use bounded_out_of_orderness",
                    ));
                }
                Duration::ZERO
            }
            other => {
                return Err(self.err(
                    Some(w.strategy.span()),
                    format!("{field}.strategy"),
                    format!(
                        "unknown strategy `{other}`; use bounded_out_of_orderness or monotonous"
                    ),
                ));
            }
        };
        let interval = self.duration(
            &format!("{field}.interval"),
            w.interval.as_ref(),
            Duration::ZERO..=Duration::from_secs(3600),
            Duration::from_millis(200),
        )?;
        let idle_timeout = w
            .idle_timeout
            .as_ref()
            .map(|t| {
                self.duration(
                    &format!("{field}.idle_timeout"),
                    Some(t),
                    Duration::from_millis(1)..=MAX_SPAN,
                    Duration::ZERO,
                )
            })
            .transpose()?;
        Ok(WatermarkSettings {
            max_delay_ms: max_delay.as_millis() as i64,
            interval,
            idle_timeout,
        })
    }

    /// A `[windows.X]` table.
    pub(super) fn window(&self, field: &str, w: &WindowSpec) -> Result<WindowNode, ManifestError> {
        let time = self.choice(
            &format!("{field}.time"),
            w.time.as_ref(),
            &[
                ("event", TimeKind::Event),
                ("processing", TimeKind::Processing),
            ],
            TimeKind::Event,
        )?;
        let lateness = self.duration(
            &format!("{field}.allowed_lateness"),
            w.allowed_lateness.as_ref(),
            Duration::ZERO..=MAX_SPAN,
            Duration::ZERO,
        )?;
        if time == TimeKind::Processing
            && let Some(l) = &w.allowed_lateness
        {
            return Err(self.err(
                Some(l.span()),
                format!("{field}.allowed_lateness"),
                "processing-time windows have no late records: allowed_lateness applies to time = \"event\"",
            ));
        }
        let assigner = self.assigner(&format!("{field}.assigner"), w.assigner.get_ref())?;
        let trigger = self.trigger(&format!("{field}.trigger"), w.trigger.as_ref(), time)?;
        let not_for_count = |what: &str, span: Option<std::ops::Range<usize>>| {
            Err(self.err(
                span,
                format!("{field}.{what}"),
                format!("count windows fire every `slide` records and have no {what}: it applies to time windows"),
            ))
        };
        match (assigner, trigger) {
            (WindowAssigner::Count { .. }, t) if t != WindowTrigger::Default => {
                return not_for_count("trigger", w.trigger.as_ref().map(Spanned::span));
            }
            (WindowAssigner::Count { .. }, _) if w.allowed_lateness.is_some() => {
                return not_for_count(
                    "allowed_lateness",
                    w.allowed_lateness.as_ref().map(Spanned::span),
                );
            }
            (WindowAssigner::Global, WindowTrigger::Default) => {
                return Err(self.err(
                    Some(w.assigner.span()),
                    format!("{field}.trigger"),
                    "a global window never ends, so it never fires by time: give it trigger = { kind = \"count\", count = N }",
                ));
            }
            _ => {}
        }
        let late_output = match &w.late_output {
            Some(o) if !is_valid_name(o.get_ref()) => {
                return Err(self.err(
                    Some(o.span()),
                    format!("{field}.late_output"),
                    format!(
                        "a side-output name is 1 to {MAX_NAME_BYTES} letters, digits, `_` or `-`"
                    ),
                ));
            }
            o => o.as_ref().map(|o| o.get_ref().clone()),
        };
        let f = w.function.get_ref();
        let kind = self.choice(
            &format!("{field}.function.kind"),
            Some(&f.kind),
            &[
                ("aggregate", WindowFunctionKind::Aggregate),
                ("reduce", WindowFunctionKind::Reduce),
                ("process", WindowFunctionKind::Process),
            ],
            WindowFunctionKind::Aggregate,
        )?;
        let function = self.component(&format!("{field}.function"), &f.component, &f.config)?;
        Ok(WindowNode {
            assigner,
            time,
            allowed_lateness: lateness.as_millis() as i64,
            late_output,
            kind,
            function,
            trigger,
        })
    }

    /// A window's `trigger`: `"default"` (or the name of the window's time, `"event-time"` or
    /// `"processing-time"`), `{ kind = "count", count = N }` or
    /// `{ kind = "continuous", interval = "5s" }`.
    fn trigger(
        &self,
        field: &str,
        t: Option<&Spanned<toml::Value>>,
        time: TimeKind,
    ) -> Result<WindowTrigger, ManifestError> {
        const KINDS: &str = "use \"default\", { kind = \"count\", count = N } or { kind = \"continuous\", interval = \"5s\" }";
        let Some(t) = t else {
            return Ok(WindowTrigger::Default);
        };
        let err = |m: &str| self.err(Some(t.span()), field, m);
        let table = match t.get_ref() {
            toml::Value::String(s) => {
                return match (s.as_str(), time) {
                    ("default", _)
                    | ("event-time", TimeKind::Event)
                    | ("processing-time", TimeKind::Processing) => Ok(WindowTrigger::Default),
                    ("event-time" | "processing-time", _) => Err(err(&format!(
                        "a `{s}` trigger fires by the other clock than this window's: set `time` to match (a window's default trigger follows its time)"
                    ))),
                    (other, _) => Err(err(&format!("unknown trigger `{other}`; {KINDS}"))),
                };
            }
            toml::Value::Table(table) => table,
            _ => return Err(err(KINDS)),
        };
        let kind = table.get("kind").and_then(toml::Value::as_str);
        let fields: &[&str] = match kind {
            Some("count") => &["kind", "count"],
            Some("continuous") => &["kind", "interval"],
            Some(other) => return Err(err(&format!("unknown trigger `{other}`; {KINDS}"))),
            None => return Err(err("a trigger table needs `kind`")),
        };
        if let Some(k) = table.keys().find(|k| !fields.contains(&k.as_str())) {
            return Err(err(&format!("`{k}` is not a field of this trigger")));
        }
        if kind == Some("count") {
            return match table.get("count").and_then(toml::Value::as_integer) {
                Some(n) if n >= 1 => Ok(WindowTrigger::Count(n as u64)),
                _ => Err(err(
                    "a count trigger needs `count`, a number of records of at least 1",
                )),
            };
        }
        let interval = (table.get("interval").and_then(toml::Value::as_str)).ok_or_else(|| {
            err("a continuous trigger needs `interval`, a duration such as \"5s\"")
        })?;
        Ok(WindowTrigger::Continuous(self.text_span_ms(
            &format!("{field}.interval"),
            t.span(),
            interval,
        )?))
    }

    /// A record count of a count window: a positive integer.
    fn count_of(&self, field: &str, v: &Spanned<toml::Value>) -> Result<u64, ManifestError> {
        match v.get_ref() {
            toml::Value::Integer(n) if *n >= 1 => Ok(*n as u64),
            _ => Err(self.err(
                Some(v.span()),
                field,
                "a count window's size and slide are numbers of records, at least 1",
            )),
        }
    }

    /// A duration that is a window's size, slide or gap: at least a millisecond.
    fn span_ms(&self, field: &str, v: &Spanned<toml::Value>) -> Result<i64, ManifestError> {
        match v.get_ref() {
            toml::Value::String(text) => self.text_span_ms(field, v.span(), text),
            _ => Err(self.err(
                Some(v.span()),
                field,
                "a duration such as \"10s\" (record counts are for kind = \"count\")",
            )),
        }
    }

    fn text_span_ms(
        &self,
        field: &str,
        span: std::ops::Range<usize>,
        text: &str,
    ) -> Result<i64, ManifestError> {
        let d = crate::checkpoint::parse_duration(text)
            .map_err(|e| self.err(Some(span.clone()), field, e))?;
        if d < Duration::from_millis(1) {
            return Err(self.err(
                Some(span),
                field,
                format!("`{text}` is too short: a window's size, slide or gap is at least 1ms"),
            ));
        }
        if d > MAX_SPAN {
            return Err(self.err(Some(span), field, format!("`{text}` is too long")));
        }
        Ok(d.as_millis() as i64)
    }

    /// A field the assigner's kind needs.
    fn need<'v>(
        &self,
        field: &str,
        a: &AssignerSpec,
        v: &'v Option<Spanned<toml::Value>>,
        name: &str,
    ) -> Result<&'v Spanned<toml::Value>, ManifestError> {
        v.as_ref().ok_or_else(|| {
            self.err(
                Some(a.kind.span()),
                format!("{field}.{name}"),
                format!("a {} window needs `{name}`", a.kind.get_ref()),
            )
        })
    }

    fn assigner(&self, field: &str, a: &AssignerSpec) -> Result<WindowAssigner, ManifestError> {
        let kind = a.kind.get_ref().as_str();
        let refuse = |present: &[(&str, Option<std::ops::Range<usize>>)]| {
            self.only(field, kind, "window", present)
        };
        let offset = |size: i64| -> Result<i64, ManifestError> {
            let Some(o) = &a.offset else { return Ok(0) };
            let text = o.get_ref().trim();
            let (negative, text) = match text.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, text),
            };
            let d = crate::checkpoint::parse_duration(text)
                .map_err(|e| self.err(Some(o.span()), format!("{field}.offset"), e))?;
            let ms = d.as_millis().min(i64::MAX as u128) as i64;
            if ms >= size {
                return Err(self.err(
                    Some(o.span()),
                    format!("{field}.offset"),
                    "the offset must be smaller than the slide (or the size of a tumbling window)",
                ));
            }
            Ok(if negative { -ms } else { ms })
        };
        match kind {
            "tumbling" => {
                refuse(&[
                    ("slide", a.slide.as_ref().map(Spanned::span)),
                    ("gap", a.gap.as_ref().map(Spanned::span)),
                ])?;
                let size = self.span_ms(
                    &format!("{field}.size"),
                    self.need(field, a, &a.size, "size")?,
                )?;
                Ok(WindowAssigner::Tumbling {
                    size,
                    offset: offset(size)?,
                })
            }
            "sliding" => {
                refuse(&[("gap", a.gap.as_ref().map(Spanned::span))])?;
                let size = self.span_ms(
                    &format!("{field}.size"),
                    self.need(field, a, &a.size, "size")?,
                )?;
                let slide_v = self.need(field, a, &a.slide, "slide")?;
                let slide = self.span_ms(&format!("{field}.slide"), slide_v)?;
                if slide > size {
                    return Err(self.err(
                        Some(slide_v.span()),
                        format!("{field}.slide"),
                        "the slide is larger than the size: records between windows would belong to none",
                    ));
                }
                Ok(WindowAssigner::Sliding {
                    size,
                    slide,
                    offset: offset(slide)?,
                })
            }
            "session" => {
                refuse(&[
                    ("size", a.size.as_ref().map(Spanned::span)),
                    ("slide", a.slide.as_ref().map(Spanned::span)),
                    ("offset", a.offset.as_ref().map(Spanned::span)),
                ])?;
                let gap = a.gap.as_ref().ok_or_else(|| {
                    self.err(
                        Some(a.kind.span()),
                        format!("{field}.gap"),
                        "a session window needs `gap`, the inactivity that ends a session",
                    )
                })?;
                let gap = self.text_span_ms(&format!("{field}.gap"), gap.span(), gap.get_ref())?;
                Ok(WindowAssigner::Session { gap })
            }
            "count" => {
                refuse(&[
                    ("offset", a.offset.as_ref().map(Spanned::span)),
                    ("gap", a.gap.as_ref().map(Spanned::span)),
                ])?;
                let size = self.count_of(
                    &format!("{field}.size"),
                    self.need(field, a, &a.size, "size")?,
                )?;
                let slide = match &a.slide {
                    Some(s) => self.count_of(&format!("{field}.slide"), s)?,
                    None => size,
                };
                if slide > size {
                    return Err(self.err(
                        a.slide.as_ref().map(Spanned::span),
                        format!("{field}.slide"),
                        "the slide is larger than the size: records between windows would belong to none",
                    ));
                }
                Ok(WindowAssigner::Count { size, slide })
            }
            "global" => {
                refuse(&[
                    ("size", a.size.as_ref().map(Spanned::span)),
                    ("slide", a.slide.as_ref().map(Spanned::span)),
                    ("offset", a.offset.as_ref().map(Spanned::span)),
                    ("gap", a.gap.as_ref().map(Spanned::span)),
                ])?;
                Ok(WindowAssigner::Global)
            }
            other => Err(self.err(
                Some(a.kind.span()),
                format!("{field}.kind"),
                format!(
                    "unknown assigner `{other}`; use tumbling, sliding, session, count or global"
                ),
            )),
        }
    }
}

/// What is legal in a job but probably not meant, for `validate` and `run` to print: a late
/// output or an invalid-timestamp output that no edge takes (those records are dropped), an
/// event-time window with no watermarks upstream (it fires only at the end of input).
pub fn warnings(job: &crate::plan::JobGraph) -> Vec<String> {
    use crate::connectors::SourceConfig;
    use crate::plan::NodeKind;
    let taken = |node: usize, output: &str| {
        job.edges
            .iter()
            .any(|e| e.from == node && e.output.as_deref() == Some(output))
    };
    let mut out = Vec::new();
    for (i, n) in job.nodes.iter().enumerate() {
        match &n.kind {
            NodeKind::Window(w) => {
                if let Some(late) = &w.late_output
                    && !taken(i, late)
                {
                    out.push(format!(
                        "windows.{uid}.late_output: no edge takes `{uid}.{late}`, so late records are dropped; add an edge \"{uid}.{late} -> <sink>\"",
                        uid = n.uid
                    ));
                }
                if w.time == TimeKind::Event && !has_watermarks_upstream(job, i) {
                    out.push(format!(
                        "windows.{}: no source upstream of it has `watermarks`, so its windows fire only at the end of input",
                        n.uid
                    ));
                }
            }
            NodeKind::Source(SourceConfig::File(f)) => {
                if let Some(invalid) = f.timestamp.as_ref().and_then(|t| t.invalid.as_ref())
                    && !taken(i, invalid)
                {
                    out.push(format!(
                        "sources.{uid}.timestamp.invalid: no edge takes `{uid}.{invalid}`, so lines without a timestamp are dropped",
                        uid = n.uid
                    ));
                }
            }
            _ => {}
        }
    }
    out
}

/// Whether some source upstream of node `i` generates watermarks.
fn has_watermarks_upstream(job: &crate::plan::JobGraph, i: usize) -> bool {
    let mut seen = vec![false; job.nodes.len()];
    let mut todo = vec![i];
    while let Some(n) = todo.pop() {
        if std::mem::replace(&mut seen[n], true) {
            continue;
        }
        if job.nodes[n]
            .time
            .as_ref()
            .is_some_and(|t| t.watermarks.is_some())
        {
            return true;
        }
        todo.extend(job.edges.iter().filter(|e| e.to == n).map(|e| e.from));
    }
    false
}
