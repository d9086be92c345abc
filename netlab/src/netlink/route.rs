//! Routes.

use std::net::{Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use rtnetlink::{
    Handle, RouteMessageBuilder,
    packet_route::route::{RouteAddress, RouteAttribute, RouteMessage},
};

use super::nl;
use crate::error::Result;

/// Equivalent to `ip route add default via GW dev NAME metric METRIC` (no metric for
/// 0, as `ip route` gives none).
pub async fn add_default(
    h: &Handle,
    name: &str,
    index: u32,
    gateway: Ipv4Addr,
    metric: u32,
) -> Result<()> {
    let mut route = RouteMessageBuilder::<Ipv4Addr>::new()
        .gateway(gateway)
        .output_interface(index);
    if metric != 0 {
        route = route.priority(metric);
    }
    let route = route.build();
    h.route()
        .add(route)
        .execute()
        .await
        .map_err(nl("add default route via", format!("{gateway} dev {name}")))
}

/// Equivalent to `ip -6 route add default via GW dev NAME metric METRIC`.
pub async fn add_default6(
    h: &Handle,
    name: &str,
    index: u32,
    gateway: Ipv6Addr,
    metric: u32,
) -> Result<()> {
    let mut route = RouteMessageBuilder::<Ipv6Addr>::new()
        .gateway(gateway)
        .output_interface(index);
    if metric != 0 {
        route = route.priority(metric);
    }
    h.route()
        .add(route.build())
        .execute()
        .await
        .map_err(nl("add default route via", format!("{gateway} dev {name}")))
}

/// Equivalent to `ip route add PREFIX/LEN via GW`.
pub async fn add_via(h: &Handle, dest: Ipv4Addr, prefix: u8, gateway: Ipv4Addr) -> Result<()> {
    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(dest, prefix)
        .gateway(gateway)
        .build();
    add(h, route, format!("{dest}/{prefix} via {gateway}")).await
}

/// Equivalent to `ip -6 route add PREFIX/LEN via GW`.
pub async fn add_via6(h: &Handle, dest: Ipv6Addr, prefix: u8, gateway: Ipv6Addr) -> Result<()> {
    let route = RouteMessageBuilder::<Ipv6Addr>::new()
        .destination_prefix(dest, prefix)
        .gateway(gateway)
        .build();
    add(h, route, format!("{dest}/{prefix} via {gateway}")).await
}

/// Adds `route` (`what` names it in an error).
async fn add(h: &Handle, route: RouteMessage, what: String) -> Result<()> {
    h.route()
        .add(route)
        .execute()
        .await
        .map_err(nl("add route", what))
}

/// Equivalent to `ip route show default` → the ifindex of its output interface.
pub async fn default_oif(h: &Handle) -> Result<Option<u32>> {
    let filter: RouteMessage = RouteMessageBuilder::<Ipv4Addr>::new().build();
    let mut routes = h.route().get(filter).execute();
    while let Some(r) = routes.try_next().await.map_err(nl("get routes", "main"))? {
        if r.header.destination_prefix_length != 0 {
            continue;
        }
        for attr in &r.attributes {
            if let RouteAttribute::Oif(i) = attr {
                return Ok(Some(*i));
            }
        }
    }
    Ok(None)
}

/// Equivalent to `ip route show default` → (output interface, gateway) of each default
/// route.
pub async fn defaults(h: &Handle) -> Result<Vec<(Option<u32>, Option<Ipv4Addr>)>> {
    let filter = RouteMessageBuilder::<Ipv4Addr>::new().build();
    let found = default_routes(h, filter).await?;
    Ok(found
        .into_iter()
        .map(|(oif, gw)| {
            let gw = gw.and_then(|g| match g {
                RouteAddress::Inet(a) => Some(a),
                _ => None,
            });
            (oif, gw)
        })
        .collect())
}

/// Equivalent to `ip -6 route show default` → (oif, gateway) of each default route.
pub async fn defaults6(h: &Handle) -> Result<Vec<(Option<u32>, Option<Ipv6Addr>)>> {
    let filter = RouteMessageBuilder::<Ipv6Addr>::new().build();
    let found = default_routes(h, filter).await?;
    Ok(found
        .into_iter()
        .map(|(oif, gw)| {
            let gw = gw.and_then(|g| match g {
                RouteAddress::Inet6(a) => Some(a),
                _ => None,
            });
            (oif, gw)
        })
        .collect())
}

/// The default routes of the family `filter` asks for: output interface and gateway.
async fn default_routes(
    h: &Handle,
    filter: RouteMessage,
) -> Result<Vec<(Option<u32>, Option<RouteAddress>)>> {
    let mut routes = h.route().get(filter).execute();
    let mut found = Vec::new();
    while let Some(r) = routes.try_next().await.map_err(nl("get routes", "main"))? {
        if r.header.destination_prefix_length != 0 {
            continue;
        }
        let oif = r.attributes.iter().find_map(|a| match a {
            RouteAttribute::Oif(i) => Some(*i),
            _ => None,
        });
        let gw = r.attributes.iter().find_map(|a| match a {
            RouteAttribute::Gateway(g) => Some(g.clone()),
            _ => None,
        });
        found.push((oif, gw));
    }
    Ok(found)
}

/// Equivalent to `ip route show; ip -6 route show` → the gateway of every route of the
/// main table that has one, both families.
pub async fn gateways(h: &Handle) -> Result<Vec<std::net::IpAddr>> {
    let mut found = Vec::new();
    for filter in [
        RouteMessageBuilder::<Ipv4Addr>::new().build(),
        RouteMessageBuilder::<Ipv6Addr>::new().build(),
    ] {
        let mut routes = h.route().get(filter).execute();
        while let Some(r) = routes.try_next().await.map_err(nl("get routes", "main"))? {
            for a in &r.attributes {
                match a {
                    RouteAttribute::Gateway(RouteAddress::Inet(g)) => found.push((*g).into()),
                    RouteAttribute::Gateway(RouteAddress::Inet6(g)) => found.push((*g).into()),
                    _ => {}
                }
            }
        }
    }
    Ok(found)
}

/// Equivalent to `ip route show table all; ip -6 route show table all` → the smallest
/// MTU a route carries (`mtu N`, locked or not), IPv4's and IPv6's; `None` where no
/// route has one.
pub async fn mtu_floors(h: &Handle) -> Result<(Option<u32>, Option<u32>)> {
    use rtnetlink::packet_route::route::RouteMetric;
    let mut floors = [None, None];
    for (i, filter) in [
        RouteMessageBuilder::<Ipv4Addr>::new().build(),
        RouteMessageBuilder::<Ipv6Addr>::new().build(),
    ]
    .into_iter()
    .enumerate()
    {
        let mut routes = h.route().get(filter).execute();
        while let Some(r) = routes.try_next().await.map_err(nl("get routes", "all"))? {
            for a in &r.attributes {
                let RouteAttribute::Metrics(metrics) = a else {
                    continue;
                };
                for m in metrics {
                    if let RouteMetric::Mtu(mtu) = m
                        && *mtu != 0
                    {
                        floors[i] = Some(floors[i].map_or(*mtu, |f: u32| f.min(*mtu)));
                    }
                }
            }
        }
    }
    Ok((floors[0], floors[1]))
}
