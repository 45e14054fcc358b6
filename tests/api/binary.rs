//! The `mash` binary itself: zero-setup start, JSON logs with request ids, SIGTERM,
//! configuration errors, waiting for the database, and the migrate/openapi subcommands.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use crate::helpers::TestDb;

const BIN: &str = env!("CARGO_BIN_EXE_mash");

/// A clean environment: only what the test gives, so a developer's `.env` or shell
/// variables cannot leak in. (`.env` is read from the working directory, a temp dir here.)
fn mash(dir: &std::path::Path, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// A started `mash serve` that is killed if the test ends without stopping it (a failed
/// assertion), so no server outlives its test holding the output pipe open.
struct Server(Option<Child>);

impl Server {
    fn id(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }

    /// Waits for the process to exit on its own.
    fn wait(mut self) -> std::io::Result<std::process::ExitStatus> {
        self.0.take().expect("running").wait()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An HTTP client (reqwest here has no default TLS provider; the server installs ring, and
/// these tests may run before any in-process server did).
fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// GET `url` with a bearer token and read the JSON body.
async fn get_json(client: &reqwest::Client, url: &str, token: &str) -> serde_json::Value {
    client.get(url).bearer_auth(token).send().await.unwrap().json().await.unwrap()
}

/// Starts `mash serve` and collects its stdout lines on a channel.
fn start(dir: &std::path::Path, env: &[(&str, &str)]) -> (Server, mpsc::Receiver<String>) {
    start_command(dir, env, "serve")
}

/// Starts `mash <command>` and collects its stdout lines on a channel.
fn start_command(dir: &std::path::Path, env: &[(&str, &str)], command: &str) -> (Server, mpsc::Receiver<String>) {
    let mut child = mash(dir, env).arg(command).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (Server(Some(child)), rx)
}

/// Waits for the "listening" log line and returns the bound address.
fn wait_listening(rx: &mpsc::Receiver<String>, seen: &mut Vec<String>) -> String {
    wait_for_line(rx, seen, "listening")
}

/// Waits for the log line with this message and returns its `addr` field.
fn wait_for_line(rx: &mpsc::Receiver<String>, seen: &mut Vec<String>, message: &str) -> String {
    loop {
        let line = rx.recv_timeout(Duration::from_secs(60)).expect("server printed no listening line");
        seen.push(line.clone());
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("log line is not JSON: {line}"));
        if v["message"] == message {
            return v["addr"].as_str().unwrap().to_string();
        }
    }
}

fn sigterm(child: &Server) {
    let ok = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success();
    assert!(ok, "kill -TERM failed");
}

#[tokio::test]
async fn serve_with_no_configuration_is_ready_logs_json_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    // No DATABASE_URL: the default SQLite file under ./data is created.
    let (child, rx) = start(dir.path(), &[("PORT", "0"), ("HOST", "127.0.0.1"), ("LOG_FORMAT", "json")]);
    let mut lines = Vec::new();
    let addr = wait_listening(&rx, &mut lines);
    assert!(dir.path().join("data/mash.db").exists(), "the SQLite file is created under ./data");

    let client = client();
    let res = client.get(format!("http://{addr}/health/ready")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let res = client
        .get(format!("http://{addr}/api/v1/no-such-route"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);

    sigterm(&child);
    let status = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "graceful exit on SIGTERM, got {status}");
    lines.extend(rx.try_iter());
    let tagged: Vec<&String> = lines.iter().filter(|l| l.contains("trace-me-42")).collect();
    assert!(!tagged.is_empty(), "the request's log lines carry its id: {lines:#?}");
    for line in &tagged {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["span"]["request_id"], "trace-me-42", "{line}");
    }
    let access = tagged.iter().find(|l| l.contains("request finished")).expect("an access line");
    let v: serde_json::Value = serde_json::from_str(access).unwrap();
    assert_eq!((v["status"].as_u64(), v["route"].as_str()), (Some(404), Some("unmatched")), "{access}");
    let access = tagged.iter().find(|l| l.contains("request finished")).expect("an access line");
    let v: serde_json::Value = serde_json::from_str(access).unwrap();
    assert_eq!((v["status"].as_u64(), v["route"].as_str()), (Some(404), Some("unmatched")), "{access}");
    assert!(lines.iter().any(|l| l.contains("\"stopped\"")), "{lines:#?}");
}

#[tokio::test]
async fn serve_uses_the_configured_database() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let (child, rx) = start(
        dir.path(),
        &[("PORT", "0"), ("HOST", "127.0.0.1"), ("LOG_FORMAT", "json"), ("DATABASE_URL", db.url.as_str())],
    );
    let addr = wait_listening(&rx, &mut Vec::new());
    let res = client().get(format!("http://{addr}/health/ready")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    sigterm(&child);
    let status = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn worker_runs_queued_jobs_without_the_api_and_stops_on_sigterm() {
    use sea_orm::{EntityTrait, PaginatorTrait};
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let env = [("DATABASE_URL", db.url.as_str()), ("LOG_FORMAT", "json"), ("PORT", "0"), ("HOST", "127.0.0.1")];
    let out = mash(dir.path(), &env).args(["migrate", "up"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let conn = sea_orm::Database::connect(&db.url).await.unwrap();
    let mail = mash::mail::SendEmail {
        to: "someone@example.com".into(),
        subject: "Queued before the worker started".into(),
        body: "hello".into(),
        alert_id: None,
    };
    mash::jobs::enqueue(&conn, &mail).await.unwrap();

    let (child, rx) = start_command(dir.path(), &env, "worker");
    let mut lines = Vec::new();
    let addr = wait_for_line(&rx, &mut lines, "job workers running; /health and /metrics served");
    // The worker delivers the mail (to the log, without SMTP) and the job leaves the queue.
    let mut left = 1;
    for _ in 0..300 {
        left = mash::jobs::entity::Entity::find().count(&conn).await.unwrap();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, 0, "the queued job ran");
    let logged = mash::alerts::entity::delivery::Entity::find().all(&conn).await.unwrap();
    assert_eq!(logged.len(), 1);
    assert_eq!((logged[0].channel.as_str(), logged[0].status.as_str()), ("email", "logged"));
    // Health and metrics, and no API.
    let client = client();
    assert_eq!(client.get(format!("http://{addr}/health/ready")).send().await.unwrap().status(), 200);
    let metrics = client.get(format!("http://{addr}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("jobs_finished_total{job=\"send_email\",outcome=\"success\"} 1"), "{metrics}");
    assert_eq!(client.get(format!("http://{addr}/api/v1/users/me")).send().await.unwrap().status(), 404);
    sigterm(&child);
    let status = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "graceful exit on SIGTERM, got {status}");
    conn.close().await.ok();
}

#[test]
fn a_bad_setting_stops_the_start_with_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    for (var, value) in [("PORT", "not-a-port"), ("LOG_FORMAT", "xml"), ("DATABASE_URL", "mysql://nope")] {
        let out = mash(dir.path(), &[(var, value)]).arg("serve").output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{var}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(var), "names {var}: {stderr}");
    }
}

#[test]
fn an_unreachable_database_is_retried_with_a_log_line_per_try() {
    let dir = tempfile::tempdir().unwrap();
    let out = mash(
        dir.path(),
        &[
            ("DATABASE_URL", "postgres://postgres:pw@127.0.0.1:1/mash"),
            ("DB_CONNECT_WAIT_SECS", "1.5"),
            ("LOG_FORMAT", "json"),
        ],
    )
    .arg("serve")
    .output()
    .unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let retries = stdout.lines().filter(|l| l.contains("retrying")).count();
    assert!(retries >= 2, "expected several tries, each logged: {stdout}");
    assert!(!stdout.contains(":pw@"), "the password never reaches the log");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("cannot connect to the database"), "{stderr}");
}

#[tokio::test]
async fn migrate_subcommands_report_and_change_the_schema() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out =
            mash(dir.path(), &[("DATABASE_URL", db.url.as_str()), ("LOG_FORMAT", "json")]).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    // Every migration the binary knows, oldest first, as `status` lists them.
    let names: Vec<String> = {
        use sea_orm_migration::MigratorTrait;
        mash::migration::Migrator::migrations().iter().map(|m| m.name().to_string()).collect()
    };
    assert!(names.len() >= 8 && names[0] == "m20261122_000001_core", "{names:?}");
    let status = run(&["migrate", "status"]);
    for name in &names {
        assert!(status.contains(&format!("pending  {name}")), "{status}");
    }
    run(&["migrate", "up"]);
    let status = run(&["migrate", "status"]);
    assert!(!status.contains("pending"), "{status}");
    // `down` rolls back only the newest migration.
    run(&["migrate", "down"]);
    let status = run(&["migrate", "status"]);
    let (newest, older) = names.split_last().unwrap();
    for name in older {
        assert!(status.contains(&format!("applied  {name}")), "{status}");
    }
    assert!(status.contains(&format!("pending  {newest}")), "{status}");
    run(&["migrate", "up"]);
    run(&["migrate", "down", "--all"]);
    assert!(!run(&["migrate", "status"]).contains("applied"));
}

#[test]
fn openapi_subcommand_prints_the_spec_without_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let out = mash(dir.path(), &[]).arg("openapi").output().unwrap();
    assert!(out.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(doc["paths"]["/health/ready"].is_object());
    assert!(!dir.path().join("data").exists(), "openapi touches no database");
}

#[tokio::test]
async fn seed_is_idempotent_and_its_admin_can_sign_in() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("DATABASE_URL", db.url.as_str()),
        ("LOG_FORMAT", "json"),
        ("MASH_SEED_ADMIN_EMAIL", "Root@Example.com"),
        ("MASH_SEED_ADMIN_PASSWORD", "seeded admin passphrase"),
    ];
    let run = |args: &[&str]| {
        let out = mash(dir.path(), &env).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let first = run(&["seed", "--demo"]);
    assert!(first.contains("ADMIN: root@example.com created"), "{first}");
    assert!(first.contains("GROWER: grower@demo.mash.local created"), "{first}");
    let second = run(&["seed", "--demo"]);
    assert!(second.contains("ADMIN: root@example.com updated"), "{second}");
    assert!(!second.contains("created"), "{second}");
    assert!(second.contains("\"Demo Greenhouse\" exists"), "{second}");
    let demo_token = first
        .lines()
        .find_map(|l| l.split(" token ").nth(1))
        .expect("the demo devices' tokens are printed once")
        .trim()
        .to_string();

    // A weak seed password is refused with a clear message.
    let out = mash(
        dir.path(),
        &[
            ("DATABASE_URL", db.url.as_str()),
            ("MASH_SEED_ADMIN_EMAIL", "a@b.co"),
            ("MASH_SEED_ADMIN_PASSWORD", "password"),
        ],
    )
    .arg("seed")
    .output()
    .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("MASH_SEED_ADMIN_PASSWORD"));

    // The seeded admin signs in through the API with the ADMIN role, exactly once in the table.
    let (child, rx) = start(
        dir.path(),
        &[("PORT", "0"), ("HOST", "127.0.0.1"), ("LOG_FORMAT", "json"), ("DATABASE_URL", db.url.as_str())],
    );
    let addr = wait_listening(&rx, &mut Vec::new());
    let client = client();
    let res = client
        .post(format!("http://{addr}/api/v1/auth/login"))
        .json(&serde_json::json!({"email": "root@example.com", "password": "seeded admin passphrase"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["user"]["role"], "ADMIN");
    let token = body["accessToken"].as_str().unwrap().to_string();
    let list = get_json(&client, &format!("http://{addr}/api/v1/users?role=ADMIN"), &token).await;
    assert_eq!(list["meta"]["total"], 1, "{list}");
    let demo = get_json(&client, &format!("http://{addr}/api/v1/users?search=demo.mash.local"), &token).await;
    assert_eq!(demo["meta"]["total"], 3, "{demo}");

    // The demo greenhouse: four devices, each with a day of readings, and working tokens.
    let devices = get_json(&client, &format!("http://{addr}/api/v1/devices"), &token).await;
    assert_eq!(devices["meta"]["total"], 4, "{devices}");
    let id = devices["data"][0]["id"].as_str().unwrap();
    let history =
        get_json(&client, &format!("http://{addr}/api/v1/devices/{id}/telemetry?metric=temperature&bucket=1h"), &token)
            .await;
    assert!(history["points"].as_array().unwrap().len() >= 24, "a day of hourly points: {history}");
    let me = client
        .get(format!("http://{addr}/api/v1/devices/me"))
        .header("authorization", format!("Device {demo_token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200, "a printed demo token authenticates its device");
    sigterm(&child);
    let status = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    assert!(status.success());
}
