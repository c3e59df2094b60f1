//! The API's routes and handlers.
//!
//! | method and path                      | scope | what |
//! |--------------------------------------|-------|------|
//! | `GET /api/v1/status`                 | read  | the daemon's status (as `crew status`) |
//! | `GET /api/v1/hosts?select=EXPR`      | read  | the daemon's hosts a selection picks |
//! | `GET /api/v1/heists`                 | read  | the daemon's heists |
//! | `POST /api/v1/heists/{name}/runs`    | heist | start a heist: `{"profile", "vars"}` → 201 `{"id"}` |
//! | `POST /api/v1/runs`                  | run   | run a command: `{"select", "command", "timeout"}` → 201 `{"id"}` |
//! | `GET /api/v1/runs`                   | read  | runs and heists in flight and recent |
//! | `GET /api/v1/runs/{id}`              | read  | one: state, hosts and verdicts, a heist's step cells |
//! | `GET /api/v1/runs/{id}/events`       | read  | its events (SSE), resumable with `Last-Event-ID` |
//! | `POST /api/v1/runs/{id}/kill`        | run / heist | stop it (`{"now": true}`: KILL at once) |
//! | `POST /api/v1/runs/{id}/asks/{ask}`  | heist | answer an ask: `{"decision": "advance"…}` |
//! | `GET /api/v1/connect`                | any   | upgrade to the client protocol (remote `crew`) |
//! | `POST /hooks/{name}`                 | (signed) | a webhook |
//! | `GET /`, `/app.js`, `/app.css`       | none  | the web view (it asks for a token) |

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::hooks::{self, Concurrency, Refusal};
use super::Api;
use crate::daemon::heist::PoolFacts;
use crate::daemon::registry::Tracked;
use crate::daemon::runlog::Entry;
use crate::daemon::server::{self, Caller, Scope};
use crate::daemon::{audit, heist, run};
use crate::heist::view_model::ViewModel;
use crate::model::RunOrigin;
use crate::pick::{self, PickError};
use crate::proto::daemon::{HeistRequest, RunInfo, RunKind, RunRequest};

const INDEX_HTML: &str = include_str!("web/index.html");
const APP_JS: &str = include_str!("web/app.js");
const APP_CSS: &str = include_str!("web/app.css");

/// Every response: no framing, no sniffing, no referrer, no caching; scripts and styles
/// only from this origin (the web view has no inline script and never builds HTML from
/// host data).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

type S = State<Arc<Api>>;

pub(crate) fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/app.js", get(app_js))
        .route("/app.css", get(app_css))
        .route("/api/v1/status", get(status))
        .route("/api/v1/hosts", get(hosts))
        .route("/api/v1/heists", get(heists))
        .route("/api/v1/heists/{name}/runs", post(start_heist))
        .route("/api/v1/runs", get(list_runs).post(start_run))
        .route("/api/v1/runs/{id}", get(show_run))
        .route("/api/v1/runs/{id}/events", get(run_events))
        .route("/api/v1/runs/{id}/kill", post(kill_run))
        .route("/api/v1/runs/{id}/asks/{ask}", post(answer_ask))
        .route("/api/v1/connect", get(connect))
        .route("/hooks/{name}", post(webhook))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(axum::middleware::map_response(security_headers))
        .with_state(api)
}

async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    );
    r
}

/// `{"error": …}` with a status.
pub struct ApiError {
    status: StatusCode,
    body: Value,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: json!({ "error": message.into() }),
        }
    }

    fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(self.body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"crew\""),
            );
        }
        r
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> ApiError {
        ApiError::new(e.status(), format!("request body: {}", e.body_text()))
    }
}

type R = Result<Response, ApiError>;

fn static_file(body: &'static str, kind: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

async fn index() -> Response {
    static_file(INDEX_HTML, "text/html; charset=utf-8")
}

async fn app_js() -> Response {
    static_file(APP_JS, "text/javascript; charset=utf-8")
}

async fn app_css() -> Response {
    static_file(APP_CSS, "text/css; charset=utf-8")
}

/// The caller of a request, if its bearer token is good and its scope enough. A missing or
/// unknown token is 401; a known one without the scope is 403 (and audited).
async fn auth(api: &Api, headers: &HeaderMap, need: Scope, what: &str) -> Result<Caller, ApiError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "no token: send `Authorization: Bearer <token>` (crew token create)",
            )
        })?;
    let tokens = api.tokens.clone();
    let presented = presented.to_string();
    let holder = tokio::task::spawn_blocking(move || tokens.check(&presented))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| {
            tracing::error!("token store: {e:#}");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the token store is unreadable",
            )
        })?
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unknown or revoked token"))?;
    let caller = Caller::token(&holder.name, holder.scope);
    api.d.touch();
    if holder.scope < need {
        let detail =
            json!({ "request": what, "needs": need.as_str(), "has": holder.scope.as_str() });
        audit::action(&api.d.audit_log, &caller.who, "-", "denied", Some(detail)).await;
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "token `{}` has scope `{}`; {what} needs `{}`",
                holder.name,
                holder.scope.as_str(),
                need.as_str()
            ),
        ));
    }
    Ok(caller)
}

async fn status(State(api): S, headers: HeaderMap) -> R {
    auth(&api, &headers, Scope::Read, "status").await?;
    let s = api.d.status();
    Ok(Json(json!({
        "pid": s.pid, "build": s.build, "uptime_s": s.uptime_s, "rss_kb": s.rss_kb,
        "runs_active": s.runs_active, "runs_total": s.runs_total,
        "api": s.api.map(|a| json!({ "url": a.url, "fingerprint": a.fingerprint })),
        "hosts": s.hosts.iter().map(|h| json!({
            "name": h.name, "state": h.state, "reason": h.reason, "agentless": h.agentless,
            "jobs": h.jobs, "connected_for_s": h.connected_for_s,
        })).collect::<Vec<_>>(),
    }))
    .into_response())
}

#[derive(Deserialize)]
struct Select {
    select: Option<String>,
}

/// The daemon's hosts a selection picks; a bad selection is a 400 naming the column.
async fn pick_hosts(api: &Api, selection: &str) -> Result<Vec<crate::model::Host>, ApiError> {
    let inv = server::own_inventory(&api.d)
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e))?;
    let mut facts = PoolFacts {
        d: api.d.clone(),
        accept: false,
    };
    match pick::pick(&inv, selection, &mut facts, &api.d.opts.runs_dir).await {
        Ok(p) => Ok(p.hosts),
        Err(e @ PickError::Selection { column, .. }) => Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            body: json!({ "error": e.to_string(), "column": column }),
        }),
        Err(e) => Err(ApiError::new(StatusCode::BAD_GATEWAY, e.to_string())),
    }
}

async fn hosts(State(api): S, headers: HeaderMap, Query(q): Query<Select>) -> R {
    auth(&api, &headers, Scope::Read, "listing hosts").await?;
    let sel = q
        .select
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "*".to_string());
    let hosts = pick_hosts(&api, &sel).await?;
    let list: Vec<Value> = hosts
        .iter()
        .map(|h| {
            json!({
                "name": h.name, "address": h.address, "port": h.port, "user": h.user,
                "transport": format!("{:?}", h.transport).to_lowercase(), "tags": h.tags,
            })
        })
        .collect();
    Ok(Json(json!({ "select": sel, "hosts": list })).into_response())
}

async fn heists(State(api): S, headers: HeaderMap) -> R {
    auth(&api, &headers, Scope::Read, "listing heists").await?;
    let inv = api.d.opts.inventory.clone();
    let out = tokio::task::spawn_blocking(move || {
        let (files, _) = crate::heist::locate::heist_files(None, inv.as_deref());
        let (defs, errors) = crate::heist::locate::load_all(&files);
        let heists: Vec<Value> = defs
            .iter()
            .map(|h| {
                json!({
                    "name": h.name, "description": h.description, "select": h.select,
                    "profiles": h.profiles.keys().collect::<Vec<_>>(), "params": h.params,
                    "steps": h.steps.len(), "rollback_steps": h.rollback.len(),
                    "file": h.loc.path.display().to_string(),
                })
            })
            .collect();
        let errors: Vec<String> = errors.iter().map(|d| d.to_string()).collect();
        json!({ "heists": heists, "errors": errors })
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(out).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HeistBody {
    profile: Option<String>,
    #[serde(default)]
    vars: serde_json::Map<String, Value>,
}

fn scalar(k: &str, v: &Value) -> Result<String, ApiError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(_) | Value::Bool(_) => Ok(v.to_string()),
        _ => Err(ApiError::bad(format!(
            "vars.{k}: a string, number or boolean"
        ))),
    }
}

async fn start_heist(
    State(api): S,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> R {
    let caller = auth(&api, &headers, Scope::Heist, "starting a heist").await?;
    let body: HeistBody = if body.iter().all(u8::is_ascii_whitespace) {
        HeistBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad(format!("request body: {e}")))?
    };
    let vars = body
        .vars
        .iter()
        .map(|(k, v)| Ok((k.clone(), scalar(k, v)?)))
        .collect::<Result<Vec<_>, ApiError>>()?;
    let req = HeistRequest {
        name,
        profile: body.profile,
        vars,
        inventory: None,
        file: None,
        accept_new_host_keys: false,
        detach: true,
        // The API carries no sudo password: `become` steps need NOPASSWD (or an agent up).
        sudo_password: None,
        // Nobody at a terminal: unknown host keys are refused.
        ask_host_keys: false,
    };
    let t = heist::start(&api.d, req, caller.who.clone())
        .await
        .map_err(ApiError::bad)?;
    Ok((StatusCode::CREATED, Json(json!({ "id": t.id }))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunBody {
    select: String,
    command: String,
    /// `"30s"`, `"5m"`, or seconds.
    timeout: Option<Value>,
}

async fn start_run(
    State(api): S,
    headers: HeaderMap,
    body: Result<Json<RunBody>, JsonRejection>,
) -> R {
    let caller = auth(&api, &headers, Scope::Run, "running a command").await?;
    let Json(body) = body?;
    if body.command.trim().is_empty() {
        return Err(ApiError::bad("`command` is empty"));
    }
    let timeout_ms = match &body.timeout {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(
            n.as_f64()
                .filter(|s| *s > 0.0)
                .map(|s| (s * 1000.0) as u64)
                .ok_or_else(|| ApiError::bad("`timeout`: a positive number of seconds"))?,
        ),
        Some(Value::String(s)) => Some(
            crate::duration::parse(s)
                .map_err(|e| ApiError::bad(format!("`timeout`: {e}")))?
                .as_millis() as u64,
        ),
        Some(_) => return Err(ApiError::bad("`timeout`: \"30s\" or a number of seconds")),
    };
    let hosts = pick_hosts(&api, &body.select).await?;
    if hosts.is_empty() {
        return Err(ApiError::bad(format!("no hosts match `{}`", body.select)));
    }
    let n = hosts.len();
    let req = RunRequest {
        hosts,
        selection: body.select.clone(),
        command: body.command.clone(),
        env: Vec::new(),
        timeout_ms,
        fanout: None,
        accept_new_host_keys: false,
        who: caller.who.clone(),
        origin: RunOrigin::Command,
        ask_host_keys: false,
        sudo: None,
        stdin: false,
    };
    let t = run::start(&api.d, req, false)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    let detail = json!({ "selection": body.select, "command": body.command, "hosts": n });
    audit::action(
        &api.d.audit_log,
        &caller.who,
        &t.id,
        "run started",
        Some(detail),
    )
    .await;
    Ok((StatusCode::CREATED, Json(json!({ "id": t.id }))).into_response())
}

fn info_json(i: &RunInfo) -> Value {
    let verdicts: serde_json::Map<String, Value> = i
        .verdicts
        .iter()
        .map(|(v, n)| (v.as_str().to_string(), (*n).into()))
        .collect();
    json!({
        "id": i.id, "kind": i.kind, "what": i.what, "who": i.who,
        "started_ms": i.started_ms, "finished_ms": i.finished_ms, "state": i.state.as_str(),
        "hosts": i.hosts, "verdicts": verdicts, "asks": i.asks,
    })
}

async fn list_runs(State(api): S, headers: HeaderMap) -> R {
    auth(&api, &headers, Scope::Read, "listing runs").await?;
    let mut list: Vec<Value> = api.d.registry.list().iter().map(info_json).collect();
    list.reverse(); // newest first
    Ok(Json(json!({ "runs": list })).into_response())
}

/// A run or heist the daemon holds: its info, hosts and verdicts, and a heist's step view
/// rebuilt from its log.
fn tracked_json(t: &Tracked) -> Value {
    let info = t.info();
    let status = t.status();
    let mut out = info_json(&info);
    // A run's host names are in its first entry; a heist's view needs all of them.
    let entries = match t.kind {
        RunKind::Run => t.log.entries(0, 1),
        RunKind::Heist => t.log.entries(0, usize::MAX),
    };
    match t.kind {
        RunKind::Run => {
            let names: Vec<String> = entries
                .iter()
                .find_map(|e| match &**e {
                    Entry::Run(crate::proto::daemon::Event::RunStarted { hosts, .. }) => {
                        Some(hosts.clone())
                    }
                    _ => None,
                })
                .unwrap_or_default();
            out["host_list"] = names
                .iter()
                .map(
                    |h| json!({ "name": h, "verdict": status.verdicts.get(h).map(|v| v.as_str()) }),
                )
                .collect();
        }
        RunKind::Heist => {
            let mut vm = ViewModel::default();
            for e in &entries {
                if let Entry::Heist(h) = &**e {
                    if let Some(ev) = h.event() {
                        vm.apply(ev);
                    }
                }
            }
            out["host_list"] = vm
                .hosts
                .iter()
                .map(|h| json!({ "name": h, "verdict": status.verdicts.get(h).map(|v| v.as_str()), "outcome": vm.outcomes.get(h).map(|o| o.label()) }))
                .collect();
            out["asks"] = status
                .asks
                .iter()
                .map(|(id, host)| json!({ "ask_id": id, "host": host }))
                .collect();
            out["view"] = serde_json::to_value(&vm).unwrap_or(Value::Null);
        }
    }
    out["events"] = t.log.len().into();
    out
}

/// A run or heist from the run store (the daemon no longer holds it, or it restarted).
fn stored_json(root: &std::path::Path, id: &str) -> Result<Value, ApiError> {
    use crate::store;
    if let Ok(n) = id.parse::<u64>() {
        let dir = root.join(id);
        let run = store::read_run(&dir)
            .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, format!("no run {id}")))?;
        let failed = dir.join(store::FAILED_FILE).exists();
        let done: std::collections::HashMap<&str, &store::HostRecord> =
            run.hosts.iter().map(|r| (r.host.as_str(), r)).collect();
        let list: Vec<Value> = run
            .meta
            .hosts
            .iter()
            .map(|h| json!({ "name": h, "verdict": done.get(h.as_str()).map(|r| r.verdict.as_str()) }))
            .collect();
        let complete = done.len() == run.meta.hosts.len();
        let state = if failed || !complete {
            "interrupted"
        } else if run
            .hosts
            .iter()
            .all(|r| r.verdict == crate::model::Verdict::Ok)
        {
            "ok"
        } else {
            "failed"
        };
        return Ok(json!({
            "id": n.to_string(), "kind": "run", "what": run.meta.command, "who": run.meta.who,
            "state": state, "hosts": run.meta.hosts.len(), "host_list": list, "stored": true,
        }));
    }
    let jid = id
        .strip_prefix(store::journal::JOURNAL_PREFIX)
        .unwrap_or(id);
    let dir = store::journal::journal_dir(root, jid);
    if !dir.is_dir() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no run or heist {id}"),
        ));
    }
    let vm = crate::heist::journal::reconstruct(&dir)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
    let meta = crate::heist::journal::read_meta(&dir).ok();
    let state = vm
        .summary
        .as_ref()
        .map_or("interrupted", super::events::summary_state);
    let list: Vec<Value> = vm
        .hosts
        .iter()
        .map(|h| json!({ "name": h, "outcome": vm.outcomes.get(h).map(|o| o.label()) }))
        .collect();
    Ok(json!({
        "id": jid, "kind": "heist", "what": vm.heist, "who": meta.map(|m| m.who),
        "state": state, "hosts": vm.hosts.len(), "host_list": list,
        "view": serde_json::to_value(&vm).unwrap_or(Value::Null), "stored": true,
    }))
}

async fn show_run(State(api): S, headers: HeaderMap, Path(id): Path<String>) -> R {
    auth(&api, &headers, Scope::Read, "showing a run").await?;
    if let Some(t) = api.d.registry.get(&id) {
        return Ok(Json(tracked_json(&t)).into_response());
    }
    let root = api.d.store.root().to_path_buf();
    let v = tokio::task::spawn_blocking(move || stored_json(&root, &id))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(Json(v).into_response())
}

#[derive(Deserialize)]
struct EventsQuery {
    /// Resume after this event (for clients that cannot set `Last-Event-ID`).
    last_event_id: Option<usize>,
}

async fn run_events(
    State(api): S,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<EventsQuery>,
) -> R {
    auth(&api, &headers, Scope::Read, "following a run").await?;
    let last = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .ok_or_else(|| ApiError::bad("Last-Event-ID: an event id (a number)"))?,
        ),
        None => q.last_event_id,
    };
    let from = last.map_or(0, |n| n + 1);
    if api.d.registry.get(&id).is_none() {
        // Say "not found" as a status, not as an event, before a stream starts.
        let root = api.d.store.root().to_path_buf();
        let id2 = id.clone();
        tokio::task::spawn_blocking(move || stored_json(&root, &id2))
            .await
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    }
    let rx = super::events::stream(api.d.clone(), id, from);
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|ev| (Ok::<_, std::convert::Infallible>(ev), rx))
    });
    Ok(axum::response::sse::Sse::new(stream)
        .keep_alive(axum::response::sse::KeepAlive::default())
        .into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct KillBody {
    #[serde(default)]
    now: bool,
}

async fn kill_run(State(api): S, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> R {
    let t = api.d.registry.get(&id);
    let need = match t.as_ref().map(|t| t.kind) {
        Some(RunKind::Heist) => Scope::Heist,
        _ => Scope::Run,
    };
    let caller = auth(&api, &headers, need, "stopping a run").await?;
    let body: KillBody = if body.iter().all(u8::is_ascii_whitespace) {
        KillBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad(format!("request body: {e}")))?
    };
    let Some(t) = t else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no run or heist {id} in flight"),
        ));
    };
    if t.status().state.is_over() {
        return Err(ApiError::new(StatusCode::CONFLICT, format!("{id} is over")));
    }
    server::interrupt(&api.d, &id, body.now, &caller.who)
        .await
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, e))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "id": id, "stopping": true })),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnswerBody {
    decision: String,
}

async fn answer_ask(
    State(api): S,
    headers: HeaderMap,
    Path((id, ask)): Path<(String, u64)>,
    body: Result<Json<AnswerBody>, JsonRejection>,
) -> R {
    let caller = auth(&api, &headers, Scope::Heist, "answering an ask").await?;
    let Json(body) = body?;
    if api.d.registry.get(&id).is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no heist {id} in flight"),
        ));
    }
    heist::answer(&api.d, &id, ask, &body.decision, &caller.who)
        .await
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, e))?;
    Ok(Json(json!({ "id": id, "ask": ask, "decision": body.decision })).into_response())
}

/// The client protocol over this connection: answer `101 Switching Protocols`, then run
/// `daemon::server::session` on the upgraded stream, with the token's scope.
async fn connect(State(api): S, headers: HeaderMap, req: Request) -> R {
    let caller = auth(&api, &headers, Scope::Read, "connecting").await?;
    let wants = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(crate::proto::daemon::UPGRADE));
    if !wants {
        return Err(ApiError::bad(format!(
            "send `Connection: Upgrade` and `Upgrade: {}`",
            crate::proto::daemon::UPGRADE
        )));
    }
    let on_upgrade = hyper::upgrade::on(req);
    let d = api.d.clone();
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(up) => {
                let io = hyper_util::rt::TokioIo::new(up);
                let (rd, wr) = tokio::io::split(io);
                tracing::info!(who = %caller.who, "remote client connected");
                server::session(d, rd, wr, caller).await;
            }
            Err(e) => tracing::debug!("upgrade: {e}"),
        }
    });
    Ok((
        StatusCode::SWITCHING_PROTOCOLS,
        [
            (header::CONNECTION, "upgrade"),
            (header::UPGRADE, crate::proto::daemon::UPGRADE),
        ],
    )
        .into_response())
}

async fn webhook(State(api): S, headers: HeaderMap, Path(name): Path<String>, body: Bytes) -> R {
    let who = format!("hook:{name}");
    let path = api.hooks_path.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no hooks (the daemon has no inventory)",
        )
    })?;
    let all = tokio::task::spawn_blocking(move || hooks::load(&path))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| {
            tracing::error!("hooks: {e}");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the hooks file does not load (see the daemon's log)",
            )
        })?;
    let Some(hook) = all.get(&name) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no hook `{name}`"),
        ));
    };
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    if let Err(r) = hook.verify(
        &api.hooks,
        header("x-crew-timestamp"),
        header("x-crew-signature"),
        &body,
        std::time::SystemTime::now(),
    ) {
        let (status, why) = match r {
            Refusal::Unsigned(w) => (StatusCode::UNAUTHORIZED, w),
            Refusal::Replayed(w) => (StatusCode::CONFLICT, w),
        };
        audit::action(
            &api.d.audit_log,
            &who,
            "-",
            "hook refused",
            Some(json!({ "why": why })),
        )
        .await;
        return Err(ApiError::new(status, why));
    }
    let json: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad(format!("request body: {e}")))?
    };
    let vars = hook.vars(&json).map_err(ApiError::bad)?;
    let req = HeistRequest {
        name: hook.heist.clone(),
        profile: hook.profile.clone(),
        vars,
        inventory: None,
        file: None,
        accept_new_host_keys: false,
        detach: true,
        // The API carries no sudo password: `become` steps need NOPASSWD (or an agent up).
        sudo_password: None,
        // Nobody at a terminal: unknown host keys are refused.
        ask_host_keys: false,
    };
    let slot = api.hooks.slot(&name);
    match slot.clone().try_acquire_owned() {
        Ok(permit) => {
            let t = heist::start(&api.d, req, who)
                .await
                .map_err(ApiError::bad)?;
            tokio::spawn(hold_until_over(t.clone(), permit));
            Ok((StatusCode::CREATED, Json(json!({ "id": t.id }))).into_response())
        }
        Err(_) if hook.concurrency == Concurrency::Skip => {
            audit::action(
                &api.d.audit_log,
                &who,
                "-",
                "hook skipped",
                Some(json!({ "why": "a run of it is in flight" })),
            )
            .await;
            Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("hook `{name}`: a run of it is in flight (concurrency = \"skip\")"),
            ))
        }
        Err(_) => {
            if !api.hooks.enqueue(&name) {
                return Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "hook `{name}`: {} requests already queued",
                        hooks::QUEUE_MAX
                    ),
                ));
            }
            let api2 = api.clone();
            tokio::spawn(async move {
                let permit = slot.acquire_owned().await;
                api2.hooks.dequeue(&name);
                let Ok(permit) = permit else { return };
                match heist::start(&api2.d, req, who).await {
                    Ok(t) => hold_until_over(t, permit).await,
                    Err(e) => tracing::warn!(hook = %name, "queued hook run: {e}"),
                }
            });
            Ok((StatusCode::ACCEPTED, Json(json!({ "queued": true }))).into_response())
        }
    }
}

/// Keep a hook's slot until its heist is over.
async fn hold_until_over(t: Arc<Tracked>, permit: tokio::sync::OwnedSemaphorePermit) {
    let mut cursor = t.log.follow();
    while !cursor.next_batch(1024).await.is_empty() {}
    drop(permit);
}
