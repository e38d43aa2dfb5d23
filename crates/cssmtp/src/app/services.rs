//! What runs beside the mail path: the control socket, the metrics endpoint, the health
//! monitor, STATS records and, for `cssmtp run`, SIGHUP. Each runs until the token it is
//! given: the listeners end once the journal has had its last sync (an operator can
//! still ask what is going on while cssmtp stops), what runs on timers when the
//! shutdown starts.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::RunOptions;
use crate::config::Config;
use crate::control::Control;
use crate::spool::status::Suspend;
use crate::telemetry::Event as TelemetryEvent;

/// What ends the services.
#[derive(Default)]
pub(super) struct Stop {
    /// Ends the listeners: the control socket (removed then) and the metrics endpoint.
    pub(super) listeners: CancellationToken,
    /// Ends what runs on timers: the monitor, STATS records, SIGHUP.
    pub(super) timers: CancellationToken,
}

/// The services running.
#[derive(Default)]
pub(super) struct Services {
    pub(super) listeners: Vec<tokio::task::JoinHandle<()>>,
    pub(super) timers: Vec<tokio::task::JoinHandle<()>>,
}

/// Starts what runs beside the mail path: the control socket and the metrics endpoint
/// (until `services.listeners`), the health monitor, STATS records and, for `cssmtp run`,
/// SIGHUP (until `services.timers`).
pub(super) async fn start_services(
    config: &Config,
    control: &Arc<Control>,
    options: RunOptions,
    services: &Stop,
    suspend: tokio::sync::watch::Receiver<Suspend>,
) -> Services {
    let (stop, timers) = (&services.listeners, &services.timers);
    let mut services = Services::default();
    let socket = config.control_socket();
    match crate::control::server::bind(&socket) {
        Ok(listener) => {
            tracing::info!(
                "CSM1043I Operator commands: cssmtp modify -c {} <command> (socket {})",
                config.file.display(),
                socket.display()
            );
            services
                .listeners
                .push(tokio::spawn(crate::control::server::serve(
                    listener,
                    socket,
                    Arc::clone(control),
                    stop.clone(),
                )));
        }
        Err(e) => tracing::error!(
            "CSM1025E Cannot create the control socket {}: {e}; operator commands are not available",
            socket.display()
        ),
    }
    if let Some(addr) = config.metrics_listen {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => {
                let local = listener
                    .local_addr()
                    .map_or_else(|_| addr.to_string(), |a| a.to_string());
                tracing::info!("CSM1044I Metrics at http://{local}/metrics");
                let sources = Arc::new(crate::metrics::Sources {
                    telemetry: control.telemetry.clone(),
                    router: Arc::clone(&control.router),
                    tasks: Arc::clone(&control.tasks),
                    extended_current: Arc::clone(&control.extended_current),
                    suspend,
                    cluster: control.cluster_view.clone(),
                    places: crate::metrics::spool::Places {
                        writer: config.ext_wrt_name.clone(),
                        incoming: config.writer_spool(),
                        directories: vec![
                            ("spool", config.writer_spool()),
                            ("deadletter", config.dead_letter_directory()),
                            ("mail", config.mail_directory()),
                        ],
                    },
                });
                services.listeners.push(tokio::spawn(crate::metrics::serve(
                    listener,
                    sources,
                    stop.clone(),
                )));
            }
            Err(e) => tracing::error!(
                "CSM1024E Cannot listen for metrics on {addr}: {e}; no metrics endpoint"
            ),
        }
    }
    // Checked once they exist (the dead-letter and mail directories appear when used).
    let directories = vec![
        config.writer_spool(),
        config.dead_letter_directory(),
        config.mail_directory(),
    ];
    services.timers.push(tokio::spawn(crate::monitor::run(
        Arc::clone(&control.tasks),
        directories,
        timers.clone(),
    )));
    if !config.stats_interval.is_zero() && config.smf119.stats {
        services.timers.push(tokio::spawn(stats_records(
            Arc::clone(control),
            config.stats_interval,
            timers.clone(),
        )));
    }
    if options.sighup {
        services.timers.push(tokio::spawn(refresh_on_sighup(
            Arc::clone(control),
            timers.clone(),
        )));
    }
    services
}

/// A STATS accounting record every `interval`.
async fn stats_records(
    control: Arc<Control>,
    interval: std::time::Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.tick().await;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        control.telemetry.emit(TelemetryEvent::Interval {
            interval,
            spool_tasks: control.tasks.all().len(),
            mails_in_retry: control.tasks.mails_in_retry(),
            mails_in_extended_retry: control
                .extended_current
                .load(std::sync::atomic::Ordering::Relaxed),
        });
    }
}

/// SIGHUP: REFRESH, as the operator command.
async fn refresh_on_sighup(control: Arc<Control>, stop: CancellationToken) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        return;
    };
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            got = hup.recv() => if got.is_none() { return },
        }
        tracing::info!("CSM5021I SIGHUP: REFRESH");
        let _ = control.execute(crate::control::Command::Refresh).await;
    }
}
