//! The processor's endpoints and their order of checks, as in the original:
//! rate limiter → routing/binding (415, 400) → token filter (401) → delay →
//! failure (500) → insert (422 on duplicate).

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::decimal::{self, Decimal};
use crate::guid;
use crate::http::{Request, Response};
use crate::json::{self, Fields};
use crate::limiter::{lock, ConcurrencyLimiter, FixedWindowLimiter, Lease};
use crate::store::{Payment, Store};
use crate::time;

/// In-flight POST /payments requests and the FIFO queue behind them.
pub const PAYMENT_PERMITS: usize = 800;
pub const PAYMENT_QUEUE: usize = 500;

/// The runtime switches the admin endpoints change.
pub struct Switches {
    pub delay_ms: AtomicI32,
    pub failing: AtomicBool,
    /// `None` after `{"token":null}`: then only a request without the header passes.
    pub token: Mutex<Option<String>>,
}

pub struct Settings {
    pub fee: Decimal,
    pub rate_limit: Duration,
    pub token: String,
}

pub struct App {
    pub switches: Arc<Switches>,
    store: Store,
    fee: Decimal,
    rate_limit_secs: u64,
    payments: ConcurrencyLimiter,
    health: FixedWindowLimiter,
    /// `thread::sleep`, replaceable so tests can act during the delay.
    sleep: Box<dyn Fn(Duration) + Send + Sync>,
}

type Handled = Result<Response, Response>;

impl App {
    pub fn new(settings: Settings) -> App {
        let switches = Switches {
            delay_ms: AtomicI32::new(0),
            failing: AtomicBool::new(false),
            token: Mutex::new(Some(settings.token)),
        };
        App {
            switches: Arc::new(switches),
            store: Store::default(),
            fee: settings.fee,
            rate_limit_secs: settings.rate_limit.as_secs(),
            payments: ConcurrencyLimiter::new(PAYMENT_PERMITS, PAYMENT_QUEUE),
            health: FixedWindowLimiter::new(1, 2, settings.rate_limit, Instant::now()),
            sleep: Box::new(std::thread::sleep),
        }
    }

    #[cfg(test)]
    pub fn with_sleep(mut self, sleep: impl Fn(Duration) + Send + Sync + 'static) -> App {
        self.sleep = Box::new(sleep);
        self
    }

    /// Drives the health-check window; call every `limiter::REPLENISH_TICK`.
    pub fn tick(&self, now: Instant) {
        self.health.tick(now);
    }

    #[cfg(test)]
    pub fn handle(&self, req: &Request) -> Response {
        self.serve(req, &|| false)
    }

    /// Answers one request; `aborted` tells whether the client has gone (a
    /// queued request then leaves its limiter queue unanswered).
    pub fn serve(&self, req: &Request, aborted: &dyn Fn() -> bool) -> Response {
        let (path, query) = req.target.split_once('?').unwrap_or((&req.target, ""));
        let segments: Vec<String> = split_path(path);
        let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
        let lower: Vec<String> = segs.iter().map(|s| s.to_ascii_lowercase()).collect();
        let lower: Vec<&str> = lower.iter().map(String::as_str).collect();
        let method = req.method.as_str();
        let result = match (lower.as_slice(), method) {
            ([], "GET") => Ok(index()),
            (["payments"], "POST") => self.pay(req, aborted),
            (["payments", "service-health"], "GET") => self.service_health(aborted),
            (["payments", _], "GET") => self.payment(segs[1]),
            (["admin", "payments-summary"], "GET") => self.summary(req, query),
            (["admin", "configurations", "token"], "PUT") => self.set_token(req),
            (["admin", "configurations", "delay"], "PUT") => self.set_delay(req),
            (["admin", "configurations", "failure"], "PUT") => self.set_failure(req),
            (["admin", "purge-payments"], "POST") => self.purge(req),
            (path, _) => Err(match allowed(path) {
                Some(allow) => Response::empty(405).with_header("Allow", allow.to_string()),
                None => Response::empty(404),
            }),
        };
        result.unwrap_or_else(|r| r)
    }

    fn too_many_requests(&self) -> Response {
        let mut r =
            Response::empty(429).with_header("Retry-After", self.rate_limit_secs.to_string());
        r.body = b"Calm down, bitch. Try again later.".to_vec();
        r
    }

    fn refused(&self, lease: Lease) -> Response {
        match lease {
            Lease::Aborted => Response::abort(),
            _ => self.too_many_requests(),
        }
    }

    fn pay(&self, req: &Request, aborted: &dyn Fn() -> bool) -> Handled {
        let _permit = self
            .payments
            .acquire(aborted)
            .map_err(|lease| self.refused(lease))?;
        let fields = bind_json(req)?;
        let id = fields.guid("correlationId").map_err(|_| bad_request())?;
        let amount_cents = fields.cents("amount").map_err(|_| bad_request())?;
        let requested_at = fields.datetime("requestedAt").map_err(|_| bad_request())?;
        let delay = self.switches.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            (self.sleep)(Duration::from_millis(delay.unsigned_abs().into()));
        }
        if self.switches.failing.load(Ordering::SeqCst) {
            return Err(Response::empty(500));
        }
        match self.store.insert(id, Payment { amount_cents, requested_at }) {
            Ok(()) => Ok(message(200, "payment processed successfully")),
            Err(_) => Err(message(
                422,
                &format!(
                    "Payment could not be processed. CorrelationId already exists: {}. Error details: \
                     23505: duplicate key value violates unique constraint \"payments_pkey\"",
                    guid::format(id)
                ),
            )),
        }
    }

    fn service_health(&self, aborted: &dyn Fn() -> bool) -> Handled {
        match self.health.acquire(aborted) {
            Lease::Granted => {}
            refused => return Err(self.refused(refused)),
        }
        let failing = self.switches.failing.load(Ordering::SeqCst);
        let delay = self.switches.delay_ms.load(Ordering::SeqCst);
        let body = format!(r#"{{"failing":{failing},"minResponseTime":{delay}}}"#);
        Ok(Response::json(if failing { 503 } else { 200 }, body))
    }

    fn payment(&self, id: &str) -> Handled {
        let id = guid::parse_any(id).ok_or_else(bad_request)?;
        let p = self.store.get(id).ok_or_else(|| Response::empty(404))?;
        let mut body = String::from("{\"correlationId\":\"");
        body.push_str(&guid::format(id));
        body.push_str("\",\"amount\":");
        decimal::write_scaled(&mut body, p.amount_cents, 2);
        body.push_str(",\"requestedAt\":\"");
        body.push_str(&time::format_iso(p.requested_at));
        body.push_str("\"}");
        Ok(Response::json(200, body))
    }

    fn summary(&self, req: &Request, query: &str) -> Handled {
        let from = query_datetime(query, "from")?;
        let to = query_datetime(query, "to")?;
        self.authorize(req)?;
        let s = self.store.summary(from, to);
        let fee = self.fee;
        let (amount, fee_total) = if s.count == 0 {
            ("0".to_string(), decimal::scaled(0, fee.scale))
        } else {
            let fee_cents = s
                .total_cents
                .checked_mul(fee.mantissa)
                .ok_or_else(|| Response::empty(500))?;
            (
                decimal::scaled(s.total_cents, 2),
                decimal::scaled(fee_cents, fee.scale + 2),
            )
        };
        let body = format!(
            r#"{{"totalAmount":{amount},"totalRequests":{},"totalFee":{fee_total},"feePerTransaction":{}}}"#,
            s.count,
            decimal::scaled(fee.mantissa, fee.scale)
        );
        Ok(Response::json(200, body))
    }

    fn set_token(&self, req: &Request) -> Handled {
        let fields = bind_json(req)?;
        let token = fields.string("token").map_err(|_| bad_request())?;
        self.authorize(req)?;
        *lock(&self.switches.token) = token;
        Ok(Response::empty(204))
    }

    fn set_delay(&self, req: &Request) -> Handled {
        let fields = bind_json(req)?;
        let delay = fields.int("delay").map_err(|_| bad_request())?;
        self.authorize(req)?;
        let was = self.switches.delay_ms.swap(delay, Ordering::SeqCst);
        Ok(Response::json(
            200,
            format!(r#"{{"config":"delay","was":{was},"is":{delay}}}"#),
        ))
    }

    fn set_failure(&self, req: &Request) -> Handled {
        let fields = bind_json(req)?;
        let failure = fields.bool("failure").map_err(|_| bad_request())?;
        self.authorize(req)?;
        let was = self.switches.failing.swap(failure, Ordering::SeqCst);
        Ok(Response::json(
            200,
            format!(r#"{{"config":"failure","was":{was},"is":{failure}}}"#),
        ))
    }

    fn purge(&self, req: &Request) -> Handled {
        self.authorize(req)?;
        self.store.purge();
        Ok(message(200, "All payments purged."))
    }

    /// `X-Rinha-Token` must equal the token (StringValues semantics: a missing
    /// header equals only a null token; repeated headers never match).
    fn authorize(&self, req: &Request) -> Result<(), Response> {
        let values: Vec<&[u8]> = req.header_values("x-rinha-token").collect();
        let ok = match (values.as_slice(), lock(&self.switches.token).as_deref()) {
            ([], None) => true,
            ([value], Some(token)) => *value == token.as_bytes(),
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(Response::empty(401))
        }
    }
}

fn bad_request() -> Response {
    Response::empty(400)
}

fn message(status: u16, text: &str) -> Response {
    let mut body = String::from("{\"message\":");
    json::write_str(&mut body, text);
    body.push('}');
    Response::json(status, body)
}

fn index() -> Response {
    let mut r = Response::json(
        200,
        "<html><body>payment processor emulator</body></html>".to_string(),
    );
    r.content_type = Some("text/html");
    r
}

/// The methods a path answers to, for 405s.
fn allowed(path: &[&str]) -> Option<&'static str> {
    match path {
        [] | ["payments", _] | ["admin", "payments-summary"] => Some("GET"),
        ["payments"] | ["admin", "purge-payments"] => Some("POST"),
        ["admin", "configurations", "token" | "delay" | "failure"] => Some("PUT"),
        _ => None,
    }
}

/// Path segments, percent-decoded, one trailing slash ignored.
fn split_path(path: &str) -> Vec<String> {
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    if trimmed.is_empty() {
        return Vec::new();
    }
    trimmed
        .split('/')
        .map(|s| percent_decode(s, false))
        .collect()
}

/// Decodes `%XX` (and `+` as space in query strings); bad escapes stay as is.
pub fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |j: usize| bytes.get(j).and_then(|&c| char::from(c).to_digit(16));
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
            (b'+', _, _) if plus_is_space => out.push(b' '),
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Binds a nullable `DateTime` query parameter: missing or empty → `None`,
/// unparsable → 400.
fn query_datetime(query: &str, name: &str) -> Result<Option<i64>, Response> {
    let value = query
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(k, _)| percent_decode(k, true).eq_ignore_ascii_case(name))
        .map(|(_, v)| percent_decode(v, true));
    match value.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => time::parse_iso(v.as_bytes(), true)
            .map(Some)
            .ok_or_else(bad_request),
    }
}

/// Minimal-API body binding: a JSON content type (415 otherwise), a JSON object.
fn bind_json(req: &Request) -> Result<Fields, Response> {
    let json_type = req.header("content-type").is_some_and(|ct| {
        let media = ct
            .split(|&b| b == b';')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        let media = String::from_utf8_lossy(media).to_ascii_lowercase();
        media == "application/json" || (media.contains('/') && media.ends_with("+json"))
    });
    if !json_type {
        return Err(Response::empty(415));
    }
    Fields::from_body(&req.body).map_err(|_| bad_request())
}

#[cfg(test)]
#[path = "app_tests.rs"]
mod tests;
