//! SMTP delivery with lettre over connections we open ourselves: `TCP_NODELAY` set (lettre
//! 0.11.23 never sets it and stalls ~40 ms per message on delayed ACKs), TLS as configured
//! and never silently dropped, credentials only over an encrypted connection, timeouts on
//! every step, and N workers that each reuse one connection for many messages.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, mpsc};
use tokio::time::timeout;

use super::Outcome;
use super::tls::{self, ImplicitTls};
use crate::config::{Security, Smtp};
use crate::secret::Secret;

/// Everything needed to open an authenticated connection, resolved once per run.
pub struct Connector {
    cfg: Smtp,
    password: Option<Secret>,
    hello: ClientId,
    extra_roots: Vec<CertificateDer<'static>>,
}

/// A failure that makes every further attempt pointless (bad credentials, TLS refused):
/// the run stops at once instead of hammering the relay.
#[derive(Debug)]
pub struct Fatal(pub String);

impl std::fmt::Display for Fatal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Fatal {}

impl Connector {
    pub fn new(cfg: &Smtp, hello_domain: &str) -> Result<Connector> {
        let password = cfg
            .password
            .as_ref()
            .map(|source| source.load().context("cannot read the SMTP password"))
            .transpose()?;
        let extra_roots = match &cfg.ca_file {
            Some(path) => tls::read_ca_file(path)?,
            None => Vec::new(),
        };
        let name = cfg
            .hello_name
            .clone()
            .unwrap_or_else(|| hello_domain.to_string());
        let hello = match name.parse::<IpAddr>() {
            Ok(IpAddr::V4(ip)) => ClientId::Ipv4(ip),
            Ok(IpAddr::V6(ip)) => ClientId::Ipv6(ip),
            Err(_) => ClientId::Domain(name),
        };
        Ok(Connector {
            cfg: cfg.clone(),
            password,
            hello,
            extra_roots,
        })
    }

    pub fn server(&self) -> String {
        format!("{}:{}", self.cfg.host, self.cfg.port)
    }

    /// Opens, secures and authenticates one connection. `Err(Fatal)` inside the anyhow
    /// error marks failures that retrying cannot fix.
    pub async fn connect(&self) -> Result<AsyncSmtpConnection> {
        let cfg = &self.cfg;
        let server = self.server();
        let tcp = timeout(
            cfg.connect_timeout,
            TcpStream::connect((cfg.host.as_str(), cfg.port)),
        )
        .await
        .map_err(|_| {
            anyhow!(
                "connecting to {server} timed out after {:?}",
                cfg.connect_timeout
            )
        })?
        .with_context(|| format!("cannot connect to {server}"))?;
        tcp.set_nodelay(true).context("cannot set TCP_NODELAY")?;
        let step = cfg.command_timeout;
        let mut conn = match cfg.security {
            Security::Tls => {
                let connector =
                    tokio_rustls::TlsConnector::from(tls::client_config(&self.extra_roots)?);
                let name = ServerName::try_from(cfg.host.clone()).map_err(|e| {
                    Fatal(format!(
                        "{:?} is not a valid TLS server name: {e}",
                        cfg.host
                    ))
                })?;
                let stream = timeout(step, connector.connect(name, tcp))
                    .await
                    .map_err(|_| anyhow!("TLS handshake with {server} timed out"))?
                    .map_err(|e| Fatal(format!("TLS handshake with {server} failed: {e}")))?;
                with_timeout(
                    step,
                    AsyncSmtpConnection::connect_with_transport(
                        Box::new(ImplicitTls(stream)),
                        &self.hello,
                    ),
                )
                .await
                .with_context(|| format!("SMTP greeting from {server}"))?
            }
            Security::Starttls | Security::None => with_timeout(
                step,
                AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello),
            )
            .await
            .with_context(|| format!("SMTP greeting from {server}"))?,
        };
        if cfg.security == Security::Starttls {
            if !conn.can_starttls() {
                conn.abort().await;
                return Err(Fatal(format!(
                    "{server} does not offer STARTTLS, and security = \"starttls\" never falls back to plaintext"
                ))
                .into());
            }
            let params = self.tls_parameters()?;
            timeout(step, conn.starttls(params, &self.hello))
                .await
                .map_err(|_| anyhow!("STARTTLS with {server} timed out"))?
                .map_err(|e| {
                    Fatal(format!(
                        "STARTTLS with {server} failed: {}",
                        crate::templates::chain(&e)
                    ))
                })?;
        }
        if let (Some(user), Some(password)) = (&cfg.username, &self.password) {
            // Config loading refuses credentials with security = "none"; this is the
            // last line of defence should that ever change.
            if cfg.security == Security::None {
                bail!(Fatal(
                    "refusing to send credentials over an unencrypted connection".into()
                ));
            }
            let creds = Credentials::new(user.clone(), password.expose().to_string());
            timeout(
                step,
                conn.auth(&[Mechanism::Plain, Mechanism::Login], &creds),
            )
            .await
            .map_err(|_| anyhow!("authentication with {server} timed out"))?
            .map_err(|e| Fatal(format!("{server} refused the credentials of {user:?}: {e}")))?;
        }
        Ok(conn)
    }

    fn tls_parameters(&self) -> Result<TlsParameters> {
        let mut builder = TlsParameters::builder(self.cfg.host.clone());
        for cert in &self.extra_roots {
            let cert = Certificate::from_der(cert.to_vec())
                .context("cannot use a certificate of the CA file")?;
            builder = builder.add_root_certificate(cert);
        }
        builder.build_rustls().context("cannot set up TLS")
    }
}

async fn with_timeout<T>(
    limit: Duration,
    fut: impl Future<Output = Result<T, lettre::transport::smtp::Error>>,
) -> Result<T> {
    timeout(limit, fut)
        .await
        .map_err(|_| anyhow!("no answer within {limit:?}"))?
        .map_err(|e| anyhow!(crate::templates::chain(&e)))
}

/// One message for a worker; `index` lets the caller match results to recipients.
pub struct Job {
    pub index: usize,
    pub envelope: Envelope,
    pub bytes: Vec<u8>,
}

pub struct Report {
    pub index: usize,
    pub outcome: Outcome,
}

/// Sends one message on an open connection. Returns the outcome and whether the connection
/// is still usable.
async fn send_one(conn: &mut AsyncSmtpConnection, job: &Job, limit: Duration) -> (Outcome, bool) {
    match timeout(limit, conn.send(&job.envelope, &job.bytes)).await {
        Err(_) => (
            Outcome::Failed {
                permanent: false,
                reason: format!("no answer within {limit:?}"),
            },
            false,
        ),
        Ok(Ok(response)) => {
            let reply = response.message().collect::<Vec<_>>().join(" ");
            (Outcome::Sent(format!("{} {reply}", response.code())), true)
        }
        Ok(Err(e)) => {
            let closing = e.status().is_some_and(|c| c.to_string() == "421");
            let usable = !conn.has_broken() && !closing;
            let outcome = Outcome::Failed {
                permanent: e.is_permanent(),
                reason: crate::templates::chain(&e),
            };
            if usable {
                // After a refused RCPT or DATA the transaction is still open: reset it
                // so the next message starts clean.
                let reset =
                    timeout(limit, conn.command(lettre::transport::smtp::commands::Rset)).await;
                return (outcome, matches!(reset, Ok(Ok(_))));
            }
            (outcome, false)
        }
    }
}

/// Runs `workers` connection workers over the job queue until it is closed and empty.
/// Each worker keeps its connection open across messages and reconnects when it breaks.
pub async fn run_workers(
    connector: Arc<Connector>,
    first: AsyncSmtpConnection,
    workers: usize,
    jobs: mpsc::Receiver<Job>,
    reports: mpsc::UnboundedSender<Report>,
) {
    let jobs = Arc::new(Mutex::new(jobs));
    let stop = Arc::new(AtomicBool::new(false));
    let mut first = Some(first);
    let mut handles = Vec::with_capacity(workers);
    for _ in 0..workers {
        let conn = first.take();
        handles.push(tokio::spawn(worker(
            Arc::clone(&connector),
            conn,
            Arc::clone(&jobs),
            reports.clone(),
            Arc::clone(&stop),
        )));
    }
    for h in handles {
        let _ = h.await;
    }
}

async fn worker(
    connector: Arc<Connector>,
    mut conn: Option<AsyncSmtpConnection>,
    jobs: Arc<Mutex<mpsc::Receiver<Job>>>,
    reports: mpsc::UnboundedSender<Report>,
    stop: Arc<AtomicBool>,
) {
    let limit = connector.cfg.command_timeout;
    loop {
        let Some(job) = jobs.lock().await.recv().await else {
            break;
        };
        if stop.load(Ordering::SeqCst) {
            let _ = reports.send(Report {
                index: job.index,
                outcome: Outcome::NotAttempted("the run stopped after a fatal error".into()),
            });
            continue;
        }
        let mut open = match conn.take() {
            Some(c) => c,
            None => match connector.connect().await {
                Ok(c) => c,
                Err(e) => {
                    let fatal = e.downcast_ref::<Fatal>().is_some();
                    if fatal {
                        stop.store(true, Ordering::SeqCst);
                    }
                    let _ = reports.send(Report {
                        index: job.index,
                        outcome: Outcome::Failed {
                            permanent: false,
                            reason: format!("{e:#}"),
                        },
                    });
                    continue;
                }
            },
        };
        let (outcome, usable) = send_one(&mut open, &job, limit).await;
        if usable {
            conn = Some(open);
        } else {
            open.abort().await;
        }
        let _ = reports.send(Report {
            index: job.index,
            outcome,
        });
    }
    if let Some(mut c) = conn {
        let _ = timeout(limit, c.quit()).await;
    }
}
