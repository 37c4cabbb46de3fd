//! The semantic check of the templates against the type data: what the Bicep compiler would
//! report, done offline. Templates are parsed with tree-sitter-bicep (the `extension <alias>`
//! line it lacks is blanked first, as in `tests/e2e/bicep_syntax.rs`).
//!
//! For every resource declaration: the type and api-version exist; every property in the body
//! exists on its type (Bicep's own keys `parent`, `scope`, `dependsOn` aside), with a compatible
//! value (literal kind, enum value, integer range, string length); required properties are
//! present and read-only ones absent (`existing` declarations: names only). References
//! `<resource>.<path>` name properties the type has. Module calls pass only declared
//! parameters, every one without a default, with values of the declared type and allowed
//! values; `<module>.outputs.<name>` names an output the module declares. Plus the Flex
//! Consumption rules ([`FLEX_REFUSED`]), each citing its source.
//!
//! A value the checker cannot decide (a parameter without allowed values, a function call) is
//! accepted for what it may be: only definite mismatches are reported, each as
//! `file:line: what: why`.

use std::collections::BTreeMap;

use tree_sitter::Node;

use super::types::{Missing, READ_ONLY, REQUIRED, Ty, TypeData};
use crate::bicep_syntax::bicepparam_as_bicep;
pub use crate::support::bicep::BicepFile;

/// Site properties Flex Consumption refuses or ignores: (path under the site body, source).
/// Source: MicrosoftDocs/azure-docs articles/azure-functions/functions-app-settings.md,
/// "Flex Consumption plan deprecations" (the table lists `properties.<name>` for site
/// configuration properties; `isReserved` is the site's `reserved`), and for ftpsState the ARM
/// error 51021 "site configuration properties ... for Flex Consumption sites is invalid".
pub const FLEX_REFUSED: &[(&str, &str)] = &[
    (
        "properties.siteConfig.ftpsState",
        "deprecations table: `properties.ftpsState` FTPS not supported (ARM error 51021)",
    ),
    (
        "properties.reserved",
        "deprecations table: `properties.isReserved` Not valid",
    ),
    (
        "properties.vnetRouteAllEnabled",
        "deprecations table: `properties.vnetRouteAllEnabled` Not used for networking in Flex Consumption",
    ),
    (
        "properties.siteConfig.vnetRouteAllEnabled",
        "deprecations table: `properties.vnetRouteAllEnabled` Not used for networking in Flex Consumption",
    ),
    (
        "properties.vnetContentShareEnabled",
        "deprecations table: Not used for networking in Flex Consumption",
    ),
    (
        "properties.vnetImagePullEnabled",
        "deprecations table: Not used for networking in Flex Consumption",
    ),
    (
        "properties.vnetBackupRestoreEnabled",
        "deprecations table: Not used for networking in Flex Consumption",
    ),
    (
        "properties.containerSize",
        "deprecations table: renamed as instanceMemoryMB",
    ),
    (
        "properties.siteConfig.alwaysOn",
        "deprecations table: `properties.alwaysOn` Not valid",
    ),
    (
        "properties.siteConfig.linuxFxVersion",
        "deprecations table: replaced by properties.functionAppConfig.runtime",
    ),
    (
        "properties.siteConfig.windowsFxVersion",
        "deprecations table: Not valid",
    ),
    (
        "properties.siteConfig.use32BitWorkerProcess",
        "deprecations table: 32-bit not supported",
    ),
    (
        "properties.siteConfig.netFrameworkVersion",
        "deprecations table: replaced by functionAppConfig.runtime.version",
    ),
    (
        "properties.siteConfig.javaVersion",
        "deprecations table: replaced by functionAppConfig.runtime.version",
    ),
    (
        "properties.siteConfig.powerShellVersion",
        "deprecations table: replaced by functionAppConfig.runtime.version",
    ),
    (
        "properties.siteConfig.functionAppScaleLimit",
        "deprecations table: renamed as maximumInstanceCount",
    ),
    (
        "properties.siteConfig.preWarmedInstanceCount",
        "deprecations table: renamed as alwaysReadyInstances",
    ),
];

/// Keys of a resource body that are Bicep's, not the resource type's.
const BICEP_KEYS: &[&str] = &["parent", "scope", "dependsOn"];

impl BicepFile {
    /// "name 'Type@version'" of each resource declaration.
    pub fn resource_types(&self) -> Vec<String> {
        self.statements("resource_declaration")
            .into_iter()
            .map(|r| {
                format!(
                    "{} {}",
                    self.decl_name(r),
                    self.target(r).unwrap_or_default()
                )
            })
            .collect()
    }

    /// `'Type@version'` of a resource, or the path of a module.
    fn target(&self, decl: Node) -> Option<String> {
        let mut c = decl.walk();
        let s = decl.named_children(&mut c).find(|n| n.kind() == "string")?;
        Some(self.text_of(s).trim_matches('\'').to_string())
    }

    /// The value/body node: the last named child, through `for` and `if`.
    fn body<'a>(&self, decl: Node<'a>) -> Option<Node<'a>> {
        let mut c = decl.walk();
        let mut n = decl
            .named_children(&mut c)
            .filter(|n| n.kind() != "comment")
            .last()?;
        loop {
            n = match n.kind() {
                "for_statement" => n.child_by_field_name("body")?,
                "if_statement" => {
                    let mut c2 = n.walk();
                    n.named_children(&mut c2)
                        .filter(|x| x.kind() != "comment")
                        .last()?
                }
                _ => return Some(n),
            }
        }
    }

    /// The decorators of a top-level declaration (the sibling just before it).
    fn allowed_values(&self, decl: Node) -> Option<Vec<Value>> {
        let prev = decl
            .prev_named_sibling()
            .filter(|p| p.kind() == "decorators")?;
        let mut c = prev.walk();
        let allowed = prev
            .named_children(&mut c)
            .find(|d| self.text_of(*d).starts_with("@allowed"))?;
        let mut out = Vec::new();
        collect_literals(self, allowed, &mut out);
        Some(out)
    }

    /// Object properties as (key, value node).
    fn props<'a>(&self, obj: Node<'a>) -> Vec<(String, Node<'a>, Node<'a>)> {
        let mut c = obj.walk();
        obj.named_children(&mut c)
            .filter(|p| p.kind() == "object_property")
            .filter_map(|p| {
                let mut c2 = p.walk();
                let parts: Vec<Node<'a>> = p
                    .named_children(&mut c2)
                    .filter(|x| !matches!(x.kind(), "comment" | "decorators"))
                    .collect();
                let key = parts.first()?;
                let k = self.text_of(*key).trim_matches('\'').to_string();
                Some((k, *key, *parts.last()?))
            })
            .collect()
    }
}

/// What a value expression is known to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
    Null,
    AnyStr,
    AnyInt,
    AnyBool,
    AnyArray,
    AnyObject,
    Unknown,
}

fn collect_literals(f: &BicepFile, n: Node, out: &mut Vec<Value>) {
    match n.kind() {
        "string" | "number" | "boolean" => out.push(literal(f, n)),
        _ => {
            let mut c = n.walk();
            for ch in n.named_children(&mut c) {
                collect_literals(f, ch, out);
            }
        }
    }
}

fn literal(f: &BicepFile, n: Node) -> Value {
    let t = f.text_of(n);
    match n.kind() {
        "string"
            if n.named_children(&mut n.walk())
                .any(|c| c.kind() == "interpolation") =>
        {
            Value::AnyStr
        }
        "string" => Value::Str(t.trim_matches('\'').replace("\\'", "'")),
        "number" => t.parse().map(Value::Int).unwrap_or(Value::AnyInt),
        "boolean" => Value::Bool(t == "true"),
        "null" => Value::Null,
        _ => Value::Unknown,
    }
}

/// Functions whose result kind is known (Bicep function reference).
fn call_result(name: &str) -> Value {
    match name {
        "string"
        | "guid"
        | "uniqueString"
        | "subscriptionResourceId"
        | "resourceId"
        | "tenantResourceId"
        | "toLower"
        | "toUpper"
        | "take"
        | "replace"
        | "substring"
        | "format"
        | "concat_str" => Value::AnyStr,
        "empty" | "contains" | "startsWith" | "endsWith" | "bool" => Value::AnyBool,
        "length" | "int" | "indexOf" => Value::AnyInt,
        _ => Value::Unknown,
    }
}

pub struct Checker<'d> {
    pub files: BTreeMap<String, BicepFile>,
    types: &'d TypeData,
    /// Property values checked against a type (for the inventory).
    pub checked_paths: std::cell::Cell<usize>,
}

impl<'d> Checker<'d> {
    pub fn new(sources: &[(String, String)], types: &'d TypeData) -> Self {
        let files = sources
            .iter()
            .filter(|(rel, _)| rel.ends_with(".bicep") || rel.ends_with(".bicepparam"))
            .map(|(rel, text)| {
                let text = if rel.ends_with(".bicepparam") {
                    bicepparam_as_bicep(text)
                } else {
                    text.clone()
                };
                (rel.clone(), BicepFile::parse(rel, &text))
            })
            .collect();
        Checker {
            files,
            types,
            checked_paths: Default::default(),
        }
    }

    /// Every problem in every file.
    pub fn check_all(&self) -> Vec<String> {
        let mut out = Vec::new();
        for f in self.files.values() {
            if f.rel.ends_with(".bicepparam") {
                self.check_param_file(f, &mut out);
                continue;
            }
            check_escapes(f, &mut out);
            self.check_resources(f, &mut out);
            self.check_modules(f, &mut out);
            self.check_references(f, &mut out);
        }
        out
    }

    /// The candidate values of an expression (both branches of a condition).
    fn values(&self, f: &BicepFile, n: Node, depth: usize) -> Vec<Value> {
        if depth > 20 {
            return vec![Value::Unknown];
        }
        match n.kind() {
            "string" | "number" | "boolean" | "null" => vec![literal(f, n)],
            "parenthesized_expression" => n
                .named_child(0)
                .map(|i| self.values(f, i, depth + 1))
                .unwrap_or_default(),
            "ternary_expression" => ["consequence", "alternative"]
                .iter()
                .filter_map(|k| n.child_by_field_name(k))
                .flat_map(|b| self.values(f, b, depth + 1))
                .collect(),
            "array" => vec![Value::AnyArray],
            "object" => vec![Value::AnyObject],
            "binary_expression" | "unary_expression" => {
                let op = n
                    .child_by_field_name("operator")
                    .map(|o| f.text_of(o))
                    .unwrap_or("");
                match op {
                    "==" | "!=" | "&&" | "||" | "!" | "<" | ">" | "<=" | ">=" | "=~" | "!~" => {
                        vec![Value::AnyBool]
                    }
                    "+" | "-" | "*" | "/" | "%" => vec![Value::AnyInt],
                    _ => vec![Value::Unknown],
                }
            }
            "call_expression" => {
                let name = n
                    .child_by_field_name("function")
                    .map(|x| f.text_of(x))
                    .unwrap_or("");
                vec![call_result(name)]
            }
            "identifier" => match f.find_decl(f.text_of(n)) {
                Some(d) if d.kind() == "variable_declaration" => f
                    .body(d)
                    .map(|v| self.values(f, v, depth + 1))
                    .unwrap_or_default(),
                Some(d) if d.kind() == "parameter_declaration" => param_values(f, d),
                _ => vec![Value::Unknown],
            },
            _ => vec![Value::Unknown],
        }
    }

    /// Checks the value node `n` against type `ty`; `what` names the place for messages.
    fn check_value(&self, f: &BicepFile, n: Node, ty: &Ty, what: &str, out: &mut Vec<String>) {
        match n.kind() {
            "parenthesized_expression" => {
                if let Some(i) = n.named_child(0) {
                    self.check_value(f, i, ty, what, out);
                }
                return;
            }
            "ternary_expression" => {
                for k in ["consequence", "alternative"] {
                    if let Some(b) = n.child_by_field_name(k) {
                        self.check_value(f, b, ty, what, out);
                    }
                }
                return;
            }
            "identifier" => {
                if let Some(d) = f
                    .find_decl(f.text_of(n))
                    .filter(|d| d.kind() == "variable_declaration")
                    && let Some(v) = f.body(d)
                {
                    return self.check_value(f, v, ty, what, out);
                }
            }
            _ => {}
        }
        match (n.kind(), ty.kind()) {
            (_, "AnyType") | ("null", _) => {}
            ("object", "ObjectType" | "DiscriminatedObjectType") => {
                self.check_object(f, n, ty, what, false, out)
            }
            ("array", "ArrayType") => {
                if let Some(item) = ty.field("itemType") {
                    let mut c = n.walk();
                    for (i, el) in n
                        .named_children(&mut c)
                        .filter(|x| x.kind() != "comment")
                        .enumerate()
                    {
                        self.check_value(f, el, &item, &format!("{what}[{i}]"), out);
                    }
                }
            }
            _ => {
                for v in self.values(f, n, 0) {
                    if let Some(why) = mismatch(&v, ty) {
                        out.push(format!("{}: {what}: {why}", f.at(n)));
                    }
                }
            }
        }
    }

    /// An object literal against an object type: unknown, read-only and missing properties.
    fn check_object(
        &self,
        f: &BicepFile,
        obj: Node,
        ty: &Ty,
        what: &str,
        existing: bool,
        out: &mut Vec<String>,
    ) {
        let given = f.props(obj);
        let discriminator = ty.node()["discriminator"].as_str().and_then(|d| {
            given
                .iter()
                .find(|(k, _, _)| k == d)
                .and_then(|(_, _, v)| match literal(f, *v) {
                    Value::Str(s) => Some(s),
                    _ => None,
                })
        });
        let props = ty.properties(discriminator.as_deref());
        let extra = ty.field("additionalProperties");
        for (key, key_node, value) in &given {
            let place = if what.is_empty() {
                key.clone()
            } else {
                format!("{what}.{key}")
            };
            if what.is_empty() && BICEP_KEYS.contains(&key.as_str()) {
                continue;
            }
            match (props.get(key), &extra) {
                (Some((pty, flags)), _) => {
                    self.checked_paths.set(self.checked_paths.get() + 1);
                    if !existing && flags & READ_ONLY != 0 && flags & REQUIRED == 0 {
                        out.push(format!(
                            "{}: {place}: read-only property, Azure sets it",
                            f.at(*key_node)
                        ));
                    } else if !existing {
                        self.check_value(f, *value, pty, &place, out);
                    }
                }
                (None, Some(aty)) => {
                    if !existing {
                        self.check_value(f, *value, aty, &place, out);
                    }
                }
                (None, None) => {
                    let near = nearest(key, props.keys());
                    out.push(format!(
                        "{}: {place}: no such property on {}{near}",
                        f.at(*key_node),
                        ty.describe()
                    ));
                }
            }
        }
        if existing {
            return;
        }
        for (key, (_, flags)) in &props {
            if flags & REQUIRED != 0
                && flags & READ_ONLY == 0
                && !given.iter().any(|(k, _, _)| k == key)
            {
                let place = if what.is_empty() {
                    key.clone()
                } else {
                    format!("{what}.{key}")
                };
                out.push(format!("{}: {place}: required property missing", f.at(obj)));
            }
        }
    }

    fn check_resources(&self, f: &BicepFile, out: &mut Vec<String>) {
        for r in f.statements("resource_declaration") {
            let Some(target) = f.target(r) else { continue };
            let ty = match self.types.resource(&target) {
                Ok(t) => t,
                Err(Missing::UnknownType) => {
                    match scope_only(&target) {
                        Some(_) if f.is_existing(r) => scope_only_uses(f, r, out),
                        _ => out.push(format!(
                            "{}: {target}: resource type not in the type data",
                            f.at(r)
                        )),
                    }
                    continue;
                }
                Err(Missing::UnknownVersion { known }) => {
                    out.push(format!(
                        "{}: {target}: api-version not in the type data (known: {})",
                        f.at(r),
                        known.join(", ")
                    ));
                    continue;
                }
            };
            check_scope(f, r, &ty, &target, out);
            let (Some(body_ty), Some(body)) = (ty.field("body"), f.body(r)) else {
                continue;
            };
            if body.kind() == "object" {
                self.check_object(f, body, &body_ty, "", f.is_existing(r), out);
            }
            if target
                .to_ascii_lowercase()
                .starts_with("microsoft.web/sites@")
                && !f.is_existing(r)
            {
                self.check_flex(f, body, out);
            }
        }
    }

    /// Every [`FLEX_REFUSED`] path the site sets on the Flex plan (conditions evaluated with
    /// `planKind == 'flex'`; a condition the checker cannot decide counts as set).
    fn check_flex(&self, f: &BicepFile, body: Node, out: &mut Vec<String>) {
        for (path, source) in FLEX_REFUSED {
            let keys: Vec<&str> = path.split('.').collect();
            if let Some(n) = self.flex_path(f, body, &keys)
                && !self.null_on_flex(f, n, 0)
            {
                out.push(format!(
                    "{}: {path}: Flex Consumption refuses it ({source})",
                    f.at(n)
                ));
            }
        }
    }

    fn flex_path<'a>(&self, f: &'a BicepFile, obj: Node<'a>, keys: &[&str]) -> Option<Node<'a>> {
        let (first, rest) = keys.split_first()?;
        let v = f.props(obj).into_iter().find(|(k, _, _)| k == first)?.2;
        if rest.is_empty() {
            return Some(v);
        }
        let v = self.on_flex(f, v, 0)?;
        if v.kind() == "object" {
            self.flex_path(f, v, rest)
        } else {
            None
        }
    }

    /// The branch a conditional takes on Flex, through variables.
    fn on_flex<'a>(&self, f: &'a BicepFile, n: Node<'a>, depth: usize) -> Option<Node<'a>> {
        if depth > 20 {
            return Some(n);
        }
        match n.kind() {
            "ternary_expression" => {
                let branch = match flex_bool(f, n.child_by_field_name("condition")?, 0) {
                    Some(true) => "consequence",
                    Some(false) => "alternative",
                    None => return Some(n),
                };
                self.on_flex(f, n.child_by_field_name(branch)?, depth + 1)
            }
            "parenthesized_expression" => self.on_flex(f, n.named_child(0)?, depth + 1),
            "identifier" => match f.find_decl(f.text_of(n)) {
                Some(d) if d.kind() == "variable_declaration" => {
                    self.on_flex(f, f.body(d)?, depth + 1)
                }
                _ => Some(n),
            },
            _ => Some(n),
        }
    }

    fn null_on_flex(&self, f: &BicepFile, n: Node, depth: usize) -> bool {
        self.on_flex(f, n, depth)
            .is_some_and(|v| v.kind() == "null")
    }

    fn check_modules(&self, f: &BicepFile, out: &mut Vec<String>) {
        for m in f.statements("module_declaration") {
            let Some(path) = f.target(m) else { continue };
            let rel = join(&f.rel, &path);
            let Some(tf) = self.files.get(&rel) else {
                out.push(format!("{}: module {path}: no such file", f.at(m)));
                continue;
            };
            let declared: BTreeMap<String, Node> = tf
                .statements("parameter_declaration")
                .into_iter()
                .map(|p| (tf.decl_name(p), p))
                .collect();
            let given = f
                .body(m)
                .and_then(|b| f.props(b).into_iter().find(|(k, _, _)| k == "params"))
                .filter(|(_, _, v)| v.kind() == "object")
                .map(|(_, _, v)| f.props(v))
                .unwrap_or_default();
            for (k, key_node, value) in &given {
                let Some(p) = declared.get(k) else {
                    out.push(format!(
                        "{}: module {path}: no parameter `{k}` there",
                        f.at(*key_node)
                    ));
                    continue;
                };
                let allowed = param_values(tf, *p);
                for v in self.values(f, *value, 0) {
                    if let Some(why) = param_mismatch(&v, &allowed) {
                        out.push(format!(
                            "{}: module {path} parameter `{k}`: {why}",
                            f.at(*key_node)
                        ));
                    }
                }
            }
            for (name, p) in &declared {
                if !param_has_default(tf, *p) && !given.iter().any(|(k, _, _)| k == name) {
                    out.push(format!(
                        "{}: module {path}: required parameter `{name}` not passed",
                        f.at(m)
                    ));
                }
            }
        }
    }

    /// `<module>.outputs.<name>` and `<resource>.<path>` references.
    fn check_references(&self, f: &BicepFile, out: &mut Vec<String>) {
        let mut stack = vec![f.tree.root_node()];
        while let Some(n) = stack.pop() {
            let mut c = n.walk();
            stack.extend(n.named_children(&mut c));
            if n.kind() != "member_expression"
                || n.parent().is_some_and(|p| p.kind() == "member_expression")
            {
                continue;
            }
            let (base, path) = member_chain(f, n);
            let Some(decl) = f.find_decl(&base) else {
                continue;
            };
            match decl.kind() {
                "module_declaration" if path.first().map(String::as_str) == Some("outputs") => {
                    let (Some(name), Some(target)) = (path.get(1), f.target(decl)) else {
                        continue;
                    };
                    let rel = join(&f.rel, &target);
                    if let Some(tf) = self.files.get(&rel)
                        && !tf
                            .statements("output_declaration")
                            .iter()
                            .any(|o| tf.decl_name(*o) == *name)
                    {
                        out.push(format!(
                            "{}: {base}.outputs.{name}: {target} has no such output",
                            f.at(n)
                        ));
                    }
                }
                "resource_declaration" => {
                    let Some(Ok(rt)) = f.target(decl).map(|t| self.types.resource(&t)) else {
                        continue;
                    };
                    let Some(mut ty) = rt.field("body") else {
                        continue;
                    };
                    for (i, key) in path.iter().enumerate() {
                        let props = ty.properties(None);
                        match props.get(key) {
                            Some((t, _)) => ty = t.clone(),
                            None if ty.field("additionalProperties").is_some()
                                || ty.kind() == "AnyType" =>
                            {
                                break;
                            }
                            None => {
                                out.push(format!(
                                    "{}: {base}.{}: no property `{key}` on {}",
                                    f.at(n),
                                    path[..=i].join("."),
                                    ty.describe()
                                ));
                                break;
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

impl Checker<'_> {
    /// A `.bicepparam` file's values against the parameters of the template it uses: allowed
    /// values, primitive kinds, and the fields of user-defined object types (`type x = {...}`).
    fn check_param_file(&self, f: &BicepFile, out: &mut Vec<String>) {
        let Some(using) = f
            .statements("using_statement")
            .first()
            .and_then(|u| f.target(*u))
        else {
            out.push(format!("{}:1: no `using` statement", f.rel));
            return;
        };
        let Some(tf) = self.files.get(&join(&f.rel, &using)) else {
            out.push(format!("{}:1: `using '{using}'`: no such template", f.rel));
            return;
        };
        for v in f.statements("variable_declaration") {
            let (name, Some(value)) = (f.decl_name(v), f.body(v)) else {
                continue;
            };
            let Some(p) = tf
                .find_decl(&name)
                .filter(|d| d.kind() == "parameter_declaration")
            else {
                out.push(format!(
                    "{}: param `{name}` is not a parameter of {using}",
                    f.at(v)
                ));
                continue;
            };
            let mut c = p.walk();
            let ty = p
                .named_children(&mut c)
                .find(|x| x.kind() == "type")
                .map(|t| tf.text_of(t).to_string())
                .unwrap_or_default();
            if let Some(allowed) = tf.allowed_values(p) {
                for got in self.values(f, value, 0) {
                    if let Some(why) = param_mismatch(&got, &allowed) {
                        out.push(format!("{}: {name}: {why}", f.at(value)));
                    }
                }
                continue;
            }
            check_declared(f, value, tf, &ty, &name, out);
        }
    }
}

/// A value against a declared Bicep type: `string`, `int`, `bool`, `object`, `array`,
/// `T[]`, or the name of a `type` declaration in `tf` whose fields are checked.
fn check_declared(
    f: &BicepFile,
    value: Node,
    tf: &BicepFile,
    ty: &str,
    place: &str,
    out: &mut Vec<String>,
) {
    let ty = ty.trim();
    let nullable = ty.ends_with('?');
    let ty = ty.trim_end_matches('?');
    if value.kind() == "null" && nullable {
        return;
    }
    if let Some(item) = ty.strip_suffix("[]") {
        if value.kind() != "array" {
            out.push(format!(
                "{}: {place}: expected an array ({ty})",
                f.at(value)
            ));
            return;
        }
        let mut c = value.walk();
        for (i, el) in value
            .named_children(&mut c)
            .filter(|x| x.kind() != "comment")
            .enumerate()
        {
            check_declared(f, el, tf, item, &format!("{place}[{i}]"), out);
        }
        return;
    }
    let fields = tf
        .statements("type_declaration")
        .into_iter()
        .find(|d| tf.decl_name(*d) == ty)
        .and_then(|d| tf.body(d))
        .filter(|b| b.kind() == "object")
        .map(|b| tf.props(b));
    if let Some(fields) = fields {
        if value.kind() != "object" {
            out.push(format!(
                "{}: {place}: expected an object ({ty})",
                f.at(value)
            ));
            return;
        }
        let given = f.props(value);
        for (k, key_node, v) in &given {
            match fields.iter().find(|(fk, _, _)| fk == k) {
                Some((_, _, ft)) => {
                    check_declared(f, *v, tf, tf.text_of(*ft), &format!("{place}.{k}"), out)
                }
                None => out.push(format!(
                    "{}: {place}.{k}: no such field in type {ty}",
                    f.at(*key_node)
                )),
            }
        }
        for (fk, _, ft) in &fields {
            if !tf.text_of(*ft).ends_with('?') && !given.iter().any(|(k, _, _)| k == fk) {
                out.push(format!(
                    "{}: {place}.{fk}: required field of type {ty} missing",
                    f.at(value)
                ));
            }
        }
        return;
    }
    let kind_ok = match (ty, value.kind()) {
        ("string", "string")
        | ("int", "number")
        | ("bool", "boolean")
        | ("object", "object")
        | ("array", "array") => true,
        (
            "string" | "int" | "bool" | "object" | "array",
            "string" | "number" | "boolean" | "object" | "array",
        ) => false,
        _ => true,
    };
    if !kind_ok {
        out.push(format!(
            "{}: {place}: a {} where the parameter takes {ty}",
            f.at(value),
            value.kind()
        ));
    }
}

/// Escape sequences Bicep accepts in strings: `\\ \' \n \r \t \$` and `\u{hex}` (Bicep
/// "Strings" data type reference; anything else is error BCP006, e.g. `\"`).
fn check_escapes(f: &BicepFile, out: &mut Vec<String>) {
    let mut stack = vec![f.tree.root_node()];
    while let Some(n) = stack.pop() {
        let mut c = n.walk();
        stack.extend(n.children(&mut c));
        let text = f.text_of(n);
        let valid = |e: &str| {
            matches!(e, "\\\\" | "\\'" | "\\n" | "\\r" | "\\t" | "\\$")
                || e.strip_prefix("\\u{")
                    .and_then(|h| h.strip_suffix('}'))
                    .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()))
        };
        if n.kind() == "escape_sequence" && !valid(text) {
            out.push(format!(
                "{}: `{text}` is not a Bicep escape sequence (BCP006)",
                f.at(n)
            ));
        }
        // The grammar may also leave an unknown escape as plain string content.
        // Multi-line strings ('''...''') have no escapes: a backslash there is itself.
        let multi_line = n.parent().is_some_and(|p| f.text_of(p).starts_with("'''"));
        if n.kind() == "string_content" && text.contains('\\') && !multi_line {
            out.push(format!(
                "{}: `\\` in a string starts an escape Bicep does not know (BCP006)",
                f.at(n)
            ));
        }
    }
}

/// Whether the type may be deployed (or, `existing`, read) where the file deploys it: the
/// file's `targetScope` (default resourceGroup), or as an extension resource when it has a
/// `scope:` (bicep-types `ScopeType` bits: 1 tenant, 2 management group, 4 subscription,
/// 8 resource group, 16 extension). Graph types carry no such bits and are skipped.
fn check_scope(f: &BicepFile, r: Node, ty: &Ty, target: &str, out: &mut Vec<String>) {
    let key = if f.is_existing(r) {
        "readableScopes"
    } else {
        "writableScopes"
    };
    let Some(allowed) = ty.node()[key].as_u64() else {
        return;
    };
    let target_scope = f
        .statements("target_scope_assignment")
        .first()
        .map(|t| f.text_of(*t).to_string())
        .unwrap_or_default();
    let (name, bit) = match target_scope.split('\'').nth(1).unwrap_or("resourceGroup") {
        "tenant" => ("tenant", 1),
        "managementGroup" => ("managementGroup", 2),
        "subscription" => ("subscription", 4),
        _ => ("resourceGroup", 8),
    };
    let extension = f
        .body(r)
        .is_some_and(|b| f.props(b).iter().any(|(k, _, _)| k == "scope"));
    if allowed & bit == 0 && !(extension && allowed & 16 != 0) {
        out.push(format!(
            "{}: {target}: cannot be deployed at {name} scope (the type allows scopes {allowed:#b})",
            f.at(r)
        ));
    }
}

/// `a.b.c` (or `a[i].b.c`) as ("a", ["b", "c"]).
fn member_chain(f: &BicepFile, n: Node) -> (String, Vec<String>) {
    let mut path = Vec::new();
    let mut cur = n;
    loop {
        match cur.kind() {
            "member_expression" => {
                if let Some(p) = cur.child_by_field_name("property") {
                    path.push(f.text_of(p).to_string());
                }
                match cur.child_by_field_name("object") {
                    Some(o) => cur = o,
                    None => break,
                }
            }
            "subscript_expression" => match cur.child_by_field_name("object") {
                Some(o) => cur = o,
                None => break,
            },
            _ => break,
        }
    }
    path.reverse();
    let base = if cur.kind() == "identifier" {
        f.text_of(cur).to_string()
    } else {
        String::new()
    };
    (base, path)
}

/// `planKind == 'flex'` and friends, with the parameter `planKind` taken as 'flex'.
fn flex_bool(f: &BicepFile, n: Node, depth: usize) -> Option<bool> {
    if depth > 20 {
        return None;
    }
    match n.kind() {
        "boolean" => Some(f.text_of(n) == "true"),
        "parenthesized_expression" => flex_bool(f, n.named_child(0)?, depth + 1),
        "identifier" => {
            let d = f.find_decl(f.text_of(n))?;
            (d.kind() == "variable_declaration").then_some(())?;
            flex_bool(f, f.body(d)?, depth + 1)
        }
        "unary_expression" => {
            flex_bool(f, n.child_by_field_name("argument")?, depth + 1).map(|b| !b)
        }
        "binary_expression" => {
            let op = f.text_of(n.child_by_field_name("operator")?);
            let (l, r) = (
                n.child_by_field_name("left")?,
                n.child_by_field_name("right")?,
            );
            match op {
                "&&" | "||" => {
                    let (a, b) = (flex_bool(f, l, depth + 1), flex_bool(f, r, depth + 1));
                    match (op, a, b) {
                        ("&&", Some(false), _) | ("&&", _, Some(false)) => Some(false),
                        ("||", Some(true), _) | ("||", _, Some(true)) => Some(true),
                        (_, Some(a), Some(b)) => Some(if op == "&&" { a && b } else { a || b }),
                        _ => None,
                    }
                }
                "==" | "!=" => {
                    let (a, b) = (flex_str(f, l)?, flex_str(f, r)?);
                    Some((a == b) == (op == "=="))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

fn flex_str(f: &BicepFile, n: Node) -> Option<String> {
    match n.kind() {
        "string" => match literal(f, n) {
            Value::Str(s) => Some(s),
            _ => None,
        },
        "identifier" if f.text_of(n) == "planKind" => Some("flex".into()),
        _ => None,
    }
}

/// What a parameter may be: its allowed values, or any value of its declared type.
fn param_values(f: &BicepFile, d: Node) -> Vec<Value> {
    if let Some(allowed) = f.allowed_values(d) {
        return allowed;
    }
    let mut c = d.walk();
    let ty = d
        .named_children(&mut c)
        .find(|x| x.kind() == "type")
        .map(|t| f.text_of(t).to_string())
        .unwrap_or_default();
    vec![match ty.as_str() {
        "string" => Value::AnyStr,
        "int" => Value::AnyInt,
        "bool" => Value::AnyBool,
        "object" => Value::AnyObject,
        t if t == "array" || t.ends_with("[]") => Value::AnyArray,
        _ => Value::Unknown,
    }]
}

fn param_has_default(f: &BicepFile, d: Node) -> bool {
    let mut c = d.walk();
    let kids: Vec<Node> = d
        .named_children(&mut c)
        .filter(|x| x.kind() != "comment")
        .collect();
    // name, type, [default]; a nullable type (`string?`) needs no value either.
    kids.len() > 2 || kids.iter().any(|k| f.text_of(*k).ends_with('?'))
}

/// Why value `v` cannot be passed to a parameter that takes `allowed`.
fn param_mismatch(v: &Value, allowed: &[Value]) -> Option<String> {
    let kind = |x: &Value| match x {
        Value::Str(_) | Value::AnyStr => "string",
        Value::Int(_) | Value::AnyInt => "int",
        Value::Bool(_) | Value::AnyBool => "bool",
        Value::AnyArray => "array",
        Value::AnyObject => "object",
        Value::Null | Value::Unknown => "?",
    };
    if matches!(v, Value::Unknown | Value::Null)
        || allowed.iter().any(|a| matches!(a, Value::Unknown))
    {
        return None;
    }
    let literals: Vec<&Value> = allowed
        .iter()
        .filter(|a| matches!(a, Value::Str(_) | Value::Int(_) | Value::Bool(_)))
        .collect();
    if !literals.is_empty()
        && matches!(v, Value::Str(_) | Value::Int(_) | Value::Bool(_))
        && !literals.contains(&v)
    {
        return Some(format!("{v:?} is not an allowed value ({literals:?})"));
    }
    (!allowed.iter().any(|a| kind(a) == kind(v))).then(|| {
        format!(
            "a {} where the parameter takes {}",
            kind(v),
            kind(&allowed[0])
        )
    })
}

/// Why value `v` does not fit type `ty` (scalars and unions).
fn mismatch(v: &Value, ty: &Ty) -> Option<String> {
    let n = ty.node();
    match (ty.kind(), v) {
        (_, Value::Unknown | Value::Null) | ("AnyType", _) => None,
        ("UnionType", _) => {
            let elements: Vec<Ty> = n["elements"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| ty.follow(e))
                .collect();
            if elements.iter().any(|e| mismatch(v, e).is_none()) {
                None
            } else {
                Some(format!(
                    "{} is not an allowed value ({})",
                    show(v),
                    ty.describe()
                ))
            }
        }
        ("StringLiteralType", Value::Str(s)) => (n["value"].as_str() != Some(s))
            .then(|| format!("{} is not an allowed value ({})", show(v), ty.describe())),
        ("StringLiteralType", Value::AnyStr) => None,
        ("StringType", Value::Str(s)) => {
            let len = s.chars().count() as u64;
            match (n["minLength"].as_u64(), n["maxLength"].as_u64()) {
                (Some(min), _) if len < min => Some(format!("{} is shorter than {min}", show(v))),
                (_, Some(max)) if len > max => Some(format!("{} is longer than {max}", show(v))),
                _ => None,
            }
        }
        ("StringType", Value::AnyStr) => None,
        ("IntegerType", Value::Int(i)) => match (n["minValue"].as_i64(), n["maxValue"].as_i64()) {
            (Some(min), _) if *i < min => Some(format!("{i} is below the minimum {min}")),
            (_, Some(max)) if *i > max => Some(format!("{i} is above the maximum {max}")),
            _ => None,
        },
        ("IntegerType", Value::AnyInt) | ("BooleanType", Value::Bool(_) | Value::AnyBool) => None,
        ("ArrayType", Value::AnyArray)
        | ("ObjectType" | "DiscriminatedObjectType", Value::AnyObject) => None,
        _ => Some(format!("{} where the type is {}", show(v), ty.describe())),
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::Str(s) => format!("'{s}'"),
        Value::Int(i) => i.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::AnyStr => "a string".into(),
        Value::AnyInt => "an int".into(),
        Value::AnyBool => "a bool".into(),
        Value::AnyArray => "an array".into(),
        Value::AnyObject => "an object".into(),
        Value::Null | Value::Unknown => "a value".into(),
    }
}

/// " (did you mean `x`?)" for the closest property name, when one is close.
fn nearest<'a>(key: &str, names: impl Iterator<Item = &'a String>) -> String {
    let dist = |a: &str, b: &str| -> usize {
        let (a, b): (Vec<char>, Vec<char>) = (
            a.to_lowercase().chars().collect(),
            b.to_lowercase().chars().collect(),
        );
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for i in 1..=a.len() {
            let mut cur = vec![i; b.len() + 1];
            for j in 1..=b.len() {
                cur[j] = (prev[j] + 1)
                    .min(cur[j - 1] + 1)
                    .min(prev[j - 1] + usize::from(a[i - 1] != b[j - 1]));
            }
            prev = cur;
        }
        prev[b.len()]
    };
    names
        .map(|n| (dist(key, n), n))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, n)| format!(" (did you mean `{n}`?)"))
        .unwrap_or_default()
}

/// `base`'s directory joined with `rel`, normalised ("modules/../x" -> "x").
fn join(base: &str, rel: &str) -> String {
    let mut parts: Vec<&str> = base.split('/').collect();
    parts.pop();
    for p in rel.split('/') {
        match p {
            "." | "" => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// Resource types Azure has no ARM type for, which a template may still name as an `existing`
/// role-assignment scope (ARM only builds their id): `(type, source)`.
pub const SCOPE_ONLY_TYPES: &[(&str, &str)] = &[(
    "Microsoft.KeyVault/vaults/certificates",
    "Key Vault RBAC accepts certificate-scope role assignments (Key Vault RBAC guide, \"Key vault secret, certificate, key scope role assignments\"), and the Bicep team's answer for scoping one is an existing vaults/certificates resource (Azure/bicep#5630); its type data is missing (Azure/bicep#7354), so only its id may be used",
)];

/// The source that allows `target` as a scope-only type.
fn scope_only(target: &str) -> Option<&'static str> {
    let ty = target.split('@').next().unwrap_or(target);
    SCOPE_ONLY_TYPES
        .iter()
        .find(|(t, _)| t.eq_ignore_ascii_case(ty))
        .map(|(_, source)| *source)
}

/// A scope-only declaration names `parent` and `name` only, and the file uses its symbol only
/// as a `scope:` or through `.id`: nothing of it is read at deployment.
fn scope_only_uses(f: &BicepFile, r: Node, out: &mut Vec<String>) {
    let sym = f.decl_name(r);
    let body = f.text_of(r);
    let keys_ok = body
        .lines()
        .skip(1)
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != "}")
        .all(|l| l.starts_with("parent:") || l.starts_with("name:"));
    if !keys_ok {
        out.push(format!(
            "{}: `{sym}` has no type data: only `parent` and `name` may be given",
            f.at(r)
        ));
    }
    let text = &f.text;
    for (i, _) in text.match_indices(&format!("{sym}.")) {
        let before = text[..i].chars().last();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &text[i + sym.len() + 1..];
        let id_only = rest.starts_with("id")
            && !rest[2..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
        if !id_only {
            out.push(format!(
                "{}: `{sym}` has no type data: use it only as a scope or through `.id`",
                f.at(r)
            ));
        }
    }
}
