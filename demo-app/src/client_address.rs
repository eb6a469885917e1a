//! Who is on the other end of a request: the peer, or, when the peer is the load balancer on
//! this machine, the client it names in `X-Forwarded-For`.

use std::net::{IpAddr, Ipv4Addr};

use actix_web::{HttpRequest, http::header::HeaderName};

/// The header the balancer appends the client's address to.
const FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The address of the client that made `req`.
///
/// `X-Forwarded-For` counts only when the peer is on loopback, where the demo's balancer is:
/// anyone else could write anything there. Even then only its last entry counts, the one the
/// balancer appended (nginx's `$proxy_add_x_forwarded_for`): the entries before it came from
/// the client and prove nothing. Any process on this machine is trusted the same way, which
/// fits a demo on localhost; behind a balancer on another host, name that host instead.
pub(crate) fn client_address(req: &HttpRequest) -> IpAddr {
    let Some(peer) = req.peer_addr().map(|peer| peer.ip()) else {
        // Only requests made up in-process have no peer.
        return IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    };
    if !peer.is_loopback() {
        return peer;
    }
    forwarded_for(req).unwrap_or(peer)
}

/// The last address in the request's `X-Forwarded-For` headers, if it is one.
fn forwarded_for(req: &HttpRequest) -> Option<IpAddr> {
    let last_header = req.headers().get_all(FORWARDED_FOR).last()?;
    let last_entry = last_header.to_str().ok()?.rsplit(',').next()?;
    last_entry.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn request(peer: &str, forwarded: &[&str]) -> HttpRequest {
        let mut request = TestRequest::default().peer_addr(peer.parse().expect("a socket address"));
        for value in forwarded {
            request = request.append_header((FORWARDED_FOR, *value));
        }
        request.to_http_request()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn a_request_from_the_balancer_comes_from_the_address_it_appended() {
        let req = request("127.0.0.1:50000", &["198.51.100.7, 203.0.113.9"]);
        assert_eq!(client_address(&req), ip("203.0.113.9"));
        let req = request("[::1]:50000", &["10.0.0.1", "2001:db8::5"]);
        assert_eq!(client_address(&req), ip("2001:db8::5"));
    }

    #[test]
    fn a_remote_peer_cannot_claim_another_address() {
        let req = request("192.0.2.4:50000", &["203.0.113.9"]);
        assert_eq!(client_address(&req), ip("192.0.2.4"));
    }

    #[test]
    fn a_local_peer_without_a_usable_header_is_the_client() {
        assert_eq!(
            client_address(&request("127.0.0.1:50000", &[])),
            ip("127.0.0.1")
        );
        assert_eq!(
            client_address(&request(
                "127.0.0.1:50000",
                &["203.0.113.9, not-an-address"]
            )),
            ip("127.0.0.1")
        );
    }
}
