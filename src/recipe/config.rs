//! `config:` — the OCI image config fields a recipe sets, checked and normalised:
//! `user` resolved to numbers (or left for the image's accounts), ports as sorted `N/proto`, volumes as sorted absolute
//! paths.

use super::accounts::resolve_user;
use super::context::{non_empty_key, string_map, Cx};
use super::model::{Accounts, ConfigSpec};
use super::raw::{RawConfig, Text};
use super::values;
use super::Diagnostic;

/// `accounts_elsewhere`: packages or a base image may define users beyond `accounts:`.
pub(super) fn parse(
    cx: &Cx,
    raw: Option<RawConfig>,
    accounts: Option<&Accounts>,
    accounts_elsewhere: bool,
) -> Result<ConfigSpec, Diagnostic> {
    let Some(raw) = raw else {
        return Ok(ConfigSpec::default());
    };
    let env = string_map(cx, raw.env, values::env_name)?;
    let workdir = raw
        .workdir
        .map(|w| cx.check(&w, |p| values::image_path("workdir", p)))
        .transpose()?
        .map(|p| p.to_string());
    let user = raw
        .user
        .map(|user| resolve_user(cx, &user, accounts, accounts_elsewhere))
        .transpose()?;
    let labels = string_map(cx, raw.labels, non_empty_key("label"))?;
    let ports = raw
        .exposed_ports
        .unwrap_or_default()
        .iter()
        .map(|port| cx.check(port, |p| values::port(p)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut volumes = raw
        .volumes
        .unwrap_or_default()
        .iter()
        .map(|v| {
            cx.check(v, |p| values::image_path("volumes", p))
                .map(|p| p.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    volumes.sort_unstable();
    volumes.dedup();
    let stop_signal = raw
        .stop_signal
        .map(|s| {
            cx.check(&s, |sig| values::stop_signal(sig))
                .map(|()| s.value)
        })
        .transpose()?;
    Ok(ConfigSpec {
        entrypoint: raw.entrypoint.map(strings),
        cmd: raw.cmd.map(strings),
        env,
        workdir,
        user,
        labels,
        exposed_ports: values::normalise_ports(ports),
        volumes,
        stop_signal,
    })
}

fn strings(list: Vec<Text>) -> Vec<String> {
    list.into_iter().map(|s| s.value).collect()
}
