//! `weir inspect`: which weir worlds a component implements, and what it imports and exports.

use super::{Runtime, World};
use std::collections::BTreeSet;
use std::fmt::{self, Write};
use std::path::Path;
use wasmtime::component::types::{ComponentFunc, ComponentItem, Type};

/// What a component is, as `weir inspect` reports it.
pub struct Inspection {
    pub size: u64,
    /// The weir worlds the component implements, e.g. `weir:operator/operator@0.1.0`.
    pub worlds: Vec<String>,
    /// Why it implements none of them, when it does not.
    pub not_weir: Vec<String>,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    /// What its producers sections say it was written in and built with.
    pub producers: Producers,
}

/// The producers sections of a component and of every module and component inside it: the
/// languages it was written in, the tools that built it and the SDKs, each `name version`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Producers {
    pub languages: BTreeSet<String>,
    pub tools: BTreeSet<String>,
    pub sdks: BTreeSet<String>,
}

/// Reads the producers sections of `bytes` (a component or a module), nested ones included.
pub fn producers(bytes: &[u8]) -> Producers {
    let mut found = Producers::default();
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let Ok(wasmparser::Payload::CustomSection(section)) = payload else {
            continue;
        };
        let wasmparser::KnownCustom::Producers(fields) = section.as_known() else {
            continue;
        };
        for field in fields.into_iter().flatten() {
            let set = match field.name {
                "language" => &mut found.languages,
                "processed-by" => &mut found.tools,
                "sdk" => &mut found.sdks,
                _ => continue,
            };
            for value in field.values.into_iter().flatten() {
                set.insert(
                    format!("{} {}", value.name, value.version)
                        .trim()
                        .to_string(),
                );
            }
        }
    }
    found
}

/// A WIT-like spelling of a type, enough to tell a batch from a string at a glance.
fn type_name(ty: &Type) -> String {
    match ty {
        Type::Bool => "bool".into(),
        Type::S8 => "s8".into(),
        Type::U8 => "u8".into(),
        Type::S16 => "s16".into(),
        Type::U16 => "u16".into(),
        Type::S32 => "s32".into(),
        Type::U32 => "u32".into(),
        Type::S64 => "s64".into(),
        Type::U64 => "u64".into(),
        Type::Float32 => "f32".into(),
        Type::Float64 => "f64".into(),
        Type::Char => "char".into(),
        Type::String => "string".into(),
        Type::List(l) => format!("list<{}>", type_name(&l.ty())),
        Type::Tuple(t) => format!(
            "tuple<{}>",
            t.types()
                .map(|t| type_name(&t))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Type::Option(o) => format!("option<{}>", type_name(&o.ty())),
        Type::Result(r) => {
            let part = |t: Option<Type>| t.map_or("_".to_string(), |t| type_name(&t));
            format!("result<{}, {}>", part(r.ok()), part(r.err()))
        }
        Type::Record(_) => "record".into(),
        Type::Variant(_) => "variant".into(),
        Type::Enum(_) => "enum".into(),
        Type::Flags(_) => "flags".into(),
        Type::Own(_) | Type::Borrow(_) => "resource".into(),
        other => format!("{other:?}")
            .split('(')
            .next()
            .unwrap_or("?")
            .to_lowercase(),
    }
}

fn func_sig(f: &ComponentFunc) -> String {
    let params: Vec<String> = f
        .params()
        .map(|(name, ty)| format!("{name}: {}", type_name(&ty)))
        .collect();
    let results: Vec<String> = f.results().map(|ty| type_name(&ty)).collect();
    let mut s = format!("func({})", params.join(", "));
    if !results.is_empty() {
        let _ = write!(s, " -> {}", results.join(", "));
    }
    s
}

fn describe(engine: &wasmtime::Engine, name: &str, item: &ComponentItem, out: &mut Vec<String>) {
    match item {
        ComponentItem::ComponentFunc(f) => out.push(format!("{name}: {}", func_sig(f))),
        ComponentItem::ComponentInstance(i) => {
            out.push(format!("{name} (interface)"));
            for (fname, fitem) in i.exports(engine) {
                if let ComponentItem::ComponentFunc(f) = fitem.ty {
                    out.push(format!("    {fname}: {}", func_sig(&f)));
                }
            }
        }
        ComponentItem::CoreFunc(_) => out.push(format!("{name}: core func")),
        ComponentItem::Module(_) => out.push(format!("{name}: core module")),
        ComponentItem::Component(_) => out.push(format!("{name}: component")),
        ComponentItem::Type(_) => out.push(format!("{name}: type")),
        ComponentItem::Resource(_) => out.push(format!("{name}: resource")),
    }
}

/// Reads the component at `path` (of at most `max_bytes`) and reports on it.
pub fn inspect(
    runtime: &Runtime,
    path: &Path,
    max_bytes: u64,
) -> Result<Inspection, super::LoadError> {
    let bytes = super::read_component(path, max_bytes, "--max-mib")?;
    let component = runtime.compile(path, &bytes)?;
    let engine = runtime.engine();
    let ty = component.component_type();
    let mut imports = Vec::new();
    for (name, item) in ty.imports(engine) {
        describe(engine, name, &item.ty, &mut imports);
    }
    let mut exports = Vec::new();
    for (name, item) in ty.exports(engine) {
        describe(engine, name, &item.ty, &mut exports);
    }
    let mut worlds = Vec::new();
    let mut not_weir = Vec::new();
    for world in World::ALL {
        match runtime.prepare(path, &component, world) {
            Ok(_) => worlds.push(world.name().to_string()),
            Err(e) => not_weir.push(e.to_string()),
        }
    }
    Ok(Inspection {
        size: bytes.len() as u64,
        not_weir: if worlds.is_empty() {
            not_weir
        } else {
            Vec::new()
        },
        worlds,
        imports,
        exports,
        producers: producers(&bytes),
    })
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "size: {} bytes", self.size)?;
        if self.worlds.is_empty() {
            writeln!(f, "weir worlds: none")?;
        } else {
            writeln!(f, "weir worlds: {}", self.worlds.join(", "))?;
        }
        for why in &self.not_weir {
            writeln!(f, "  {why}")?;
        }
        let list = |set: &BTreeSet<String>| {
            if set.is_empty() {
                "not recorded".to_string()
            } else {
                set.iter().cloned().collect::<Vec<_>>().join(", ")
            }
        };
        writeln!(f, "languages: {}", list(&self.producers.languages))?;
        writeln!(f, "built with: {}", list(&self.producers.tools))?;
        if !self.producers.sdks.is_empty() {
            writeln!(f, "sdks: {}", list(&self.producers.sdks))?;
        }
        writeln!(f, "imports:")?;
        for i in &self.imports {
            writeln!(f, "  {i}")?;
        }
        writeln!(f, "exports:")?;
        for e in &self.exports {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}
