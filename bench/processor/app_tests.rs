//! Endpoint rules of `app`, driven with in-memory requests.

use super::*;
use std::sync::mpsc;
use std::thread;

const ID: &str = "4a7901b8-7d26-4d9d-aa19-4dc1c7cf60b3";

fn app() -> App {
    App::new(Settings {
        fee: Decimal {
            mantissa: 5,
            scale: 2,
        },
        rate_limit: Duration::from_secs(5),
        token: "123".to_string(),
    })
}

fn req(method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> Request {
    Request {
        method: method.to_string(),
        target: target.to_string(),
        http10: false,
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect(),
        body: body.as_bytes().to_vec(),
    }
}

const JSON: (&str, &str) = ("Content-Type", "application/json");
const TOKEN: (&str, &str) = ("X-Rinha-Token", "123");

fn pay(app: &App, body: &str) -> Response {
    app.handle(&req("POST", "/payments", &[JSON], body))
}

fn body(r: &Response) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

fn payment_body(id: &str, amount: &str, at: &str) -> String {
    format!(r#"{{"correlationId":"{id}","amount":{amount},"requestedAt":"{at}"}}"#)
}

fn admin(app: &App, method: &str, target: &str, body: &str) -> Response {
    app.handle(&req(method, target, &[JSON, TOKEN], body))
}

#[test]
fn payment_is_stored_rounded_and_read_back() {
    let app = app();
    let r = pay(
        &app,
        &payment_body(ID, "19.905", "2025-07-15T12:34:56.1234567+01:00"),
    );
    assert_eq!(
        (r.status, body(&r).as_str()),
        (200, r#"{"message":"payment processed successfully"}"#)
    );
    assert_eq!(r.content_type, Some("application/json; charset=utf-8"));
    let r = app.handle(&req(
        "GET",
        &format!("/payments/{}", ID.to_uppercase()),
        &[],
        "",
    ));
    assert_eq!(r.status, 200);
    assert_eq!(
        body(&r),
        format!(
            r#"{{"correlationId":"{ID}","amount":19.90,"requestedAt":"2025-07-15T11:34:56.1234567"}}"#
        )
    );
}

#[test]
fn duplicate_is_422_and_keeps_the_first() {
    let app = app();
    assert_eq!(
        pay(&app, &payment_body(ID, "1", "2025-07-15T12:00:00Z")).status,
        200
    );
    let r = pay(&app, &payment_body(ID, "2", "2025-07-15T12:00:00Z"));
    assert_eq!(r.status, 422);
    assert!(
        body(&r).contains(&format!("CorrelationId already exists: {ID}")),
        "{}",
        body(&r)
    );
    let r = app.handle(&req("GET", &format!("/payments/{ID}"), &[], ""));
    assert!(body(&r).contains("\"amount\":1.00"));
}

#[test]
fn failure_is_500_and_stores_nothing() {
    let app = app();
    let r = admin(
        &app,
        "PUT",
        "/admin/configurations/failure",
        r#"{"failure":true}"#,
    );
    assert_eq!(
        (r.status, body(&r).as_str()),
        (200, r#"{"config":"failure","was":false,"is":true}"#)
    );
    let r = pay(&app, &payment_body(ID, "1", "2025-07-15T12:00:00Z"));
    assert_eq!((r.status, r.body.len()), (500, 0));
    assert_eq!(
        app.handle(&req("GET", &format!("/payments/{ID}"), &[], ""))
            .status,
        404
    );
    let r = admin(&app, "GET", "/admin/payments-summary", "");
    assert!(body(&r).contains("\"totalRequests\":0"));
}

#[test]
fn delay_comes_before_the_failure_check() {
    // The failure switch flips during the delay: the request must see it.
    let app = app();
    let switches = Arc::clone(&app.switches);
    let (tx, rx) = mpsc::channel();
    let app = app.with_sleep(move |d| {
        tx.send(d).unwrap();
        switches.failing.store(true, Ordering::SeqCst);
    });
    admin(
        &app,
        "PUT",
        "/admin/configurations/delay",
        r#"{"delay":1234}"#,
    );
    assert_eq!(
        pay(&app, &payment_body(ID, "1", "2025-07-15T12:00:00Z")).status,
        500
    );
    assert_eq!(rx.try_recv(), Ok(Duration::from_millis(1234)));
    assert_eq!(
        app.handle(&req("GET", &format!("/payments/{ID}"), &[], ""))
            .status,
        404
    );
}

#[test]
fn failure_switched_off_during_delay_stores() {
    let app = app();
    let switches = Arc::clone(&app.switches);
    let app = app.with_sleep(move |_| switches.failing.store(false, Ordering::SeqCst));
    admin(
        &app,
        "PUT",
        "/admin/configurations/delay",
        r#"{"delay":10}"#,
    );
    admin(
        &app,
        "PUT",
        "/admin/configurations/failure",
        r#"{"failure":true}"#,
    );
    assert_eq!(
        pay(&app, &payment_body(ID, "1", "2025-07-15T12:00:00Z")).status,
        200
    );
}

#[test]
fn no_sleep_without_delay_and_delay_config_reports_was_is() {
    let app = app().with_sleep(|_| panic!("no delay configured"));
    assert_eq!(
        pay(&app, &payment_body(ID, "1", "2025-07-15T12:00:00Z")).status,
        200
    );
    let r = admin(
        &app,
        "PUT",
        "/admin/configurations/delay",
        r#"{"delay":100}"#,
    );
    assert_eq!(body(&r), r#"{"config":"delay","was":0,"is":100}"#);
    let r = admin(
        &app,
        "PUT",
        "/admin/configurations/delay",
        r#"{"delay":-5}"#,
    );
    assert_eq!(body(&r), r#"{"config":"delay","was":100,"is":-5}"#);
    let second = "5a7901b8-7d26-4d9d-aa19-4dc1c7cf60b3";
    assert_eq!(
        pay(&app, &payment_body(second, "1", "2025-07-15T12:00:00Z")).status,
        200,
        "negative: no sleep"
    );
}

#[test]
fn content_type_must_be_json() {
    let app = app();
    let b = payment_body(ID, "1", "2025-07-15T12:00:00Z");
    assert_eq!(app.handle(&req("POST", "/payments", &[], &b)).status, 415);
    assert_eq!(
        app.handle(&req(
            "POST",
            "/payments",
            &[("Content-Type", "text/plain")],
            &b
        ))
        .status,
        415
    );
    let ok = ("content-type", "Application/JSON; charset=utf-8");
    assert_eq!(app.handle(&req("POST", "/payments", &[ok], &b)).status, 200);
    let problem = ("Content-Type", "application/problem+json");
    let other = payment_body(
        "5a7901b8-7d26-4d9d-aa19-4dc1c7cf60b3",
        "1",
        "2025-07-15T12:00:00Z",
    );
    assert_eq!(
        app.handle(&req("POST", "/payments", &[problem], &other))
            .status,
        200
    );
    let r = app.handle(&req(
        "PUT",
        "/admin/configurations/delay",
        &[TOKEN],
        r#"{"delay":1}"#,
    ));
    assert_eq!(r.status, 415);
}

#[test]
fn bad_bodies_are_400_and_missing_fields_default() {
    let app = app();
    for bad in [
        "",
        "{",
        "null",
        "[]",
        r#"{"correlationId":"nope"}"#,
        r#"{"correlationId":null}"#,
        r#"{"amount":"abc"}"#,
        r#"{"amount":true}"#,
        r#"{"requestedAt":"yesterday"}"#,
        r#"{"requestedAt":12}"#,
    ] {
        assert_eq!(pay(&app, bad).status, 400, "{bad:?}");
    }
    assert_eq!(pay(&app, "{}").status, 200, "all defaults");
    let zero = "00000000-0000-0000-0000-000000000000";
    let r = app.handle(&req("GET", &format!("/payments/{zero}"), &[], ""));
    assert_eq!(
        body(&r),
        format!(
            r#"{{"correlationId":"{zero}","amount":0.00,"requestedAt":"0001-01-01T00:00:00"}}"#
        )
    );
    assert_eq!(
        pay(&app, "{}").status,
        422,
        "the zero GUID is a key like any other"
    );
}

#[test]
fn get_payment_by_id() {
    let app = app();
    assert_eq!(
        app.handle(&req("GET", &format!("/payments/{ID}"), &[], ""))
            .status,
        404
    );
    assert_eq!(
        app.handle(&req("GET", "/payments/not-a-guid", &[], ""))
            .status,
        400
    );
    pay(&app, &payment_body(ID, "19.9", "2025-07-15T12:00:00.000Z"));
    let n_form = ID.replace('-', "");
    let r = app.handle(&req("GET", &format!("/payments/{n_form}/"), &[], ""));
    assert_eq!(r.status, 200);
    assert!(
        body(&r).ends_with(r#""amount":19.90,"requestedAt":"2025-07-15T12:00:00"}"#),
        "{}",
        body(&r)
    );
}

#[test]
fn admin_requires_the_token() {
    let app = app();
    let routes = [
        ("GET", "/admin/payments-summary", ""),
        ("PUT", "/admin/configurations/delay", r#"{"delay":1}"#),
        (
            "PUT",
            "/admin/configurations/failure",
            r#"{"failure":true}"#,
        ),
        ("PUT", "/admin/configurations/token", r#"{"token":"x"}"#),
        ("POST", "/admin/purge-payments", ""),
    ];
    for (method, path, b) in routes {
        let missing = app.handle(&req(method, path, &[JSON], b));
        let wrong = app.handle(&req(method, path, &[JSON, ("X-Rinha-Token", "124")], b));
        let twice = app.handle(&req(method, path, &[JSON, TOKEN, TOKEN], b));
        assert_eq!(
            (missing.status, wrong.status, twice.status),
            (401, 401, 401),
            "{path}"
        );
        assert!(missing.body.is_empty());
    }
    assert_eq!(
        app.switches.delay_ms.load(Ordering::SeqCst),
        0,
        "nothing changed"
    );
    assert!(!app.switches.failing.load(Ordering::SeqCst));
}

#[test]
fn binding_errors_come_before_the_token_check() {
    let app = app();
    let r = app.handle(&req("PUT", "/admin/configurations/delay", &[JSON], "{"));
    assert_eq!(r.status, 400);
    let r = app.handle(&req("GET", "/admin/payments-summary?from=bad", &[], ""));
    assert_eq!(r.status, 400);
}

#[test]
fn token_can_be_changed_and_nulled() {
    let app = app();
    let r = admin(
        &app,
        "PUT",
        "/admin/configurations/token",
        r#"{"token":"s3cret"}"#,
    );
    assert_eq!((r.status, r.body.len()), (204, 0));
    assert_eq!(admin(&app, "POST", "/admin/purge-payments", "").status, 401);
    let new = ("X-Rinha-Token", "s3cret");
    let r = app.handle(&req("POST", "/admin/purge-payments", &[new], ""));
    assert_eq!(
        (r.status, body(&r).as_str()),
        (200, r#"{"message":"All payments purged."}"#)
    );
    let r = app.handle(&req(
        "PUT",
        "/admin/configurations/token",
        &[JSON, new],
        r#"{"token":null}"#,
    ));
    assert_eq!(r.status, 204);
    assert_eq!(
        app.handle(&req("POST", "/admin/purge-payments", &[], ""))
            .status,
        200
    );
    assert_eq!(
        app.handle(&req("POST", "/admin/purge-payments", &[new], ""))
            .status,
        401
    );
}

#[test]
fn summary_between_inclusive_with_fee() {
    let app = app();
    let ids = [
        "10000000-0000-0000-0000-000000000001",
        "10000000-0000-0000-0000-000000000002",
        ID,
    ];
    let times = [
        "2025-07-15T12:00:00.000Z",
        "2025-07-15T12:00:10Z",
        "2025-07-15T12:00:10.001Z",
    ];
    for (id, at) in ids.iter().zip(times) {
        assert_eq!(pay(&app, &payment_body(id, "19.90", at)).status, 200);
    }
    let r = admin(
        &app,
        "GET",
        "/admin/payments-summary?from=2025-07-15T12:00:00.000Z&to=2025-07-15T12:00:10.000Z",
        "",
    );
    assert_eq!(
        body(&r),
        r#"{"totalAmount":39.80,"totalRequests":2,"totalFee":1.9900,"feePerTransaction":0.05}"#
    );
    let encoded =
        "/admin/payments-summary?from=2025-07-15T12%3A00%3A00Z&to=2025-07-15T12%3A00%3A10.001Z";
    assert!(body(&admin(&app, "GET", encoded, "")).contains("\"totalRequests\":3"));
    let offset = "/admin/payments-summary?from=2025-07-15T09:00:00.001-03:00&to=2025-07-15T09%3A00%3A10-03%3A00";
    assert!(body(&admin(&app, "GET", offset, "")).contains("\"totalRequests\":1"));
    let half = "/admin/payments-summary?to=2025-07-15T11:00:00Z";
    assert!(
        body(&admin(&app, "GET", half, "")).contains("\"totalRequests\":3"),
        "one bound → all"
    );
    let empty = "/admin/payments-summary?from=2030-01-01T00:00:00Z&to=2030-01-02T00:00:00Z";
    assert_eq!(
        body(&admin(&app, "GET", empty, "")),
        r#"{"totalAmount":0,"totalRequests":0,"totalFee":0.00,"feePerTransaction":0.05}"#
    );
}

#[test]
fn purge_empties_the_store() {
    let app = app();
    pay(&app, &payment_body(ID, "1", "2025-07-15T12:00:00Z"));
    assert_eq!(admin(&app, "POST", "/admin/purge-payments", "").status, 200);
    assert_eq!(
        app.handle(&req("GET", &format!("/payments/{ID}"), &[], ""))
            .status,
        404
    );
    assert_eq!(
        pay(&app, &payment_body(ID, "1", "2025-07-15T12:00:00Z")).status,
        200,
        "id reusable"
    );
}

#[test]
fn service_health_and_its_rate_limit() {
    let app = app();
    let start = Instant::now();
    let get = |app: &App| app.handle(&req("GET", "/payments/service-health", &[], ""));
    let r = get(&app);
    assert_eq!(
        (r.status, body(&r).as_str()),
        (200, r#"{"failing":false,"minResponseTime":0}"#)
    );
    thread::scope(|s| {
        let queued: Vec<_> = (0..2).map(|_| s.spawn(|| get(&app))).collect();
        while app.health.queued() < 2 {
            thread::sleep(Duration::from_millis(5));
        }
        let r = get(&app);
        assert_eq!(r.status, 429);
        assert_eq!(body(&r), "Calm down, bitch. Try again later.");
        assert!(r.headers.contains(&("Retry-After", "5".to_string())));
        admin(
            &app,
            "PUT",
            "/admin/configurations/failure",
            r#"{"failure":true}"#,
        );
        admin(
            &app,
            "PUT",
            "/admin/configurations/delay",
            r#"{"delay":250}"#,
        );
        app.tick(start + Duration::from_secs(5));
        app.tick(start + Duration::from_secs(10));
        for q in queued {
            let r = q.join().unwrap();
            assert_eq!(
                (r.status, body(&r).as_str()),
                (503, r#"{"failing":true,"minResponseTime":250}"#)
            );
        }
    });
}

#[test]
fn payments_concurrency_limit_answers_429_when_full() {
    let app = app();
    let permits: Vec<_> = (0..PAYMENT_PERMITS)
        .map(|_| app.payments.acquire(&|| false).ok().unwrap())
        .collect();
    let b = payment_body(ID, "1", "2025-07-15T12:00:00Z");
    thread::scope(|s| {
        let waiting: Vec<_> = (0..PAYMENT_QUEUE)
            .map(|_| s.spawn(|| pay(&app, &b).status))
            .collect();
        while app.payments.load(PAYMENT_PERMITS).1 < PAYMENT_QUEUE {
            thread::sleep(Duration::from_millis(5));
        }
        let r = pay(&app, &b);
        assert_eq!(
            (r.status, body(&r).as_str()),
            (429, "Calm down, bitch. Try again later.")
        );
        drop(permits);
        let statuses: Vec<u16> = waiting.into_iter().map(|w| w.join().unwrap()).collect();
        assert_eq!(statuses.iter().filter(|&&s| s == 200).count(), 1);
        assert_eq!(
            statuses.iter().filter(|&&s| s == 422).count(),
            PAYMENT_QUEUE - 1
        );
    });
}

#[test]
fn routing_404_405_and_case() {
    let app = app();
    assert_eq!(app.handle(&req("GET", "/nope", &[], "")).status, 404);
    let r = app.handle(&req("GET", "/payments", &[], ""));
    assert_eq!(
        (r.status, r.headers.clone()),
        (405, vec![("Allow", "POST".to_string())])
    );
    assert_eq!(
        app.handle(&req("DELETE", &format!("/payments/{ID}"), &[], ""))
            .status,
        405
    );
    assert_eq!(
        app.handle(&req("POST", "/PAYMENTS", &[JSON], "{}")).status,
        200
    );
    assert_eq!(app.handle(&req("GET", "/", &[], "")).status, 200);
}

#[test]
fn percent_decoding() {
    assert_eq!(percent_decode("a%3Ab+c%zz%", true), "a:b c%zz%");
    assert_eq!(percent_decode("a+b", false), "a+b");
}
