//! The addresses a runtime asks for: `CNI_ARGS IP=` (comma-separated),
//! `runtimeConfig.ips` (the `ips` capability) and `args.cni.ips` (the CNI conventions'
//! arguments in the configuration). podman 4.3 sends one address, of either
//! family (`--ip`, or `--ip6` alone), as `IP=`, and two (`--ip` with `--ip6`) only as
//! `runtimeConfig.ips` (`["10.77.0.50", "fd00:a4d::50"]`); the CNI conventions also
//! allow a prefix length (`10.77.0.50/24`). At most one address of each family.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{
    config::NetConf,
    error::{CniError, CniResult, code},
};

/// The addresses asked for, by family.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Asked {
    pub v4: Option<Ipv4Addr>,
    pub v6: Option<Ipv6Addr>,
}

fn invalid(msg: String) -> CniError {
    CniError::new(code::INVALID_CONFIG, msg)
}

/// Addresses, each `ADDR` or `ADDR/PREFIX`, at most one of each family; the error says
/// what is wrong with them.
pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Asked, String> {
    let mut asked = Asked::default();
    for entry in entries {
        let (addr, prefix) = entry.split_once('/').unwrap_or((entry, "0"));
        let ip: IpAddr = addr
            .parse()
            .ok()
            .filter(|ip: &IpAddr| {
                let most = if ip.is_ipv4() { 32 } else { 128 };
                prefix.parse::<u8>().is_ok_and(|p| p <= most)
            })
            .ok_or_else(|| format!("{entry:?} is not an IP address"))?;
        let twice = match ip {
            IpAddr::V4(a) => asked.v4.replace(a).is_some(),
            IpAddr::V6(a) => asked.v6.replace(a).is_some(),
        };
        if twice {
            return Err("a container has one address of each family".into());
        }
    }
    Ok(asked)
}

/// The configuration's addresses, `runtimeConfig.ips` (the `ips` capability) and
/// `args.cni.ips` (the CNI conventions' arguments), checked for form (whether the
/// network has room for them is `attach`'s to say), with where each family's came
/// from (IPv4's, IPv6's); none without either key. The two may not disagree.
pub fn asked(conf: &NetConf) -> CniResult<(Asked, [&'static str; 2])> {
    let from = |key: &'static str, value: Option<&serde_json::Value>| -> CniResult<Asked> {
        let Some(value) = value else {
            return Ok(Asked::default());
        };
        let entries: Vec<String> = serde_json::from_value(value.clone()).map_err(|e| {
            CniError::new(code::DECODING_FAILURE, format!("cannot decode {key}: {e}"))
        })?;
        parse(entries.iter().map(String::as_str))
            .map_err(|e| invalid(format!("{key} {entries:?}: {e}")))
    };
    const RUNTIME: &str = "runtimeConfig.ips";
    const ARGS: &str = "args.cni.ips";
    let in_runtime = from(RUNTIME, conf.runtime_config("ips"))?;
    let in_args = from(ARGS, conf.cni_arg("ips"))?;
    let asked = merge((&in_runtime, [RUNTIME; 2]), (&in_args, [ARGS; 2]))?;
    let source = |in_args_only: bool| if in_args_only { ARGS } else { RUNTIME };
    let sources = [
        source(in_runtime.v4.is_none() && in_args.v4.is_some()),
        source(in_runtime.v6.is_none() && in_args.v6.is_some()),
    ];
    Ok((asked, sources))
}

/// One set of addresses from two sources (say `CNI_ARGS IP=` and `runtimeConfig.ips`),
/// each with its name for each family (IPv4's, IPv6's), which must not disagree.
pub fn merge(
    (one, [one_v4, one_v6]): (&Asked, [&str; 2]),
    (two, [two_v4, two_v6]): (&Asked, [&str; 2]),
) -> CniResult<Asked> {
    let disagree = |one_is: &str, a: String, two_is: &str, b: String| {
        invalid(format!("{one_is} asks for {a}, {two_is} for {b}"))
    };
    if let (Some(a), Some(b)) = (one.v4, two.v4)
        && a != b
    {
        return Err(disagree(one_v4, a.to_string(), two_v4, b.to_string()));
    }
    if let (Some(a), Some(b)) = (one.v6, two.v6)
        && a != b
    {
        return Err(disagree(one_v6, a.to_string(), two_v6, b.to_string()));
    }
    Ok(Asked {
        v4: one.v4.or(two.v4),
        v6: one.v6.or(two.v6),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(ips: &str) -> NetConf {
        NetConf::parse(&format!(
            r#"{{"cniVersion":"1.0.0","name":"nl","runtimeConfig":{{"ips":{ips}}}}}"#
        ))
        .unwrap()
    }

    fn asked(conf: &NetConf) -> CniResult<Asked> {
        super::asked(conf).map(|(a, _)| a)
    }

    #[test]
    fn one_address_of_each_family() {
        assert_eq!(
            asked(&conf(r#"["10.77.0.50", "fd00:a4d::50/64"]"#)).unwrap(),
            Asked {
                v4: Some("10.77.0.50".parse().unwrap()),
                v6: Some("fd00:a4d::50".parse().unwrap()),
            }
        );
        assert_eq!(asked(&conf("[]")).unwrap(), Asked::default());
        let none = NetConf::parse(r#"{"cniVersion":"1.0.0","name":"nl"}"#).unwrap();
        assert_eq!(asked(&none).unwrap(), Asked::default());
        for (bad, code) in [
            (r#"["10.77.0.50", "10.77.0.51"]"#, code::INVALID_CONFIG),
            (r#"["nope"]"#, code::INVALID_CONFIG),
            (r#"["10.77.0.50/x"]"#, code::INVALID_CONFIG),
            (r#"["10.77.0.50/33"]"#, code::INVALID_CONFIG),
            (r#"["fd00:77::9/200"]"#, code::INVALID_CONFIG),
            (r#""10.77.0.50""#, code::DECODING_FAILURE),
        ] {
            assert_eq!(asked(&conf(bad)).unwrap_err().code, code, "{bad}");
        }
    }

    #[test]
    fn two_sources_agree_or_are_refused() {
        let env = parse("fd00:a4d::60".split(',')).unwrap();
        let conf = parse(["10.77.0.50"]).unwrap();
        assert_eq!(
            merge(
                (&conf, ["runtimeConfig.ips"; 2]),
                (&env, ["CNI_ARGS IP="; 2])
            )
            .unwrap(),
            Asked {
                v4: Some("10.77.0.50".parse().unwrap()),
                v6: Some("fd00:a4d::60".parse().unwrap()),
            }
        );
        let other = parse(["fd00:a4d::61"]).unwrap();
        let e = merge(
            (&other, ["runtimeConfig.ips"; 2]),
            (&env, ["CNI_ARGS IP="; 2]),
        )
        .unwrap_err();
        assert_eq!(e.code, code::INVALID_CONFIG);
        assert!(parse("10.0.0.1,10.0.0.2".split(',')).is_err());
    }

    #[test]
    fn the_conventions_args_ask_too() {
        let args = |json: &str| {
            NetConf::parse(&format!(r#"{{"cniVersion":"1.0.0","name":"nl",{json}}}"#)).unwrap()
        };
        let c = args(r#""args":{"cni":{"ips":["10.77.0.99"],"labels":[]}}"#);
        let (a, from) = super::asked(&c).unwrap();
        assert_eq!(
            (a.v4, from[0]),
            (Some("10.77.0.99".parse().unwrap()), "args.cni.ips")
        );
        let c =
            args(r#""args":{"cni":{"ips":["10.77.0.99"]}},"runtimeConfig":{"ips":["10.77.0.99"]}"#);
        assert_eq!(super::asked(&c).unwrap().1[0], "runtimeConfig.ips");
        // Each family's source of its own: IPv4's from runtimeConfig, IPv6's from args.
        let c =
            args(r#""args":{"cni":{"ips":["fd00::9"]}},"runtimeConfig":{"ips":["10.77.0.50"]}"#);
        assert_eq!(
            super::asked(&c).unwrap().1,
            ["runtimeConfig.ips", "args.cni.ips"]
        );
        let c =
            args(r#""args":{"cni":{"ips":["10.77.0.98"]}},"runtimeConfig":{"ips":["10.77.0.99"]}"#);
        assert_eq!(super::asked(&c).unwrap_err().code, code::INVALID_CONFIG);
        let c = args(r#""args":{"org.apache.mesos":{}}"#);
        assert_eq!(super::asked(&c).unwrap().0, Asked::default());
    }
}
