//! Prints palisade's public API, one item per line, sorted, from the JSON rustdoc writes with
//! `RUSTC_BOOTSTRAP=1 cargo rustdoc -p palisade --all-features -- -Z unstable-options
//! --output-format json`. `.ci/run` compares the output with `tests/api/public-api.txt`, so an
//! addition or a removal is a visible diff in review.
//!
//! Usage: `cargo run -p palisade-api -- <path to palisade.json>`.
//!
//! What is listed: every item a user can name, by every path that reaches it (re-exports as
//! `pub use` lines pointing at the defining path), with its generics, the signatures of its
//! public inherent methods, its public fields and variants, the traits it implements by hand
//! (derives included; auto traits and blanket impls left out, they are noise here), and for a
//! trait its methods. Types are printed as rustdoc records them, without their paths.
//! The first line counts the public types and traits.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: palisade-api <palisade.json>");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let doc: Value = serde_json::from_str(&text).expect("rustdoc JSON");
    let api = Api::new(&doc);
    let mut lines = BTreeSet::new();
    let mut kinds: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let root = api.id_of(&doc["root"]);
    let mut reached: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    api.walk(
        &root,
        "palisade",
        &mut lines,
        &mut reached,
        &mut BTreeSet::new(),
    );
    for (id, paths) in &reached {
        let item = api.item(id).expect("reached items are in the index");
        let kind = kind_of(item);
        // The defining path when users can name it, else the shortest path that reaches it
        // outside the prelude (which only gathers what is defined elsewhere).
        let home = match api.canonical.get(id) {
            Some(defining) if paths.contains(defining) => defining.clone(),
            _ => paths
                .iter()
                .min_by_key(|p| (p.contains("::prelude::"), p.len(), (*p).clone()))
                .expect("at least one path")
                .clone(),
        };
        kinds.entry(kind).or_default().insert(home.clone());
        for path in paths.iter().filter(|p| **p != home) {
            lines.insert(format!("pub use {path} = {home}"));
        }
        api.describe(item, kind, &home, &mut lines);
    }
    let count = |k: &str| kinds.get(k).map_or(0, BTreeSet::len);
    println!(
        "# {} public types and traits: {} structs, {} enums, {} traits, {} type aliases; {} functions, {} constants",
        count("struct") + count("enum") + count("trait") + count("type_alias") + count("union"),
        count("struct"),
        count("enum"),
        count("trait"),
        count("type_alias"),
        count("function"),
        count("constant"),
    );
    for line in lines {
        println!("{line}");
    }
}

struct Api<'a> {
    index: &'a serde_json::Map<String, Value>,
    /// The defining path of each local item, as rustdoc's `paths` table has it.
    canonical: BTreeMap<String, String>,
}

impl<'a> Api<'a> {
    fn new(doc: &'a Value) -> Self {
        let index = doc["index"].as_object().expect("index");
        let mut canonical = BTreeMap::new();
        for (id, summary) in doc["paths"].as_object().expect("paths") {
            if summary["crate_id"] == 0 {
                let segments: Vec<&str> = summary["path"]
                    .as_array()
                    .expect("path")
                    .iter()
                    .filter_map(Value::as_str)
                    .collect();
                canonical.insert(id.clone(), segments.join("::"));
            }
        }
        Api { index, canonical }
    }

    fn id_of(&self, id: &Value) -> String {
        match id {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.clone(),
            other => panic!("unexpected id {other}"),
        }
    }

    fn item(&self, id: &str) -> Option<&'a Value> {
        self.index.get(id)
    }

    fn walk(
        &self,
        id: &str,
        path: &str,
        lines: &mut BTreeSet<String>,
        reached: &mut BTreeMap<String, BTreeSet<String>>,
        seen_modules: &mut BTreeSet<String>,
    ) {
        let Some(item) = self.item(id) else { return };
        let module = &item["inner"]["module"];
        if !seen_modules.insert(format!("{id}@{path}")) {
            return;
        }
        for child in module["items"].as_array().into_iter().flatten() {
            let child_id = self.id_of(child);
            let Some(child_item) = self.item(&child_id) else {
                continue;
            };
            if let Some(use_) = child_item["inner"].get("use") {
                let name = use_["name"].as_str().unwrap_or("_");
                let target = use_
                    .get("id")
                    .filter(|v| !v.is_null())
                    .map(|v| self.id_of(v));
                let glob = use_["is_glob"].as_bool().unwrap_or(false);
                match target.as_deref().and_then(|t| self.item(t).map(|i| (t, i))) {
                    Some((t, target_item)) if glob => {
                        if target_item["inner"].get("module").is_some() {
                            self.walk(t, path, lines, reached, seen_modules);
                        }
                    }
                    Some((t, target_item)) => self.visit(
                        t,
                        target_item,
                        &format!("{path}::{name}"),
                        lines,
                        reached,
                        seen_modules,
                    ),
                    None => {
                        let source = use_["source"].as_str().unwrap_or("?");
                        lines.insert(format!("pub use {path}::{name} = {source} (external)"));
                    }
                }
            } else {
                let name = child_item["name"].as_str().unwrap_or("_");
                self.visit(
                    &child_id,
                    child_item,
                    &format!("{path}::{name}"),
                    lines,
                    reached,
                    seen_modules,
                );
            }
        }
    }

    fn visit(
        &self,
        id: &str,
        item: &Value,
        path: &str,
        lines: &mut BTreeSet<String>,
        reached: &mut BTreeMap<String, BTreeSet<String>>,
        seen_modules: &mut BTreeSet<String>,
    ) {
        if kind_of(item) == "module" {
            lines.insert(format!("mod {path}"));
            self.walk(id, path, lines, reached, seen_modules);
        } else {
            reached
                .entry(id.to_owned())
                .or_default()
                .insert(path.to_owned());
        }
    }

    fn describe(&self, item: &Value, kind: &'static str, path: &str, lines: &mut BTreeSet<String>) {
        let inner = &item["inner"][kind];
        match kind {
            "struct" | "enum" | "union" => {
                let generics = generics(&inner["generics"]);
                lines.insert(format!("{kind} {path}{generics}"));
                if let Some(fields) = inner["kind"]["plain"]["fields"].as_array() {
                    for field in fields {
                        let field = self.item(&self.id_of(field)).expect("field");
                        let ty = render(&field["inner"]["struct_field"]);
                        lines.insert(format!(
                            "field {path}::{}: {ty}",
                            field["name"].as_str().unwrap_or("_")
                        ));
                    }
                }
                if let Some(fields) = inner["kind"]["tuple"].as_array() {
                    let shown: Vec<String> = fields
                        .iter()
                        .map(|f| match f {
                            Value::Null => "_".to_owned(),
                            id => render(&self.item(&self.id_of(id)).expect("field")["inner"]["struct_field"]),
                        })
                        .collect();
                    lines.insert(format!("field {path}({})", shown.join(", ")));
                }
                for variant in inner["variants"].as_array().into_iter().flatten() {
                    let variant = self.item(&self.id_of(variant)).expect("variant");
                    lines.insert(format!(
                        "variant {path}::{}",
                        variant["name"].as_str().unwrap_or("_")
                    ));
                }
                for imp in inner["impls"].as_array().into_iter().flatten() {
                    self.describe_impl(imp, path, lines);
                }
            }
            "trait" => {
                lines.insert(format!("trait {path}{}", generics(&inner["generics"])));
                for member in inner["items"].as_array().into_iter().flatten() {
                    let member = self.item(&self.id_of(member)).expect("trait item");
                    lines.insert(self.member_line(member, path));
                }
            }
            "function" => {
                lines.insert(format!("fn {path}{}", signature(inner)));
            }
            "constant" => {
                lines.insert(format!("const {path}: {}", render(&inner["type"])));
            }
            "static" => {
                lines.insert(format!("static {path}: {}", render(&inner["type"])));
            }
            "type_alias" => {
                lines.insert(format!(
                    "type {path}{} = {}",
                    generics(&inner["generics"]),
                    render(&inner["type"])
                ));
            }
            other => {
                lines.insert(format!("{other} {path}"));
            }
        }
    }

    fn describe_impl(&self, imp: &Value, path: &str, lines: &mut BTreeSet<String>) {
        let Some(imp) = self.item(&self.id_of(imp)) else {
            return;
        };
        let inner = &imp["inner"]["impl"];
        if inner["is_synthetic"].as_bool() == Some(true) || !inner["blanket_impl"].is_null() {
            return;
        }
        match &inner["trait"] {
            Value::Null => {
                for member in inner["items"].as_array().into_iter().flatten() {
                    let Some(member) = self.item(&self.id_of(member)) else {
                        continue;
                    };
                    if member["visibility"] == "public" {
                        lines.insert(self.member_line(member, path));
                    }
                }
            }
            tr => {
                let negative = if inner["is_negative"].as_bool() == Some(true) {
                    "!"
                } else {
                    ""
                };
                lines.insert(format!("impl {negative}{} for {path}", render_path(tr)));
            }
        }
    }

    fn member_line(&self, member: &Value, path: &str) -> String {
        let name = member["name"].as_str().unwrap_or("_");
        let inner = &member["inner"];
        if let Some(f) = inner.get("function") {
            format!("fn {path}::{name}{}", signature(f))
        } else if let Some(c) = inner.get("assoc_const") {
            format!("const {path}::{name}: {}", render(&c["type"]))
        } else if inner.get("assoc_type").is_some() {
            format!("type {path}::{name}")
        } else {
            format!("{} {path}::{name}", kind_of(member))
        }
    }
}

fn kind_of(item: &Value) -> &'static str {
    const KINDS: &[&str] = &[
        "module",
        "struct",
        "enum",
        "union",
        "trait",
        "function",
        "constant",
        "static",
        "type_alias",
        "macro",
        "trait_alias",
        "use",
        "variant",
        "struct_field",
        "assoc_const",
        "assoc_type",
    ];
    let inner = item["inner"].as_object().expect("inner");
    KINDS
        .iter()
        .copied()
        .find(|k| inner.contains_key(*k))
        .unwrap_or("other")
}

fn generics(g: &Value) -> String {
    let params: Vec<String> = g["params"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["kind"]["type"]["is_synthetic"].as_bool() != Some(true))
        .map(|p| {
            let name = p["name"].as_str().unwrap_or("_").to_owned();
            match p["kind"]["type"].get("default").filter(|d| !d.is_null()) {
                Some(default) => format!("{name} = {}", render(default)),
                None => name,
            }
        })
        .collect();
    if params.is_empty() {
        String::new()
    } else {
        format!("<{}>", params.join(", "))
    }
}

fn signature(f: &Value) -> String {
    let inputs: Vec<String> = f["sig"]["inputs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|pair| {
            let name = pair[0].as_str().unwrap_or("_");
            let ty = render(&pair[1]);
            if name == "self" {
                ty.replace("Self", "self")
            } else {
                format!("{name}: {ty}")
            }
        })
        .collect();
    let output = match &f["sig"]["output"] {
        Value::Null => String::new(),
        ty => format!(" -> {}", render(ty)),
    };
    format!(
        "{}({}){output}",
        generics(&f["generics"]),
        inputs.join(", ")
    )
}

fn render_path(p: &Value) -> String {
    let name = p["path"].as_str().unwrap_or("?");
    let name = name.rsplit("::").next().unwrap_or(name);
    let args = &p["args"]["angle_bracketed"];
    let mut shown: Vec<String> = args["args"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            if let Some(t) = a.get("type") {
                render(t)
            } else if let Some(l) = a.get("lifetime") {
                l.as_str().unwrap_or("'_").to_owned()
            } else if let Some(c) = a.get("const") {
                c["expr"].as_str().unwrap_or("_").to_owned()
            } else {
                "_".to_owned()
            }
        })
        .collect();
    for c in args["constraints"].as_array().into_iter().flatten() {
        let binding = c["binding"]["equality"]["type"].clone();
        shown.push(format!(
            "{} = {}",
            c["name"].as_str().unwrap_or("_"),
            render(&binding)
        ));
    }
    if let Some(parenthesized) = p["args"].get("parenthesized") {
        let inputs: Vec<String> = parenthesized["inputs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(render)
            .collect();
        let output = match &parenthesized["output"] {
            Value::Null => String::new(),
            ty => format!(" -> {}", render(ty)),
        };
        return format!("{name}({}){output}", inputs.join(", "));
    }
    if shown.is_empty() {
        name.to_owned()
    } else {
        format!("{name}<{}>", shown.join(", "))
    }
}

fn bounds(list: &Value) -> String {
    let shown: Vec<String> = list
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| {
            if let Some(t) = b.get("trait_bound") {
                render_path(&t["trait"])
            } else if let Some(o) = b.get("outlives") {
                o.as_str().unwrap_or("'_").to_owned()
            } else {
                "_".to_owned()
            }
        })
        .collect();
    shown.join(" + ")
}

fn render(ty: &Value) -> String {
    let Some(obj) = ty.as_object() else {
        return "_".to_owned();
    };
    if let Some(p) = obj.get("resolved_path") {
        render_path(p)
    } else if let Some(g) = obj.get("generic") {
        g.as_str().unwrap_or("_").to_owned()
    } else if let Some(p) = obj.get("primitive") {
        p.as_str().unwrap_or("_").to_owned()
    } else if let Some(r) = obj.get("borrowed_ref") {
        let lifetime = r["lifetime"]
            .as_str()
            .map(|l| format!("{l} "))
            .unwrap_or_default();
        let mutable = if r["is_mutable"].as_bool() == Some(true) {
            "mut "
        } else {
            ""
        };
        format!("&{lifetime}{mutable}{}", render(&r["type"]))
    } else if let Some(t) = obj.get("tuple") {
        let parts: Vec<String> = t.as_array().into_iter().flatten().map(render).collect();
        format!("({})", parts.join(", "))
    } else if let Some(s) = obj.get("slice") {
        format!("[{}]", render(s))
    } else if let Some(a) = obj.get("array") {
        format!(
            "[{}; {}]",
            render(&a["type"]),
            a["len"].as_str().unwrap_or("_")
        )
    } else if let Some(i) = obj.get("impl_trait") {
        format!("impl {}", bounds(i))
    } else if let Some(d) = obj.get("dyn_trait") {
        let traits: Vec<String> = d["traits"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| render_path(&t["trait"]))
            .collect();
        format!("dyn {}", traits.join(" + "))
    } else if let Some(q) = obj.get("qualified_path") {
        let trait_ = match &q["trait"] {
            Value::Null => String::new(),
            t => format!(" as {}", render_path(t)),
        };
        format!(
            "<{}{trait_}>::{}",
            render(&q["self_type"]),
            q["name"].as_str().unwrap_or("_")
        )
    } else if let Some(p) = obj.get("raw_pointer") {
        let mutable = if p["is_mutable"].as_bool() == Some(true) {
            "mut"
        } else {
            "const"
        };
        format!("*{mutable} {}", render(&p["type"]))
    } else if let Some(f) = obj.get("function_pointer") {
        let inputs: Vec<String> = f["sig"]["inputs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| render(&p[1]))
            .collect();
        let output = match &f["sig"]["output"] {
            Value::Null => String::new(),
            ty => format!(" -> {}", render(ty)),
        };
        format!("fn({}){output}", inputs.join(", "))
    } else if obj.contains_key("infer") {
        "_".to_owned()
    } else {
        "?".to_owned()
    }
}
