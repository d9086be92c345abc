//! The addresses a runtime asks for: `CNI_ARGS IP=` (comma-separated) and
//! `runtimeConfig.ips` (the `ips` capability). podman 4.3 sends one address, of either
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

/// `runtimeConfig.ips`, checked for form (whether the network has room for them is
/// `attach`'s to say); none without the key.
pub fn asked(conf: &NetConf) -> CniResult<Asked> {
    let Some(value) = conf.runtime_config("ips") else {
        return Ok(Asked::default());
    };
    let entries: Vec<String> = serde_json::from_value(value.clone()).map_err(|e| {
        CniError::new(
            code::DECODING_FAILURE,
            format!("cannot decode runtimeConfig.ips: {e}"),
        )
    })?;
    parse(entries.iter().map(String::as_str))
        .map_err(|e| invalid(format!("runtimeConfig.ips {entries:?}: {e}")))
}

/// One set of addresses from two sources (`IP=` and `runtimeConfig.ips`), which must
/// not disagree.
pub fn merge(env: &Asked, conf: &Asked) -> CniResult<Asked> {
    let disagree = |a: String, b: String| {
        invalid(format!(
            "runtimeConfig.ips asks for {a}, CNI_ARGS IP= for {b}"
        ))
    };
    if let (Some(a), Some(b)) = (conf.v4, env.v4)
        && a != b
    {
        return Err(disagree(a.to_string(), b.to_string()));
    }
    if let (Some(a), Some(b)) = (conf.v6, env.v6)
        && a != b
    {
        return Err(disagree(a.to_string(), b.to_string()));
    }
    Ok(Asked {
        v4: conf.v4.or(env.v4),
        v6: conf.v6.or(env.v6),
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
            merge(&env, &conf).unwrap(),
            Asked {
                v4: Some("10.77.0.50".parse().unwrap()),
                v6: Some("fd00:a4d::60".parse().unwrap()),
            }
        );
        let other = parse(["fd00:a4d::61"]).unwrap();
        assert_eq!(merge(&env, &other).unwrap_err().code, code::INVALID_CONFIG);
        assert!(parse("10.0.0.1,10.0.0.2".split(',')).is_err());
    }
}
