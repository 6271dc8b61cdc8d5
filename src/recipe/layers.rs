//! `layers:` — a non-empty list of named layers, each a non-empty list of ops; it may be
//! left out when `packages:` or `base:` gives the image its content. An op
//! is a mapping with exactly one op key (`extract`, `copy`, `dir`, `file`, `symlink`,
//! `remove`) plus the keys that op takes; sources named by ops must exist and be of
//! the right kind.

use super::context::{span_of, Cx, Unique};
use super::model::{ImagePath, LayerSpec, Mode, Op, OpKind, Owner, SourceKind, SourceSpec, Span};
use super::raw::{RawLayer, RawOp, Text};
use super::values::{self, did_you_mean, item_name, list};
use super::Diagnostic;
use serde_saphyr::Spanned;
use std::collections::BTreeMap;

const OP_KEYS: [&str; 6] = ["extract", "copy", "dir", "file", "symlink", "remove"];

/// The keys each op takes, its op key first.
fn keys_of(op: &str) -> &'static [&'static str] {
    match op {
        "extract" => &["extract", "to", "owner"],
        "copy" => &["copy", "to", "mode", "owner"],
        "dir" => &["dir", "mode", "owner"],
        "file" => &["file", "content", "mode", "owner"],
        "symlink" => &["symlink", "target", "owner"],
        _ => &["remove"],
    }
}

/// `content_elsewhere`: `packages:` or `base:` gives the image content, and `layers:` may
/// be left out.
pub(super) fn parse(
    cx: &Cx,
    raw: Option<Spanned<Vec<Spanned<RawLayer>>>>,
    recipe_at: Span,
    sources: &BTreeMap<String, SourceSpec>,
    content_elsewhere: bool,
) -> Result<Vec<LayerSpec>, Diagnostic> {
    if raw.is_none() && content_elsewhere {
        return Ok(Vec::new());
    }
    let raw = cx.require(
        raw,
        recipe_at,
        "the recipe has no `layers`, `packages` or `base`: the image would be empty",
        "add `layers:` with at least one layer, e.g. `- name: base` with `contents:` below it, or `packages:`, or `base:`",
    )?;
    if raw.value.is_empty() {
        return Err(cx
            .error(span_of(&raw), "`layers` is empty")
            .with_hint("add at least one layer: `- name: base` with `contents:` below it"));
    }
    let mut names = Unique::new("layer name");
    let mut layers = Vec::with_capacity(raw.value.len());
    for layer in raw.value {
        let at = span_of(&layer);
        let name = cx.require(
            layer.value.name,
            at,
            "layer has no `name`",
            "give each layer a unique `name:`, e.g. `name: base`",
        )?;
        cx.check(&name, |n| item_name("layer", n))?;
        names.insert(cx, name.value.clone(), span_of(&name))?;
        let contents = cx.require(
            layer.value.contents,
            at,
            format!("layer `{}` has no `contents`", name.value),
            "add `contents:` with a list of ops, e.g. `- copy: app` and `to: /usr/bin/app`",
        )?;
        if contents.value.is_empty() {
            return Err(cx
                .error(
                    span_of(&contents),
                    format!("layer `{}` has empty `contents`", name.value),
                )
                .with_hint("every layer needs at least one op; remove the layer or add an op"));
        }
        let contents = contents
            .value
            .into_iter()
            .map(|op| parse_op(cx, op, sources))
            .collect::<Result<_, _>>()?;
        let compression = layer
            .value
            .compression
            .map(|c| cx.check(&c, |c| values::compression(c)))
            .transpose()?;
        layers.push(LayerSpec {
            name: name.value,
            contents,
            compression,
            span: at,
        });
    }
    Ok(layers)
}

fn parse_op(
    cx: &Cx,
    raw: Spanned<RawOp>,
    sources: &BTreeMap<String, SourceSpec>,
) -> Result<Op, Diagnostic> {
    let at = span_of(&raw);
    let entries = raw.value.0;
    let (op, subject) = op_key(cx, &entries, at)?;
    let allowed = keys_of(op);
    let mut fields = OpFields::default();
    for (key, value) in entries {
        if key.value == op {
            continue;
        }
        if !allowed.contains(&key.value.as_str()) {
            return Err(foreign_key(cx, op, &key));
        }
        let slot = match key.value.as_str() {
            "to" => &mut fields.to,
            "mode" => &mut fields.mode,
            "owner" => &mut fields.owner,
            "content" => &mut fields.content,
            // `target`: the last key any op takes (checked against `allowed` above).
            _ => &mut fields.target,
        };
        *slot = Some(value);
    }
    let kind = match op {
        "extract" => OpKind::Extract {
            source: source_of(cx, &subject, SourceKind::Archive, sources)?,
            to: match &fields.to {
                Some(to) => cx.check(to, |t| values::image_path("to", t))?,
                None => ImagePath::root(),
            },
            owner: fields.owner(cx)?,
        },
        "copy" => {
            let source = source_of(cx, &subject, SourceKind::Path, sources)?;
            let to = cx.require(
                fields.to.as_ref(),
                at,
                format!("`copy: {}` has no `to`", subject.value),
                "add `to:` with the path in the image, e.g. `to: /usr/bin/hello` (a trailing `/` copies into that directory)",
            )?;
            OpKind::Copy {
                source,
                into_dir: to.value.ends_with('/'),
                to: cx.check(to, |t| values::image_path("to", t))?,
                mode: fields.mode(cx)?,
                owner: fields.owner(cx)?,
            }
        }
        "dir" => OpKind::Dir {
            path: below_root(cx, op, &subject)?,
            mode: fields.mode(cx)?,
            owner: fields.owner(cx)?,
        },
        "file" => OpKind::File {
            path: below_root(cx, op, &subject)?,
            content: cx
                .require(
                    fields.content.take(),
                    at,
                    format!("`file: {}` has no `content`", subject.value),
                    "add `content:` with the file's text; use `content: \"\"` for an empty file",
                )?
                .value,
            mode: fields.mode(cx)?,
            owner: fields.owner(cx)?,
        },
        "symlink" => OpKind::Symlink {
            path: below_root(cx, op, &subject)?,
            target: symlink_target(cx, fields.target.take(), &subject, at)?,
            owner: fields.owner(cx)?,
        },
        _ => OpKind::Remove {
            path: below_root(cx, op, &subject)?,
        },
    };
    Ok(Op { kind, span: at })
}

/// The op's one op key and its value.
fn op_key(cx: &Cx, entries: &[(Text, Text)], at: Span) -> Result<(&'static str, Text), Diagnostic> {
    let mut found = entries.iter().filter_map(|(key, value)| {
        let op = OP_KEYS.iter().find(|op| **op == key.value)?;
        Some((*op, key, value))
    });
    let Some((op, _, subject)) = found.next() else {
        let typo = entries
            .iter()
            .find_map(|(key, _)| Some((key, did_you_mean(&key.value, OP_KEYS)?)));
        let diagnostic = cx.error(
            typo.map_or(at, |(key, _)| span_of(key)),
            format!("this op has no op key, expected one of {}", list(OP_KEYS)),
        );
        return Err(match typo {
            Some((key, op)) => {
                diagnostic.with_hint(format!("`{}`: did you mean `{op}`?", key.value))
            }
            None => diagnostic
                .with_hint("start each op with what it does, e.g. `- copy: app` or `- dir: /tmp`"),
        });
    };
    if let Some((second, key, _)) = found.next() {
        return Err(cx
            .error(
                span_of(key),
                format!("this op has two op keys, `{op}` and `{second}`; an op does one thing"),
            )
            .with_hint(format!(
                "start a new list item for the second op: `- {second}: ...`"
            )));
    }
    Ok((op, subject.clone()))
}

/// A key that the op does not take: either another op's key or an unknown one.
fn foreign_key(cx: &Cx, op: &str, key: &Text) -> Diagnostic {
    let allowed = keys_of(op);
    let users: Vec<&str> = OP_KEYS
        .into_iter()
        .filter(|other| keys_of(other)[1..].contains(&key.value.as_str()))
        .collect();
    let at = span_of(key);
    if users.is_empty() {
        let diagnostic = cx.error(
            at,
            format!(
                "unknown key `{}` in a `{op}` op, expected one of {}",
                key.value,
                list(allowed.iter().copied())
            ),
        );
        match did_you_mean(&key.value, allowed.iter().copied()) {
            Some(close) => diagnostic.with_hint(format!("did you mean `{close}`?")),
            None => diagnostic.with_hint(format!("remove `{}`", key.value)),
        }
    } else {
        cx.error(
            at,
            format!(
                "`{}` does not belong to a `{op}` op, which takes {}",
                key.value,
                list(allowed.iter().copied())
            ),
        )
        .with_hint(format!(
            "`{}` is used by {} ops; remove it here",
            key.value,
            list(users)
        ))
    }
}

#[derive(Default)]
struct OpFields {
    to: Option<Text>,
    mode: Option<Text>,
    owner: Option<Text>,
    content: Option<Text>,
    target: Option<Text>,
}

impl OpFields {
    fn mode(&self, cx: &Cx) -> Result<Option<Mode>, Diagnostic> {
        self.mode
            .as_ref()
            .map(|m| cx.check(m, |text| values::mode(text, cx.is_quoted(m))))
            .transpose()
    }

    fn owner(&self, cx: &Cx) -> Result<Option<Owner>, Diagnostic> {
        self.owner
            .as_ref()
            .map(|o| cx.check(o, |text| values::owner(text)))
            .transpose()
    }
}

/// The source an `extract` or `copy` names, which must exist and be of `kind`.
fn source_of(
    cx: &Cx,
    name: &Text,
    kind: SourceKind,
    sources: &BTreeMap<String, SourceSpec>,
) -> Result<String, Diagnostic> {
    let (op, other_op, kind_key) = match kind {
        SourceKind::Archive => ("extract", "copy", "archive"),
        SourceKind::Path => ("copy", "extract", "path"),
    };
    let Some(source) = sources.get(&name.value) else {
        let defined = if sources.is_empty() {
            "no sources are defined".to_string()
        } else {
            let names = list(sources.keys().map(String::as_str));
            format!("defined sources: {names}")
        };
        let hint = match did_you_mean(&name.value, sources.keys().map(String::as_str)) {
            Some(close) => format!("did you mean `{close}`?"),
            None => format!(
                "define it under `sources:`, e.g. `{}: {{ {kind_key}: <path relative to the recipe> }}`",
                name.value
            ),
        };
        return Err(cx
            .error(
                span_of(name),
                format!(
                    "`{op}` names source `{}`, which is not defined ({defined})",
                    name.value
                ),
            )
            .with_hint(hint));
    };
    if source.kind != kind {
        let (wanted, found, instead) = match kind {
            SourceKind::Archive => (
                "an `archive:` source",
                "a `path:` source",
                "to place the file or directory, write",
            ),
            SourceKind::Path => (
                "a `path:` source",
                "an `archive:` source",
                "to unpack the archive, write",
            ),
        };
        return Err(cx
            .error(
                span_of(name),
                format!(
                    "`{op}` needs {wanted}, but `{}` is {found} (defined on line {})",
                    name.value, source.span.line
                ),
            )
            .with_hint(format!("{instead} `{other_op}: {}` instead", name.value)));
    }
    Ok(source.name.clone())
}

/// The path a `dir`, `file`, `symlink` or `remove` op acts on, which cannot be `/`.
fn below_root(cx: &Cx, op: &str, path: &Text) -> Result<ImagePath, Diagnostic> {
    let parsed = cx.check(path, |p| values::image_path(op, p))?;
    if parsed.is_root() {
        let (message, hint) = match op {
            "remove" => (
                "`remove: /` would remove the image root".to_string(),
                "name the path to remove, e.g. `remove: /etc/old.conf`".to_string(),
            ),
            "dir" => (
                "`dir: /` names the image root, which always exists".to_string(),
                "name a directory below `/`, e.g. `dir: /tmp`".to_string(),
            ),
            _ => (
                format!("`{op}: /` names the image root, which is always a directory"),
                format!("name a path below `/`, e.g. `{op}: /etc/motd`"),
            ),
        };
        return Err(cx.error(span_of(path), message).with_hint(hint));
    }
    Ok(parsed)
}

fn symlink_target(
    cx: &Cx,
    target: Option<Text>,
    link: &Text,
    at: Span,
) -> Result<String, Diagnostic> {
    let target = cx.require(
        target,
        at,
        format!("`symlink: {}` has no `target`", link.value),
        "add `target:` with what the link points to, e.g. `target: /usr/bin/hello`",
    )?;
    if target.value.is_empty() || target.value.contains('\0') {
        return Err(cx
            .error(
                span_of(&target),
                "symlink `target` is empty or contains NUL",
            )
            .with_hint("write the path the link points to (absolute or relative to the link)"));
    }
    Ok(target.value)
}
