//! YAML -> spanned raw recipe ([`super::raw`]) -> validated [`Recipe`], one section
//! at a time. The first problem found is returned as a [`Diagnostic`] at the
//! offending value, with a hint.

use super::context::{non_empty_key, span_of, string_map, Cx};
use super::model::{Platform, Span};
use super::raw::{RawRecipe, Text};
use super::values::{self, Invalid};
use super::{accounts, base, config, layers, limits, packages, sources, vm, yaml_error};
use super::{Diagnostic, Recipe, RecipeFile};
use serde_saphyr::Spanned;
use std::path::{Path, PathBuf};

/// The only schema this cairn reads (`cairn: 1`).
pub const SCHEMA_VERSION: &str = "1";

/// Reads and validates the recipe at `path`. I/O errors become a diagnostic at 0:0.
pub fn load(path: &Path) -> Result<Recipe, Diagnostic> {
    match std::fs::read(path) {
        Ok(bytes) => parse_bytes(path, bytes),
        Err(err) => {
            let file = recipe_file(path, String::new());
            Err(Diagnostic::new(
                &file,
                Span::default(),
                format!("cannot read recipe `{}`: {err}", path.display()),
            )
            .with_hint("check the path; a recipe is a UTF-8 YAML file"))
        }
    }
}

/// Validates the recipe `bytes` read from `path`. Bytes that are not UTF-8 are reported
/// at the line and column of the first invalid byte (the column counts the characters
/// before it, plus one).
pub fn parse_bytes(path: &Path, bytes: Vec<u8>) -> Result<Recipe, Diagnostic> {
    match String::from_utf8(bytes) {
        Ok(text) => parse(recipe_file(path, text)),
        Err(err) => {
            let bytes = err.as_bytes();
            let valid = &bytes[..err.utf8_error().valid_up_to()];
            let line_start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
            let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
            let before = std::str::from_utf8(&valid[line_start..]).map_or(0, |s| s.chars().count());
            // The snippet shows the line up to the bad byte (the rest may not be text).
            let shown = String::from_utf8_lossy(&bytes[..line_start]).into_owned()
                + std::str::from_utf8(&valid[line_start..]).unwrap_or_default();
            let at = Span {
                line: u32::try_from(line).unwrap_or(u32::MAX),
                column: u32::try_from(before + 1).unwrap_or(u32::MAX),
            };
            Err(Diagnostic::new(
                &recipe_file(path, shown),
                at,
                format!(
                    "recipe `{}` is not UTF-8: byte 0x{:02x} at line {}, column {} is not valid",
                    path.display(),
                    bytes[valid.len()],
                    at.line,
                    at.column
                ),
            )
            .with_hint("save the recipe as UTF-8 text (a recipe is a UTF-8 YAML file)"))
        }
    }
}

/// The recipe file at `path` holding `text`; source paths are relative to its directory.
fn recipe_file(path: &Path, text: String) -> RecipeFile {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    RecipeFile {
        path: path.to_path_buf(),
        dir,
        text,
    }
}

/// Parses and validates recipe text.
pub fn parse(file: RecipeFile) -> Result<Recipe, Diagnostic> {
    let cx = Cx::new(&file);
    let Some(raw) = read(&file)? else {
        return Err(cx
            .error(Span { line: 1, column: 1 }, "the recipe is empty")
            .with_hint(format!(
                "a recipe starts with `cairn: {SCHEMA_VERSION}`, then `name:` and `layers:`"
            )));
    };
    // Fields missing from the recipe are reported at its first key.
    let recipe_at = span_of(&raw);
    let raw = raw.value;
    schema(&cx, raw.cairn, recipe_at)?;
    let name = cx.require(
        raw.name,
        recipe_at,
        "the recipe has no `name`",
        "add the image name, e.g. `name: hello`",
    )?;
    cx.check(&name, |n| values::image_name(n))?;
    let (platforms, multi_platform) = platforms(&cx, raw.platform, raw.platforms)?;
    let base = base::parse(&cx, raw.base)?;
    let sources = sources::parse(&cx, raw.sources)?;
    let content_elsewhere = base.is_some() || raw.packages.is_some();
    let layers = layers::parse(&cx, raw.layers, recipe_at, &sources, content_elsewhere)?;
    let accounts = accounts::parse(&cx, raw.accounts)?;
    let config = config::parse(&cx, raw.config, accounts.as_ref(), content_elsewhere)?;
    let annotations = string_map(&cx, raw.annotations, non_empty_key("annotation"))?;
    let compression = match raw.compression {
        Some(c) => cx.check(&c, |c| values::compression(c))?,
        None => Default::default(),
    };
    let vm = vm::parse(&cx, raw.vm, &sources)?;
    let limits = limits::parse(&cx, raw.limits)?;
    if let Some(vm) = &vm {
        if multi_platform {
            return Err(cx
                .error(vm.span, "`vm:` builds one disk, for one platform, but the recipe lists `platforms`")
                .with_hint("build the disk from a recipe with a single `platform:` (x86-64 kernels boot `linux/amd64`)"));
        }
        if base.is_some() {
            return Err(cx
                .error(vm.span, "`vm:` cannot be combined with `base:` yet: the disk's root file system is built from the recipe's own layers")
                .with_hint("drop `base:` from the VM recipe and bring the files in as sources"));
        }
    }
    let packages = packages::parse(
        &cx,
        packages::RawPackageFields {
            repositories: raw.repositories,
            packages: raw.packages,
            layering: raw.layering,
            path_filters: raw.path_filters,
            extra_ca_certificates: raw.extra_ca_certificates,
            dpkg_database: raw.dpkg_database,
        },
        &sources,
    )?;
    Ok(Recipe {
        name: name.value,
        epoch: raw.epoch.map(|e| e.value),
        platform: platforms[0].clone(),
        platforms,
        multi_platform,
        base,
        sources,
        layers,
        accounts,
        config,
        annotations,
        sbom: raw.sbom.is_none_or(|s| s.value),
        compression,
        vm,
        packages,
        limits,
        file,
    })
}

/// The YAML document as raw recipe types; `None` for a document without content.
fn read(file: &RecipeFile) -> Result<Option<Spanned<RawRecipe>>, Diagnostic> {
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    serde_saphyr::from_str_with_options(&file.text, options)
        .map_err(|err| yaml_error::diagnostic(file, &err))
}

/// `platform: os/arch` or `platforms: [os/arch, ...]` (not both); the platforms and
/// whether the recipe asked for several.
fn platforms(
    cx: &Cx,
    platform: Option<Text>,
    platforms: Option<Spanned<Vec<Text>>>,
) -> Result<(Vec<Platform>, bool), Diagnostic> {
    match (platform, platforms) {
        (Some(_), Some(list)) => Err(cx
            .error(span_of(&list), "the recipe has both `platform` and `platforms`")
            .with_hint("use `platform: linux/amd64` for one image, or `platforms: [linux/amd64, linux/arm64]` for an image index over several")),
        (Some(p), None) => Ok((vec![cx.check(&p, |p| values::platform(p))?], false)),
        (None, None) => Ok((vec![default_platform()], false)),
        (None, Some(list)) => {
            if list.value.is_empty() {
                return Err(cx
                    .error(span_of(&list), "`platforms` is empty")
                    .with_hint("list at least one platform, e.g. `platforms: [linux/amd64, linux/arm64]`"));
            }
            let mut out: Vec<Platform> = Vec::new();
            for p in &list.value {
                let platform = cx.check(p, |p| values::platform(p))?;
                if out.contains(&platform) {
                    return Err(cx
                        .error(span_of(p), format!("platform `{platform}` is listed twice"))
                        .with_hint("list each platform once"));
                }
                out.push(platform);
            }
            Ok((out, true))
        }
    }
}

/// The default platform is fixed, never the host's, so that a recipe means the
/// same image everywhere.
fn default_platform() -> Platform {
    Platform {
        os: "linux".to_string(),
        architecture: "amd64".to_string(),
        variant: None,
    }
}

fn schema(cx: &Cx, cairn: Option<Text>, recipe_at: Span) -> Result<(), Diagnostic> {
    let cairn = cx.require(
        cairn,
        recipe_at,
        "the recipe does not say which schema it is written for: `cairn` is missing",
        format!("add `cairn: {SCHEMA_VERSION}` as the first line"),
    )?;
    cx.check(&cairn, |version| {
        if version == SCHEMA_VERSION {
            Ok(())
        } else {
            Err(Invalid::new(format!(
                "unsupported schema `cairn: {version}`: this cairn reads schema {SCHEMA_VERSION}"
            ))
            .with_hint(format!(
                "write `cairn: {SCHEMA_VERSION}` and follow schema {SCHEMA_VERSION}, or use a cairn release that reads schema {version}"
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::{ConfigUser, ImagePath, Mode, OpKind, Owner, SourceKind};

    fn parse_text(text: &str) -> Result<Recipe, Diagnostic> {
        parse(RecipeFile {
            path: "recipe.yaml".into(),
            dir: ".".into(),
            text: text.to_string(),
        })
    }

    fn path(p: &str) -> ImagePath {
        ImagePath::parse(p).unwrap()
    }

    const DIGEST: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn every_field_of_the_full_example_lands_in_the_model() {
        let text = format!(
            r#"cairn: 1
name: hello
epoch: 1700000000
platform: linux/arm64/v8
sources:
  app:    {{ path: app/hello.sh, sha256: {DIGEST} }}
  site:   {{ path: site/ }}
  tools:  {{ archive: vendor/tools.tar.gz, sha256: "sha256:{DIGEST}" }}
layers:
  - name: base
    contents:
      - extract: tools
        to: /
      - extract: tools
        to: /opt/tools
        owner: 0:0
      - copy: app
        to: /usr/bin/hello
        mode: 0o755
        owner: 65532:65532
      - copy: site
        to: /srv/www/
      - dir: /tmp
        mode: 0o1777
      - file: /etc/motd
        content: "hello\n"
        mode: "0644"
      - symlink: /bin/hi
        target: ../usr/bin/hello
  - name: cleanup
    contents:
      - remove: /etc/old
accounts:
  groups: [{{ name: app, gid: 65532, members: [app] }}]
  users:
    - {{ name: app, uid: 65532, gid: 65532, home: /home/app, shell: /bin/sh, gecos: "App user" }}
    - {{ name: root, uid: 0, gid: 0 }}
config:
  entrypoint: [/usr/bin/hello]
  cmd: []
  env: {{ PATH: /usr/bin:/bin }}
  workdir: /srv/
  user: app
  labels: {{ org.example.team: web }}
  exposed_ports: [8080/tcp, 53/udp, 8080]
  volumes: [/data, /cache, /data/]
  stop_signal: SIGTERM
annotations: {{ org.opencontainers.image.title: hello }}
"#
        );
        let recipe = parse_text(&text).unwrap();
        assert_eq!(recipe.name, "hello");
        assert_eq!(recipe.epoch, Some(1_700_000_000));
        assert_eq!(
            recipe.platform,
            Platform {
                os: "linux".into(),
                architecture: "arm64".into(),
                variant: Some("v8".into())
            }
        );

        let digest = DIGEST.parse().unwrap();
        let names: Vec<&str> = recipe.sources.keys().map(String::as_str).collect();
        assert_eq!(names, ["app", "site", "tools"]);
        let app = &recipe.sources["app"];
        assert_eq!(
            (app.kind, app.path.as_str(), app.sha256),
            (SourceKind::Path, "app/hello.sh", Some(digest))
        );
        assert_eq!(app.span, Span { line: 6, column: 3 });
        let site = &recipe.sources["site"];
        assert_eq!(
            (site.kind, site.path.as_str(), site.sha256),
            (SourceKind::Path, "site/", None)
        );
        let tools = &recipe.sources["tools"];
        assert_eq!(
            (tools.kind, tools.sha256),
            (SourceKind::Archive, Some(digest))
        );

        assert_eq!(recipe.layers.len(), 2);
        let base = &recipe.layers[0];
        assert_eq!(
            (base.name.as_str(), base.span),
            (
                "base",
                Span {
                    line: 10,
                    column: 5
                }
            )
        );
        let ops: Vec<&OpKind> = base.contents.iter().map(|op| &op.kind).collect();
        assert_eq!(
            ops,
            [
                &OpKind::Extract {
                    source: "tools".into(),
                    to: ImagePath::root(),
                    owner: None
                },
                &OpKind::Extract {
                    source: "tools".into(),
                    to: path("/opt/tools"),
                    owner: Some(Owner::ROOT)
                },
                &OpKind::Copy {
                    source: "app".into(),
                    to: path("/usr/bin/hello"),
                    into_dir: false,
                    mode: Some(Mode(0o755)),
                    owner: Some(Owner {
                        uid: 65532,
                        gid: 65532
                    }),
                },
                &OpKind::Copy {
                    source: "site".into(),
                    to: path("/srv/www"),
                    into_dir: true,
                    mode: None,
                    owner: None
                },
                &OpKind::Dir {
                    path: path("/tmp"),
                    mode: Some(Mode(0o1777)),
                    owner: None
                },
                &OpKind::File {
                    path: path("/etc/motd"),
                    content: "hello\n".into(),
                    mode: Some(Mode(0o644)),
                    owner: None
                },
                &OpKind::Symlink {
                    path: path("/bin/hi"),
                    target: "../usr/bin/hello".into(),
                    owner: None
                },
            ]
        );
        assert_eq!(
            base.contents[0].span,
            Span {
                line: 12,
                column: 9
            }
        );
        assert_eq!(
            base.contents[2].span,
            Span {
                line: 17,
                column: 9
            }
        );
        assert_eq!(
            recipe.layers[1].contents[0].kind,
            OpKind::Remove {
                path: path("/etc/old")
            }
        );

        let accounts = recipe.accounts.as_ref().unwrap();
        assert_eq!(accounts.groups.len(), 1);
        assert_eq!(accounts.groups[0].members, ["app"]);
        let app_user = &accounts.users[0];
        assert_eq!(
            (
                app_user.uid,
                app_user.gid,
                app_user.home.as_str(),
                app_user.shell.as_str(),
                app_user.gecos.as_str()
            ),
            (65532, 65532, "/home/app", "/bin/sh", "App user")
        );
        let root = &accounts.users[1];
        assert_eq!(
            (root.home.as_str(), root.shell.as_str(), root.gecos.as_str()),
            ("/root", "/sbin/nologin", "")
        );

        let config = &recipe.config;
        assert_eq!(
            config.entrypoint.as_deref(),
            Some(&["/usr/bin/hello".to_string()][..])
        );
        assert_eq!(config.cmd.as_deref(), Some(&[][..]));
        assert_eq!(config.env["PATH"], "/usr/bin:/bin");
        assert_eq!(config.workdir.as_deref(), Some("/srv"));
        assert_eq!(config.user, Some(ConfigUser::Ids("65532:65532".into())));
        assert_eq!(config.labels["org.example.team"], "web");
        assert_eq!(config.exposed_ports, ["53/udp", "8080/tcp"]);
        assert_eq!(config.volumes, ["/cache", "/data"]);
        assert_eq!(config.stop_signal.as_deref(), Some("SIGTERM"));
        assert_eq!(
            recipe.annotations["org.opencontainers.image.title"],
            "hello"
        );
    }

    #[test]
    fn a_minimal_recipe_gets_the_documented_defaults() {
        let recipe =
            parse_text("cairn: 1\nname: x\nlayers:\n  - name: l\n    contents:\n      - dir: /d\n")
                .unwrap();
        assert_eq!(recipe.platform, default_platform());
        assert_eq!(recipe.epoch, None);
        assert!(recipe.sources.is_empty());
        assert!(recipe.accounts.is_none());
        assert_eq!(recipe.config, Default::default());
        assert!(recipe.annotations.is_empty());
    }

    #[test]
    fn mode_spellings_in_a_recipe() {
        let with_mode = |mode: &str| {
            parse_text(&format!(
                "cairn: 1\nname: x\nlayers:\n  - name: l\n    contents:\n      - dir: /d\n        mode: {mode}\n"
            ))
            .map(|mut r| r.layers.remove(0).contents)
        };
        for (written, expected) in [
            ("0o755", 0o755),
            ("\"0755\"", 0o755),
            ("'755'", 0o755),
            ("\"0o4755\"", 0o4755),
            ("!!str 0755", 0o755),
            ("&m '0700'\n      - dir: /e\n        mode: *m", 0o700),
        ] {
            for op in with_mode(written).unwrap() {
                match op.kind {
                    OpKind::Dir { mode, .. } => assert_eq!(mode, Some(Mode(expected)), "{written}"),
                    other => panic!("{other:?}"),
                }
            }
        }
        for written in ["755", "493", "0755"] {
            let err = with_mode(written).unwrap_err();
            assert_eq!(
                err.span,
                Span {
                    line: 7,
                    column: 15
                },
                "{written}"
            );
            assert_eq!(
                err.hint.as_deref(),
                Some("write 0o755 (YAML octal) or \"0755\""),
                "{written}"
            );
        }
    }

    fn with_user(user: &str) -> Result<Option<String>, Diagnostic> {
        parse_text(&format!(
            "cairn: 1\nname: x\nlayers: [{{ name: l, contents: [{{ dir: /d }}] }}]\naccounts:\n  groups: [{{ name: web, gid: 101 }}]\n  users: [{{ name: web, uid: 100, gid: 101 }}]\nconfig:\n  user: {user}\n"
        ))
        .map(|r| match r.config.user {
            Some(ConfigUser::Ids(ids)) => Some(ids),
            other => panic!("{other:?}"),
        })
    }

    #[test]
    fn a_user_name_outside_accounts_waits_for_the_packages_and_the_base() {
        let recipe = parse_text(
            "cairn: 1\nname: x\nbase: { layout: images/base }\nconfig:\n  user: messagebus\n",
        );
        match recipe.map(|r| r.config.user) {
            Ok(Some(ConfigUser::Named { name, span })) => {
                assert_eq!(
                    (name.as_str(), span),
                    ("messagebus", Span { line: 5, column: 9 })
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn config_user_names_resolve_to_uid_and_gid() {
        assert_eq!(with_user("web").unwrap().as_deref(), Some("100:101"));
        assert_eq!(with_user("0").unwrap().as_deref(), Some("0"));
        assert_eq!(
            with_user("1000:1000").unwrap().as_deref(),
            Some("1000:1000")
        );
        let err = with_user("wbe").unwrap_err();
        assert!(err.message.contains("defined users: `web`"), "{err}");
        assert_eq!(err.hint.as_deref(), Some("did you mean `web`?"));
        assert_eq!(err.span, Span { line: 8, column: 9 });
        assert!(with_user("1000:web").is_err());
    }

    #[test]
    fn an_unreadable_file_names_the_path() {
        let err = load(Path::new("does/not/exist.yaml")).unwrap_err();
        assert_eq!(err.span, Span::default());
        assert!(err.message.contains("does/not/exist.yaml"), "{err}");
    }
}
