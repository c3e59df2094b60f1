//! Sites on NATS: several daemons, one fleet, any console.
//!
//! A host belongs to a site by its tag `site=<name>` (on the host or in `[defaults]` of
//! hosts.toml). Hosts without one, and every host when the daemon is not on a bus, are
//! served by the daemon itself, as always.
//!
//! - A **site daemon** (`crew daemon --site eu --nats URL`) serves its site's hosts and
//!   nobody else's: it listens on `crew.<fleet>.site.<site>.run` in the queue group of its
//!   site (two daemons of a site share the load; when one dies NATS hands the next request
//!   to the other), checks each request's signature and the signer's rights
//!   ([`auth`]), resolves the host names in its own inventory, claims the job once
//!   (KV `claims`), runs it as a run of its own and streams the hosts' events to
//!   `crew.<fleet>.job.<job>.ev` (JetStream) ([`site`]).
//! - An **operator's daemon** on the bus is the router: a run's hosts are split by site, each
//!   share sent to its site and its events merged into the one run's log, store and audit
//!   ([`router`]); heist steps are runs, so a heist's waves and decisions span sites. Its
//!   runs and heists are published to `crew.<fleet>.run.<id>.log` and listed in KV `runs`,
//!   so `crew runs` / `crew attach` work from any machine on the bus ([`share`]).
//! - Every daemon puts its presence (site, hosts, jobs) in KV `daemons` every second; a
//!   daemon silent for [`DEAD_AFTER`] is gone: its accepted jobs are reported `lost` (never
//!   re-sent) and a daemon of the same site reconnects its hosts.

pub mod auth;
pub mod router;
pub mod share;
pub mod site;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::{self, kv, stream};
use futures::StreamExt as _;
use serde::Deserialize;

use super::server::Daemon;
use crate::proto::bus::{self as pb, Names, Presence};

pub use router::JobKiller;

/// Heartbeat period of every daemon on the bus.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// A daemon whose presence was not refreshed for this long is gone.
pub const DEAD_AFTER: Duration = Duration::from_secs(3);
/// How long run events and audit lines are kept in JetStream.
const KEEP: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long connecting and creating the stream and buckets may take at start-up.
const SETUP_WAIT: Duration = Duration::from_secs(30);

/// `[nats]` in daemon.toml (all keys optional; `url` or `CREW_NATS` or `--nats` joins the bus).
///
/// ```toml
/// [nats]
/// url = "nats://10.0.0.1:4222,nats://10.0.0.2:4222"
/// fleet = "prod"                       # subjects crew.prod.…  (default "default")
/// site = "eu"                          # serve this site's hosts (a site daemon)
/// credentials = "/etc/crew/eu.creds"   # NATS JWT + nkey (.creds), or:
/// user = "crew-eu"
/// password_file = "/etc/crew/nats.pass"
/// nkey_file = "/etc/crew/nats.nk"      # NATS nkey seed
/// ca = "/etc/crew/nats-ca.pem"         # TLS: trust this CA (and require TLS)
/// cert = "/etc/crew/client.pem"        # TLS client certificate and key
/// key = "/etc/crew/client.key"
/// operators = "/etc/crew/operators.toml"  # site: who may act, with which rights
/// identity = "~/.config/crew/operator.nk" # router: the operator's signing key
/// replicas = 3                         # JetStream replicas (default: 3 on a cluster of 3+)
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusConfig {
    pub url: Option<String>,
    pub fleet: Option<String>,
    pub site: Option<String>,
    /// This daemon's name on the bus (default `<machine>-<random, kept in CREW_HOME>`).
    pub name: Option<String>,
    pub credentials: Option<PathBuf>,
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    pub nkey_file: Option<PathBuf>,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub operators: Option<PathBuf>,
    pub identity: Option<PathBuf>,
    pub replicas: Option<usize>,
}

impl BusConfig {
    /// The settings with `CREW_NATS`, `CREW_SITE`, `CREW_FLEET` over the file's; None when no
    /// URL is set anywhere (no bus).
    pub fn resolve(file: Option<BusConfig>) -> Result<Option<BusConfig>, String> {
        let mut c = file.unwrap_or_default();
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if let Some(u) = env("CREW_NATS") {
            c.url = Some(u);
        }
        if let Some(s) = env("CREW_SITE") {
            c.site = Some(s);
        }
        if let Some(f) = env("CREW_FLEET") {
            c.fleet = Some(f);
        }
        if c.url.is_none() {
            if c.site.is_some() {
                return Err("a site daemon needs a NATS url (--nats, CREW_NATS or [nats] url in daemon.toml)".into());
            }
            return Ok(None);
        }
        for (what, v) in [("fleet", &c.fleet), ("site", &c.site), ("name", &c.name)] {
            if let Some(v) = v {
                if !pb::valid_token(v) {
                    return Err(format!(
                        "[nats] {what} = {v:?}: use letters, digits, `-` and `_` only"
                    ));
                }
            }
        }
        Ok(Some(c))
    }

    pub fn fleet(&self) -> &str {
        self.fleet.as_deref().unwrap_or("default")
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    crate::store::journal::now_ms()
}

/// One daemon's connection to the bus.
pub struct Bus {
    pub names: Names,
    /// This daemon's name on the bus.
    pub id: String,
    /// The site this daemon serves (None: an operator's router).
    pub site: Option<String>,
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub presence: kv::Store,
    pub claims: kv::Store,
    pub runs: kv::Store,
    /// The operator's signing key (routers).
    pub identity: Option<nkeys::KeyPair>,
    /// Who may act here (site daemons, and owners of heists for forwarded answers).
    pub operators: Option<auth::Operators>,
    pub started_ms: u64,
    pub machine: String,
    /// Other daemons as last heard: presence, when it arrived here.
    peers: Mutex<BTreeMap<String, (Presence, Instant)>>,
    /// When our own heartbeat last came back through the bucket (our view is fresh).
    own_echo: Mutex<Option<Instant>>,
    /// Jobs this site daemon runs: job → (run id, signer's key).
    pub jobs: Mutex<HashMap<String, (u64, String)>>,
}

impl Bus {
    /// Is `daemon` alive, as far as this daemon can tell? A daemon never heard of counts as
    /// alive until [`DEAD_AFTER`] after `since`. When our own heartbeat has not come back
    /// for as long, the fault may be ours: nobody is declared gone.
    pub fn alive(&self, daemon: &str, since: Instant) -> bool {
        if !self.view_fresh() {
            return true;
        }
        let last = lock(&self.peers)
            .get(daemon)
            .map(|(_, t)| *t)
            .unwrap_or(since)
            .max(since);
        last.elapsed() < DEAD_AFTER
    }

    /// Our own heartbeat came back through the bucket within [`DEAD_AFTER`].
    pub fn view_fresh(&self) -> bool {
        lock(&self.own_echo).is_some_and(|t| t.elapsed() < DEAD_AFTER)
    }

    /// Every daemon heard of, with how long ago (ms).
    pub fn peers(&self) -> Vec<(Presence, u64)> {
        lock(&self.peers)
            .values()
            .map(|(p, t)| (p.clone(), t.elapsed().as_millis() as u64))
            .collect()
    }

    /// Sign an action with the operator's key.
    pub fn sign(&self, action: pb::Action) -> Result<Vec<u8>, String> {
        let key = self.identity.as_ref().ok_or_else(|| {
            "this daemon has no operator key to sign with ([nats] identity in daemon.toml; \
             `crew daemon keygen FILE` makes one)"
                .to_string()
        })?;
        auth::sign(key, &self.names.fleet, &self.id, action)
    }
}

/// An answer to a heist's ask, as sent to the heist's owner.
pub fn proto_answer(run: &str, ask_id: u64, choice: &str) -> pb::Action {
    pb::Action::Answer {
        run: run.to_string(),
        ask_id,
        choice: choice.to_string(),
    }
}

/// The bus, waiting up to `wait` for a daemon that is configured for one and still joining
/// it (a daemon just spawned by `crew runs`). None off the bus.
pub async fn ready(d: &Daemon, wait: Duration) -> Option<Arc<Bus>> {
    d.opts.bus.as_ref()?;
    let deadline = Instant::now() + wait;
    loop {
        if let Some(b) = d.bus.get() {
            return Some(b.clone());
        }
        if Instant::now() >= deadline || d.shutdown.is_cancelled() {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How long a request that needs the bus waits for a daemon still joining it.
pub const JOIN_WAIT: Duration = Duration::from_secs(10);

/// The daemon's bus, once connected.
pub type Slot = OnceLock<Arc<Bus>>;

/// Join the bus when the daemon's options say so. A site daemon connects before it serves
/// (an error stops it); an operator's daemon connects in the background (its local hosts
/// never wait for NATS).
pub async fn start(d: &Arc<Daemon>) -> anyhow::Result<()> {
    let Some(cfg) = d.opts.bus.clone() else {
        return Ok(());
    };
    if cfg.site.is_some() {
        let bus = tokio::time::timeout(SETUP_WAIT, connect(d, &cfg))
            .await
            .map_err(|_| anyhow::anyhow!("joining NATS took over {SETUP_WAIT:?}"))??;
        launch(d, bus);
        return Ok(());
    }
    let d2 = d.clone();
    tokio::spawn(async move {
        let mut wait = Duration::from_millis(200);
        loop {
            match connect(&d2, &cfg).await {
                Ok(bus) => {
                    launch(&d2, bus);
                    return;
                }
                Err(e) => tracing::warn!("joining NATS: {e:#}; retrying in {wait:?}"),
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = d2.shutdown.cancelled() => return,
            }
            wait = (wait * 2).min(Duration::from_secs(10));
        }
    });
    Ok(())
}

fn launch(d: &Arc<Daemon>, bus: Arc<Bus>) {
    if d.bus.set(bus.clone()).is_err() {
        return;
    }
    tracing::info!(daemon = %bus.id, site = ?bus.site, fleet = %bus.names.fleet, "on the bus");
    tokio::spawn(heartbeat(d.clone(), bus.clone()));
    tokio::spawn(watch_peers(d.clone(), bus.clone()));
    tokio::spawn(hear_heartbeats(d.clone(), bus.clone()));
    tokio::spawn(share::serve_ctl(d.clone(), bus.clone()));
    share::mirror_audit(d, &bus);
    if let Some(site) = bus.site.clone() {
        tokio::spawn(site::serve(d.clone(), bus, site));
    }
}

/// This daemon's name on the bus: `[nats] name`, else `<machine>-<8 hex>` kept in
/// `$CREW_HOME/bus-id` (one per CREW_HOME, stable across restarts).
fn daemon_id(cfg: &BusConfig, home: &Path, machine: &str) -> anyhow::Result<String> {
    if let Some(n) = &cfg.name {
        return Ok(n.clone());
    }
    let path = home.join("bus-id");
    if let Ok(s) = std::fs::read_to_string(&path) {
        let s = s.trim();
        if pb::valid_token(s) {
            return Ok(s.to_string());
        }
    }
    let mut rnd = [0u8; 4];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut rnd))
        .context("reading /dev/urandom")?;
    let mut m = pb::token_of(machine);
    m.truncate(24);
    let id = format!("{m}-{}", hex::encode(rnd));
    std::fs::create_dir_all(home).with_context(|| format!("creating {}", home.display()))?;
    std::fs::write(&path, &id).with_context(|| format!("writing {}", path.display()))?;
    Ok(id)
}

fn machine_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

fn read_secret(path: &Path, what: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("[nats] {what}: reading {}", path.display()))?;
    let text = text.trim().to_string();
    anyhow::ensure!(
        !text.is_empty(),
        "[nats] {what}: {} is empty",
        path.display()
    );
    Ok(text)
}

/// Connect, then make sure the stream and buckets exist.
async fn connect(d: &Arc<Daemon>, cfg: &BusConfig) -> anyhow::Result<Arc<Bus>> {
    let names = Names::new(cfg.fleet());
    let machine = machine_name();
    let home = d
        .opts
        .socket
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(crate::paths::home);
    let id = daemon_id(cfg, &home, &machine)?;
    let url = cfg.url.clone().unwrap_or_default();
    let urls: Vec<async_nats::ServerAddr> = url
        .split(',')
        .map(|u| u.trim().parse())
        .collect::<Result<_, _>>()
        .with_context(|| format!("[nats] url {url:?}"))?;
    let mut o = async_nats::ConnectOptions::new()
        .name(format!("crew {id}"))
        .custom_inbox_prefix(names.inbox(&id))
        .connection_timeout(Duration::from_secs(5))
        .request_timeout(Some(Duration::from_secs(5)))
        .ping_interval(Duration::from_secs(5))
        .max_reconnects(None);
    if let Some(c) = &cfg.credentials {
        o = o
            .credentials_file(c)
            .await
            .with_context(|| format!("[nats] credentials {}", c.display()))?;
    }
    if let Some(p) = &cfg.password_file {
        let user = cfg
            .user
            .clone()
            .context("[nats] password_file needs user")?;
        o = o.user_and_password(user, read_secret(p, "password_file")?);
    }
    if let Some(p) = &cfg.nkey_file {
        o = o.nkey(read_secret(p, "nkey_file")?);
    }
    if let Some(ca) = &cfg.ca {
        o = o.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let (Some(cert), Some(key)) = (&cfg.cert, &cfg.key) {
        o = o.add_client_certificate(cert.clone(), key.clone());
    }
    let identity = match &cfg.identity {
        Some(p) => Some(auth::load_identity(p)?),
        None => None,
    };
    let operators = match &cfg.operators {
        Some(p) => Some(auth::Operators::load(p).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let client = o
        .connect(urls)
        .await
        .with_context(|| format!("connecting to NATS at {url}"))?;
    let js = jetstream::new(client.clone());
    let cluster = client.server_info().connect_urls.len();
    let replicas = cfg
        .replicas
        .unwrap_or(if cluster >= 3 { 3 } else { 1 })
        .max(1);
    let (presence, claims, runs) = setup(&js, &names, replicas).await?;
    Ok(Arc::new(Bus {
        names,
        id,
        site: cfg.site.clone(),
        client,
        js,
        presence,
        claims,
        runs,
        identity,
        operators,
        started_ms: now_ms(),
        machine,
        peers: Mutex::default(),
        own_echo: Mutex::default(),
        jobs: Mutex::default(),
    }))
}

/// The stream and the buckets, created when missing (retried while JetStream elects its
/// leaders after a cluster starts).
async fn setup(
    js: &jetstream::Context,
    names: &Names,
    replicas: usize,
) -> anyhow::Result<(kv::Store, kv::Store, kv::Store)> {
    let deadline = Instant::now() + SETUP_WAIT;
    let mut last = String::new();
    while Instant::now() < deadline {
        match try_setup(js, names, replicas).await {
            Ok(v) => return Ok(v),
            Err(e) => {
                last = format!("{e:#}");
                tracing::debug!("JetStream set-up: {last}");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }
    anyhow::bail!("JetStream set-up did not succeed within {SETUP_WAIT:?}: {last}")
}

async fn try_setup(
    js: &jetstream::Context,
    names: &Names,
    replicas: usize,
) -> anyhow::Result<(kv::Store, kv::Store, kv::Store)> {
    js.get_or_create_stream(stream::Config {
        name: names.stream(),
        subjects: names.stream_subjects(),
        max_age: KEEP,
        num_replicas: replicas,
        duplicate_window: Duration::from_secs(120),
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|e| anyhow::anyhow!("stream {}: {e}", names.stream()))?;
    // The bucket's stream as `create_key_value` makes it; made here because that call first
    // asks for account info in a form nats-server 2.9 (Debian's) does not send.
    let bucket = |name: String, max_age: Duration| stream::Config {
        name: format!("KV_{name}"),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        max_age,
        storage: stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        num_replicas: replicas,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    };
    let mut stores = Vec::new();
    for (name, age) in [
        (names.presence_bucket(), Duration::from_secs(60)),
        (names.claims_bucket(), KEEP),
        (names.runs_bucket(), KEEP),
    ] {
        js.get_or_create_stream(bucket(name.clone(), age))
            .await
            .map_err(|e| anyhow::anyhow!("KV bucket {name}: {e}"))?;
        let s = js
            .get_key_value(name.clone())
            .await
            .map_err(|e| anyhow::anyhow!("KV bucket {name}: {e}"))?;
        stores.push(s);
    }
    let runs = stores.pop().context("runs bucket")?;
    let claims = stores.pop().context("claims bucket")?;
    let presence = stores.pop().context("presence bucket")?;
    Ok((presence, claims, runs))
}

/// Put our presence every [`HEARTBEAT`]; delete it when the daemon stops.
async fn heartbeat(d: Arc<Daemon>, bus: Arc<Bus>) {
    let mut kv_put: Option<tokio::task::JoinHandle<()>> = None;
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = d.shutdown.cancelled() => break,
        }
        if bus.site.is_some() {
            // A site daemon answers the bus, not clients on its socket: never idle.
            d.touch();
        }
        let p = Presence {
            daemon: bus.id.clone(),
            site: bus.site.clone(),
            machine: bus.machine.clone(),
            pid: std::process::id(),
            build: d.build.clone(),
            started_ms: bus.started_ms,
            sent_ms: now_ms(),
            hosts: d
                .pool
                .status()
                .into_iter()
                .map(|h| (h.name, h.state))
                .collect(),
            jobs: lock(&bus.jobs).keys().cloned().collect(),
        };
        let v: bytes::Bytes = match serde_json::to_vec(&p) {
            Ok(v) => v.into(),
            Err(e) => {
                tracing::error!("heartbeat: {e}");
                continue;
            }
        };
        // Liveness on core NATS: a JetStream backlog (a site streaming thousands of events)
        // must not make a busy daemon look dead.
        if let Err(e) = bus
            .client
            .publish(bus.names.heartbeat(&bus.id), v.clone())
            .await
        {
            tracing::debug!("heartbeat: {e}");
        }
        // The bucket (what a daemon that starts reads first): one put in flight at a time.
        if kv_put.as_ref().is_none_or(|h| h.is_finished()) {
            let bus = bus.clone();
            kv_put = Some(tokio::spawn(async move {
                if let Err(e) = bus.presence.put(&bus.id, v).await {
                    tracing::debug!("presence: {e}");
                }
            }));
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), bus.presence.delete(&bus.id)).await;
}

/// A daemon's presence arrived (heartbeat or bucket): note it, and when. False when it does
/// not parse.
fn heard(bus: &Bus, key: &str, value: &[u8]) -> bool {
    match serde_json::from_slice::<Presence>(value) {
        Ok(p) if p.daemon == key => {
            let now = Instant::now();
            if key == bus.id {
                *lock(&bus.own_echo) = Some(now);
            }
            lock(&bus.peers).insert(key.to_string(), (p, now));
            true
        }
        Ok(_) => false,
        Err(e) => {
            tracing::debug!(%key, "presence: {e}");
            false
        }
    }
}

/// Heartbeats on core NATS, as they come.
async fn hear_heartbeats(d: Arc<Daemon>, bus: Arc<Bus>) {
    let mut sub = match bus.client.subscribe(bus.names.all_heartbeats()).await {
        Ok(s) => s,
        Err(e) => return tracing::error!("subscribing to heartbeats: {e}"),
    };
    loop {
        tokio::select! {
            m = sub.next() => match m {
                Some(m) => {
                    let key = m.subject.as_str().rsplit('.').next().unwrap_or_default().to_string();
                    heard(&bus, &key, &m.payload);
                }
                None => return,
            },
            _ = d.shutdown.cancelled() => return,
        }
    }
}

/// Follow every daemon's presence. A site daemon reconnects the hosts of a daemon of its
/// site that went silent (the spare takes over).
async fn watch_peers(d: Arc<Daemon>, bus: Arc<Bus>) {
    let mut taken: std::collections::HashSet<String> = Default::default();
    let mut check = tokio::time::interval(Duration::from_millis(250));
    loop {
        let mut watch = loop {
            match bus.presence.watch_all().await {
                Ok(w) => break w,
                Err(e) => {
                    tracing::debug!("presence watch: {e}");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        _ = d.shutdown.cancelled() => return,
                    }
                }
            }
        };
        loop {
            tokio::select! {
                e = watch.next() => match e {
                    Some(Ok(entry)) => {
                        if entry.operation != kv::Operation::Put {
                            lock(&bus.peers).remove(&entry.key);
                            continue;
                        }
                        if heard(&bus, &entry.key, &entry.value) {
                            taken.remove(&entry.key);
                        }
                    }
                    Some(Err(e)) => {
                        tracing::debug!("presence watch: {e}");
                        break;
                    }
                    None => break,
                },
                _ = check.tick() => {
                    let Some(site) = &bus.site else { continue };
                    let gone: Vec<Presence> = lock(&bus.peers)
                        .values()
                        .filter(|(p, t)| {
                            p.daemon != bus.id
                                && p.site.as_deref() == Some(site)
                                && t.elapsed() >= DEAD_AFTER
                                && !taken.contains(&p.daemon)
                        })
                        .map(|(p, _)| p.clone())
                        .collect();
                    for p in gone {
                        if bus.view_fresh() {
                            taken.insert(p.daemon.clone());
                            tokio::spawn(site::take_over(d.clone(), bus.clone(), p));
                        }
                    }
                }
                _ = d.shutdown.cancelled() => return,
            }
        }
    }
}

/// An ordered consumer over `subject` from its first message, retried for a while: a
/// cluster that just lost a node re-elects its leaders before it answers again.
pub async fn ordered(
    bus: &Bus,
    subject: String,
) -> Result<jetstream::consumer::push::Ordered, String> {
    use jetstream::consumer::{push, DeliverPolicy};
    let deadline = Instant::now() + SETUP_WAIT;
    loop {
        let r = async {
            let stream = bus
                .js
                .get_stream(bus.names.stream())
                .await
                .map_err(|e| format!("stream {}: {e}", bus.names.stream()))?;
            let consumer = stream
                .create_consumer(push::OrderedConfig {
                    deliver_subject: bus.client.new_inbox(),
                    filter_subject: subject.clone(),
                    deliver_policy: DeliverPolicy::All,
                    ..Default::default()
                })
                .await
                .map_err(|e| format!("following {subject}: {e}"))?;
            consumer
                .messages()
                .await
                .map_err(|e| format!("following {subject}: {e}"))
        }
        .await;
        match r {
            Ok(m) => return Ok(m),
            Err(e) if Instant::now() < deadline => {
                tracing::debug!("{e}; again");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(e) => return Err(e),
        }
    }
}
