//! The public listener's limits on what clients may hold: buffered callback bytes,
//! requests per client address, and which address a request counts against.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpRequest, HttpResponse};
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::State;
use crate::config::EdgeLimits;
use crate::error::AppError;

/// Bytes of every callback body that need no share of the budget: far above any
/// callback WeCom sends, so a flood of large bodies never refuses a real one.
pub const FREE_BODY_BYTES: usize = 16 << 10;
/// Addresses remembered per limiter before the idle ones are forgotten.
const REMEMBERED_ADDRESSES: usize = 10_000;

pub struct Edge {
    pub limits: EdgeLimits,
    body_budget: Arc<Semaphore>,
    api: DefaultKeyedRateLimiter<IpAddr>,
    install: DefaultKeyedRateLimiter<IpAddr>,
}

/// Which page family a request belongs to, for its rate limit.
#[derive(Debug, Clone, Copy)]
pub enum Limited {
    Api,
    Install,
}

impl Edge {
    pub fn new(limits: EdgeLimits) -> Self {
        let quota = |per_minute: u32| Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN));
        Edge {
            body_budget: Arc::new(Semaphore::new(limits.callback_body_budget_bytes)),
            api: DefaultKeyedRateLimiter::keyed(quota(limits.api_requests_per_minute)),
            install: DefaultKeyedRateLimiter::keyed(quota(limits.install_requests_per_minute)),
            limits,
        }
    }

    /// A share of the body budget for `bytes` more, or `None` while it is spent.
    pub fn reserve_body_bytes(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let bytes = u32::try_from(bytes).ok()?;
        self.body_budget.clone().try_acquire_many_owned(bytes).ok()
    }

    /// `Err(seconds to wait)` when `client` has spent its requests of this minute.
    pub fn admit(&self, family: Limited, client: IpAddr) -> Result<(), u64> {
        let limiter = match family {
            Limited::Api => &self.api,
            Limited::Install => &self.install,
        };
        if limiter.len() > REMEMBERED_ADDRESSES {
            limiter.retain_recent();
        }
        limiter.check_key(&client).map_err(|not_until| not_until.wait_time_from(limiter.clock().now()).as_secs().max(1))
    }

    /// The client's address: the TCP peer, or, when the peer is a trusted proxy, the
    /// last address of `X-Forwarded-For` that is not one (proxies append to the list,
    /// so earlier entries are the client's to forge).
    pub fn client_of(&self, peer: Option<IpAddr>, forwarded_for: Option<&str>) -> Option<IpAddr> {
        let peer = peer?;
        if !self.limits.trusted_proxies.contains(&peer) {
            return Some(peer);
        }
        let hops = forwarded_for.into_iter().flat_map(|list| list.split(',').rev());
        for hop in hops {
            match hop.trim().parse::<IpAddr>() {
                Ok(address) if self.limits.trusted_proxies.contains(&address) => {}
                Ok(address) => return Some(address),
                Err(_) => return Some(peer),
            }
        }
        Some(peer)
    }

    pub fn client_of_request(&self, request: &HttpRequest) -> Option<IpAddr> {
        let forwarded_for = request.headers().get("x-forwarded-for").and_then(|value| value.to_str().ok());
        self.client_of(request.peer_addr().map(|addr| addr.ip()), forwarded_for)
    }
}

/// Refuses `/api/v1` requests past the client's rate with `429 rate_limited`.
pub async fn limit_api(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    match over_limit(Limited::Api, &request) {
        Some(retry_after_secs) => {
            Ok(request.error_response(AppError::RateLimited { retry_after_secs }).map_into_right_body())
        }
        None => next.call(request).await.map(ServiceResponse::map_into_left_body),
    }
}

/// Refuses install-page views past the client's rate with a plain `429`.
pub async fn limit_install(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    match over_limit(Limited::Install, &request) {
        Some(retry_after_secs) => {
            let response = HttpResponse::TooManyRequests()
                .insert_header(("Retry-After", retry_after_secs.to_string()))
                .content_type("text/plain; charset=utf-8")
                .body("too many requests from this address; try again shortly");
            Ok(request.into_response(response).map_into_right_body())
        }
        None => next.call(request).await.map(ServiceResponse::map_into_left_body),
    }
}

/// Seconds to wait, when the request's client is over its rate.
fn over_limit(family: Limited, request: &ServiceRequest) -> Option<u64> {
    let state = request.app_data::<State>()?;
    let client = state.edge.client_of_request(request.request())?;
    let wait = state.edge.admit(family, client).err()?;
    tracing::warn!(%client, ?family, "rate limit reached");
    Some(wait)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn edge(trusted: &[&str], api_per_minute: u32) -> Edge {
        let trusted_proxies = trusted.iter().map(|ip| ip.parse().expect("ip")).collect();
        Edge::new(EdgeLimits {
            request_read_timeout: std::time::Duration::from_secs(10),
            max_connections: 64,
            callback_body_budget_bytes: 100,
            api_requests_per_minute: api_per_minute,
            install_requests_per_minute: 1,
            trusted_proxies,
        })
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().expect("ip"))
    }

    #[test]
    fn the_forwarded_address_counts_only_behind_a_trusted_proxy() {
        let edge = edge(&["10.0.0.1", "10.0.0.2"], 10);
        assert_eq!(edge.client_of(ip("203.0.113.9"), Some("1.1.1.1")), ip("203.0.113.9"), "untrusted peer");
        assert_eq!(edge.client_of(ip("10.0.0.1"), Some("6.6.6.6, 1.1.1.1")), ip("1.1.1.1"));
        assert_eq!(edge.client_of(ip("10.0.0.1"), Some("1.1.1.1, 10.0.0.2")), ip("1.1.1.1"), "proxies skipped");
        assert_eq!(edge.client_of(ip("10.0.0.1"), Some("junk")), ip("10.0.0.1"), "unparsable: the proxy itself");
        assert_eq!(edge.client_of(ip("10.0.0.1"), None), ip("10.0.0.1"));
    }

    #[test]
    fn a_client_past_its_quota_waits_while_another_is_admitted() {
        let edge = edge(&[], 2);
        let one = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let two = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
        assert!(edge.admit(Limited::Api, one).is_ok());
        assert!(edge.admit(Limited::Api, one).is_ok());
        let wait = edge.admit(Limited::Api, one).expect_err("third request within the minute");
        assert!((1..=30).contains(&wait), "waits for one request's share of the minute: {wait}");
        assert!(edge.admit(Limited::Api, two).is_ok());
        assert!(edge.admit(Limited::Install, one).is_ok(), "families count apart");
    }

    #[test]
    fn the_body_budget_is_shared_and_returned() {
        let edge = edge(&[], 10);
        let first = edge.reserve_body_bytes(60).expect("within budget");
        assert!(edge.reserve_body_bytes(60).is_none(), "budget spent");
        drop(first);
        assert!(edge.reserve_body_bytes(100).is_some(), "returned when the body is dropped");
    }
}
