//! The Prometheus endpoint (`MetricsListen`): `GET /metrics` in the text exposition
//! format, read at each scrape from the same state DISPLAY TARGETS and SPOOLSTATUS
//! show. Labels are few and bounded: the target address (at most four) and an outcome;
//! never a recipient or a spool file.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;

pub mod cluster;
pub mod spool;
pub mod status;

use crate::delivery::router::Router;
use crate::spool::status::{Suspend, TaskRegistry};
use crate::telemetry::Telemetry;

/// What the metrics are read from.
#[derive(Debug)]
pub struct Sources {
    pub telemetry: Telemetry,
    pub router: Arc<Router>,
    pub tasks: Arc<TaskRegistry>,
    /// Mails in extended retry now.
    pub extended_current: Arc<AtomicU64>,
    pub suspend: watch::Receiver<Suspend>,
    /// The shared spool's cluster as last read (`SpoolDatabase`), see [`cluster`].
    pub cluster: Option<Arc<crate::storage::pg::cluster::ClusterView>>,
    /// The spool's directories, looked at by each scrape ([`spool`]).
    pub places: spool::Places,
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Collector for Sources {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.telemetry.snapshot();
        let e = &mut encoder;
        counter(
            e,
            "cssmtp_mails_attempted",
            "Mails handed to a target server.",
            s.mails_attempted,
        )?;
        counter(
            e,
            "cssmtp_mails_sent",
            "Mails a target accepted for at least one recipient.",
            s.mails_sent,
        )?;
        counter(
            e,
            "cssmtp_mails_all_sent",
            "Mails final with every recipient delivered.",
            s.mails_all_sent,
        )?;
        counter(
            e,
            "cssmtp_mails_retry",
            "Mails that went into long retry.",
            s.mails_total_retry,
        )?;
        counter(
            e,
            "cssmtp_mails_undeliverable",
            "Mails with undeliverable recipients.",
            s.mails_undeliverable,
        )?;
        counter(e, "cssmtp_dead_letters", "Dead letters.", s.dead_letters)?;
        counter(
            e,
            "cssmtp_notifications",
            "Undeliverable notifications sent.",
            s.notifications,
        )?;
        counter(
            e,
            "cssmtp_error_reports",
            "Error reports sent or written.",
            s.reports,
        )?;
        counter(
            e,
            "cssmtp_spool_files",
            "Spool files finished.",
            s.files_done,
        )?;
        counter(
            e,
            "cssmtp_spool_files_held",
            "Spool files held.",
            s.files_held,
        )?;
        counter(
            e,
            "cssmtp_connections_opened",
            "Connections opened to target servers.",
            s.connections,
        )?;
        {
            let mut family = e.encode_descriptor(
                "cssmtp_recipients",
                "Recipients by outcome.",
                None,
                MetricType::Counter,
            )?;
            for (outcome, value) in [
                ("delivered", s.rcpts_delivered),
                ("undeliverable", s.rcpts_undeliverable),
                ("retried", s.rcpts_retried),
                ("extended", s.rcpts_extended),
            ] {
                ConstCounter::new(value).encode(family.encode_family(&[("outcome", outcome)])?)?;
            }
        }
        let tasks = self.tasks.all();
        let pending: u64 = tasks
            .iter()
            .map(|t| t.mails_pending.load(Ordering::Relaxed))
            .sum();
        let retry: u64 = tasks
            .iter()
            .map(|t| t.mails_retry.load(Ordering::Relaxed))
            .sum();
        gauge(
            e,
            "cssmtp_spool_tasks",
            "Spool tasks running.",
            to_i64(tasks.len() as u64),
        )?;
        gauge(
            e,
            "cssmtp_mails_pending",
            "Mails of running spool tasks not final yet.",
            to_i64(pending),
        )?;
        gauge(
            e,
            "cssmtp_mails_in_retry",
            "Mails waiting in long retry.",
            to_i64(retry),
        )?;
        gauge(
            e,
            "cssmtp_mails_in_extended_retry",
            "Mails in extended retry (the MailDirectory).",
            to_i64(self.extended_current.load(Ordering::Relaxed)),
        )?;
        gauge(
            e,
            "cssmtp_suspended",
            "1 when intake is suspended (SUSPEND).",
            i64::from(*self.suspend.borrow() != Suspend::Running),
        )?;
        let targets = self.router.targets();
        let now = tokio::time::Instant::now();
        let states: Vec<_> = targets
            .iter()
            .map(|t| (t.addr.to_string(), t.state()))
            .collect();
        let family = |e: &mut DescriptorEncoder,
                      name: &str,
                      help: &str,
                      kind: MetricType,
                      value: &dyn Fn(&crate::delivery::router::TargetState) -> i64|
         -> Result<(), std::fmt::Error> {
            let mut family = e.encode_descriptor(name, help, None, kind)?;
            for (addr, st) in &states {
                let labels = [("target", addr.as_str())];
                match kind {
                    MetricType::Counter => ConstCounter::new(u64::try_from(value(st)).unwrap_or(0))
                        .encode(family.encode_family(&labels)?)?,
                    _ => ConstGauge::new(value(st)).encode(family.encode_family(&labels)?)?,
                }
            }
            Ok(())
        };
        family(
            e,
            "cssmtp_target_up",
            "1 when the target server is ready.",
            MetricType::Gauge,
            &|st| i64::from(st.down_until.is_none_or(|u| u <= now)),
        )?;
        family(
            e,
            "cssmtp_target_connections",
            "Connections open to the target server.",
            MetricType::Gauge,
            &|st| i64::from(st.connections),
        )?;
        family(
            e,
            "cssmtp_target_mail_attempts",
            "Mails handed to the target server.",
            MetricType::Counter,
            &|st| to_i64(st.mail_attempts),
        )?;
        family(
            e,
            "cssmtp_target_mails_sent",
            "Mails the target server accepted.",
            MetricType::Counter,
            &|st| to_i64(st.mail_sent),
        )?;
        family(
            e,
            "cssmtp_target_connect_failures",
            "Failed connections to the target server.",
            MetricType::Counter,
            &|st| to_i64(st.connect_failures),
        )?;
        family(
            e,
            "cssmtp_target_auth_failures",
            "SMTP AUTH failures with the target server (not offered, not possible, or refused).",
            MetricType::Counter,
            &|st| to_i64(st.auth_failures),
        )?;
        family(
            e,
            "cssmtp_target_tls_failures",
            "STARTTLS or TLS handshake failures with the target server (certificate verification included).",
            MetricType::Counter,
            &|st| to_i64(st.tls_failures),
        )?;
        family(
            e,
            "cssmtp_target_sessions_without_tls",
            "Sessions with a TlsMode Opportunistic target server that went without TLS.",
            MetricType::Counter,
            &|st| to_i64(st.tls_not_used),
        )?;
        if let Some(view) = &self.cluster {
            cluster::encode(view, std::time::SystemTime::now(), e)?;
        }
        Ok(())
    }
}

/// The text exposition of the metrics now (`view`: what [`spool::look`] saw).
pub fn render(sources: Arc<Sources>, view: spool::View) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(sources));
    registry.register_collector(Box::new(view));
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, &registry).is_err() {
        text.clear();
    }
    text
}

/// Connections the endpoint serves at once, at most (fewer when the descriptor limit
/// is low: never more than a quarter of it); more are closed at once.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a client has to send its request head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one connection may last, whatever it does.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(10);

/// Serves `GET /metrics` on `listener` until `stop`. Local clients may be slow, many
/// or hostile: at most [`MAX_CONNECTIONS`] are served at once (the rest are closed at
/// once), each has [`HEADER_TIMEOUT`] to send its request and [`CONNECTION_DEADLINE`]
/// in all, and running out of descriptors pauses accepting instead of ending anything.
pub async fn serve(listener: TcpListener, sources: Arc<Sources>, stop: CancellationToken) {
    let slots = Arc::new(Semaphore::new(crate::listen::connection_cap(
        MAX_CONNECTIONS,
        4,
    )));
    let mut backoff = crate::listen::AcceptBackoff::new("metrics endpoint");
    loop {
        let (stream, _) = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(x) => x,
                Err(e) => {
                    backoff.failed(&e, &stop).await;
                    continue;
                }
            },
        };
        backoff.accepted();
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            // Full: closed at once, so it holds no descriptor.
            drop(stream);
            continue;
        };
        let sources = Arc::clone(&sources);
        let stop = stop.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let sources = Arc::clone(&sources);
                async move { Ok::<_, Infallible>(answer(&request, sources).await) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(false)
                .serve_connection(io, service);
            tokio::select! {
                () = stop.cancelled() => {}
                _ = tokio::time::timeout(CONNECTION_DEADLINE, connection) => {}
            }
        });
    }
}

/// What the file system says now, read on a blocking thread.
async fn look(sources: &Sources) -> spool::View {
    let places = sources.places.clone();
    tokio::task::spawn_blocking(move || spool::look(&places))
        .await
        .unwrap_or_default()
}

async fn answer(request: &Request<Incoming>, sources: Arc<Sources>) -> Response<Full<Bytes>> {
    let response = |status: StatusCode, content_type: &str, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        if let Ok(value) = content_type.parse() {
            r.headers_mut().insert(hyper::header::CONTENT_TYPE, value);
        }
        r
    };
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => {
            let view = look(&sources).await;
            response(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                render(sources, view),
            )
        }
        (&Method::GET, "/" | "/status") => {
            let view = look(&sources).await;
            let mut r = response(
                StatusCode::OK,
                "text/html; charset=utf-8",
                status::page(&sources, &view),
            );
            // Read-only and inert: no script, no frame, nothing fetched.
            if let Ok(value) = status::CONTENT_SECURITY_POLICY.parse() {
                r.headers_mut()
                    .insert(hyper::header::CONTENT_SECURITY_POLICY, value);
            }
            r
        }
        (&Method::GET, _) => response(
            StatusCode::NOT_FOUND,
            "text/plain",
            "cssmtp: try /metrics or /status\n".into(),
        ),
        _ => response(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        ),
    }
}
