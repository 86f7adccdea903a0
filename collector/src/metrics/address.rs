//! `--metrics ADDR`: where the endpoint listens. Loopback unless another address is written out.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Parses `9464`, `:9464`, `localhost:9464`, `127.0.0.1:9464`, `[::1]:9464` or any other IP
/// address with a port. A bare port means loopback: the endpoint names types and methods of
/// the workers, so it is reachable from the network only when an address says so.
pub fn parse_metrics_addr(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    let port_only = s.strip_prefix(':').unwrap_or(s);
    if let Ok(port) = port_only.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    if let Some(port) = s.strip_prefix("localhost:") {
        let port = port.parse::<u16>().map_err(|_| format!("`{port}` is not a port number"))?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    s.parse::<SocketAddr>().map_err(|_| {
        format!(
            "`{s}` is not PORT, :PORT, localhost:PORT or IP:PORT (e.g. 127.0.0.1:9464; \
             0.0.0.0:9464 to be reachable from other hosts)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_port_is_loopback_and_other_addresses_must_be_written_out() {
        for s in ["9464", ":9464", "localhost:9464", "127.0.0.1:9464"] {
            let a = parse_metrics_addr(s).unwrap();
            assert!(a.ip().is_loopback(), "{s}");
            assert_eq!(a.port(), 9464);
        }
        assert!(parse_metrics_addr("[::1]:9464").unwrap().ip().is_loopback());
        assert!(!parse_metrics_addr("0.0.0.0:9464").unwrap().ip().is_loopback());
        for bad in ["", "metrics.example.com:9464", "127.0.0.1", "99999", "localhost:x"] {
            assert!(parse_metrics_addr(bad).is_err(), "{bad:?}");
        }
    }
}
