//! NodePorts: a host port already used on the node with the same protocol and an overlapping
//! host IP (0.0.0.0 overlaps every address).

use crate::engine::EngineError;
use crate::engine::view::{self, w};

pub const REASON: &str = "node(s) didn't have free ports for the requested pod ports";
const ALL_ADDRESSES: &str = "0.0.0.0";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostPort<'a> {
    pub ip: &'a str,
    pub protocol: &'a str,
    pub port: i32,
}

impl HostPort<'_> {
    pub fn conflicts_with(&self, used: &HostPort<'_>) -> bool {
        self.port == used.port
            && self.protocol == used.protocol
            && (self.ip == ALL_ADDRESSES || used.ip == ALL_ADDRESSES || self.ip == used.ip)
    }
}

/// The host ports a pod binds: its containers' ports with a host port (for a host-network pod
/// every container port is a host port, as the API server's defaulting makes it).
pub fn host_ports<'a>(
    spec: &'a w::PodSpec,
    path: &dyn Fn() -> String,
) -> Result<Vec<HostPort<'a>>, EngineError> {
    let mut ports = Vec::new();
    for (c, container) in spec.containers.iter().enumerate() {
        for (p, port) in container.ports.iter().enumerate() {
            let host_port = if port.host_port == 0 && spec.host_network {
                port.container_port
            } else {
                port.host_port
            };
            if host_port <= 0 {
                continue;
            }
            let at = || format!("{}.containers[{c}].ports[{p}]", path());
            let protocol = match view::text(&port.protocol, || format!("{}.protocol", at()))? {
                "" => "TCP",
                known @ ("TCP" | "UDP" | "SCTP") => known,
                other => {
                    return Err(EngineError::invalid(
                        format!("{}.protocol", at()),
                        format!("unknown protocol {other:?} (want TCP, UDP or SCTP)"),
                    ));
                }
            };
            let ip = match view::text(&port.host_ip, || format!("{}.hostIP", at()))? {
                "" => ALL_ADDRESSES,
                ip => ip,
            };
            ports.push(HostPort {
                ip,
                protocol,
                port: host_port,
            });
        }
    }
    Ok(ports)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::view::view_of_json;
    use vpsie_proto::safety::v1 as pb;

    fn port(ip: &'static str, protocol: &'static str, port: i32) -> HostPort<'static> {
        HostPort { ip, protocol, port }
    }

    #[test]
    fn wildcard_address_overlaps_everything() {
        assert!(port("0.0.0.0", "TCP", 80).conflicts_with(&port("10.0.0.1", "TCP", 80)));
        assert!(port("10.0.0.1", "TCP", 80).conflicts_with(&port("0.0.0.0", "TCP", 80)));
        assert!(!port("10.0.0.1", "TCP", 80).conflicts_with(&port("10.0.0.2", "TCP", 80)));
        assert!(!port("0.0.0.0", "UDP", 80).conflicts_with(&port("0.0.0.0", "TCP", 80)));
        assert!(!port("0.0.0.0", "TCP", 81).conflicts_with(&port("0.0.0.0", "TCP", 80)));
    }

    #[test]
    fn defaults_and_host_network() {
        let spec: w::PodSpec = view_of_json::<pb::PodSpec, _>(
            r#"{"hostNetwork":true,"containers":[{"name":"a","ports":[{"containerPort":9100},{"containerPort":53,"protocol":"UDP","hostIP":"10.0.0.1"}]}]}"#,
        );
        let ports = host_ports(&spec, &|| "spec".into()).expect("ports");
        assert_eq!(
            ports,
            vec![port("0.0.0.0", "TCP", 9100), port("10.0.0.1", "UDP", 53)]
        );
        let spec: w::PodSpec = view_of_json::<pb::PodSpec, _>(
            r#"{"containers":[{"name":"a","ports":[{"containerPort":8080}]}]}"#,
        );
        assert!(
            host_ports(&spec, &|| "spec".into())
                .expect("ports")
                .is_empty()
        );
    }
}
