//! Who is on the other end of a request: the peer, or, when the peer is the demo's own load
//! balancer, the client it names in `X-Forwarded-For`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use actix_web::{HttpRequest, http::header::HeaderName};

use crate::web::state::AppState;

/// The header the balancer appends the client's address to.
const FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The header the balancer proves itself with: the launcher's secret for this run, which
/// nginx adds to every request it passes on (its config lives in a private folder).
pub(crate) const BALANCER_PROOF: HeaderName = HeaderName::from_static("x-demo-balancer");

/// The address of the client that made `req`.
///
/// `X-Forwarded-For` counts only on a request from loopback that carries the balancer's
/// secret: every page links to the instances' own ports too, where every local client is a
/// loopback peer and could write anything there. Even then only its last entry counts, the one
/// the balancer appended (nginx's `$proxy_add_x_forwarded_for`): the entries before it came
/// from the client and prove nothing.
pub(crate) fn client_address(req: &HttpRequest, state: &AppState) -> IpAddr {
    client_of(req, state.balancer_secret.as_deref())
}

/// [`client_address`] with the balancer's `secret`, when there is a balancer.
fn client_of(req: &HttpRequest, secret: Option<&str>) -> IpAddr {
    let Some(peer) = req.peer_addr().map(|peer| peer.ip()) else {
        // Only requests made up in-process have no peer.
        return IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    };
    if !peer.is_loopback() || !from_balancer(req, secret) {
        return peer;
    }
    forwarded_for(req).unwrap_or(peer)
}

/// Whether `req` carries `secret` in [`BALANCER_PROOF`], compared in constant time.
fn from_balancer(req: &HttpRequest, secret: Option<&str>) -> bool {
    let (Some(secret), Some(proof)) = (secret, req.headers().get(BALANCER_PROOF)) else {
        return false;
    };
    // An empty secret would be matched by an empty header: it is no secret.
    if secret.is_empty() {
        return false;
    }
    let (secret, proof) = (secret.as_bytes(), proof.as_bytes());
    secret.len() == proof.len()
        && secret
            .iter()
            .zip(proof)
            .fold(0, |differs, (a, b)| differs | (a ^ b))
            == 0
}

/// The last address in the request's `X-Forwarded-For` headers, if it is one.
fn forwarded_for(req: &HttpRequest) -> Option<IpAddr> {
    let last_header = req.headers().get_all(FORWARDED_FOR).last()?;
    let last_entry = last_header.to_str().ok()?.rsplit(',').next()?;
    last_entry.trim().parse().ok()
}

/// The address a client's failed logins are counted under: an IPv4 address as it is, an IPv6
/// one by its /64 network, since one subscriber or host usually holds a whole /64 and could
/// otherwise take a fresh count for every address in it.
pub(crate) fn counted_as(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !u128::from(u64::MAX))),
        },
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    const SECRET: &str = "the-balancer-secret";

    fn request(peer: &str, proof: Option<&str>, forwarded: &[&str]) -> HttpRequest {
        let mut request = TestRequest::default().peer_addr(peer.parse().expect("a socket address"));
        if let Some(proof) = proof {
            request = request.insert_header((BALANCER_PROOF, proof));
        }
        for value in forwarded {
            request = request.append_header((FORWARDED_FOR, *value));
        }
        request.to_http_request()
    }

    fn client(req: &HttpRequest) -> IpAddr {
        client_of(req, Some(SECRET))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn a_request_from_the_balancer_comes_from_the_address_it_appended() {
        let req = request(
            "127.0.0.1:50000",
            Some(SECRET),
            &["198.51.100.7, 203.0.113.9"],
        );
        assert_eq!(client(&req), ip("203.0.113.9"));
        let req = request("[::1]:50000", Some(SECRET), &["10.0.0.1", "2001:db8::5"]);
        assert_eq!(client(&req), ip("2001:db8::5"));
    }

    #[test]
    fn a_local_client_without_the_secret_cannot_claim_another_address() {
        for proof in [None, Some("a-guess"), Some("the-balancer-secreT")] {
            let req = request("127.0.0.1:50000", proof, &["203.0.113.9"]);
            assert_eq!(client(&req), ip("127.0.0.1"), "{proof:?}");
        }
        assert!(!from_balancer(
            &request("127.0.0.1:50000", Some(SECRET), &[]),
            None
        ));
        assert!(!from_balancer(
            &request("127.0.0.1:50000", Some(""), &[]),
            Some("")
        ));
    }

    #[test]
    fn a_remote_peer_cannot_claim_another_address() {
        let req = request("192.0.2.4:50000", Some(SECRET), &["203.0.113.9"]);
        assert_eq!(client(&req), ip("192.0.2.4"));
    }

    #[test]
    fn the_balancer_without_a_usable_header_is_the_client() {
        let req = request("127.0.0.1:50000", Some(SECRET), &[]);
        assert_eq!(client(&req), ip("127.0.0.1"));
        let req = request(
            "127.0.0.1:50000",
            Some(SECRET),
            &["203.0.113.9, not-an-address"],
        );
        assert_eq!(client(&req), ip("127.0.0.1"));
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        assert_eq!(counted_as(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            counted_as(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(counted_as(ip("::ffff:192.0.2.4")), ip("192.0.2.4"));
        assert_eq!(counted_as(ip("192.0.2.4")), ip("192.0.2.4"));
    }
}
