//! AUTH XOAUTH2 against aiosmtpd with an authenticator that checks the bearer token the
//! way Gmail and Office 365 do: a bad token gets a 334 with an error, then 535.

use std::process::{Child, Command};

use crate::harness::{Project, python_with, start_until_ready, write_test_pki};

const SERVER: &str = r#"
import base64, json, ssl, sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
port, tls, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
GOOD = {f"ya29.token-{n}" for n in range(1, 10)}
def log(**event):
    with open(out, "a") as f:
        f.write(json.dumps(event) + "\n")
class Handler:
    async def auth_XOAUTH2(self, server, args):
        raw = base64.b64decode(args[1]).decode() if len(args) > 1 else ""
        fields = dict(p.split("=", 1) for p in raw.split("\x01") if "=" in p)
        user, token = fields.get("user"), fields.get("auth", "").removeprefix("Bearer ")
        if user == "weekly@harbour.example" and token in GOOD:
            log(auth="ok", token=token)
            return AuthResult(success=True)
        log(auth="refused")
        error = json.dumps({"status": "401", "schemes": "bearer", "scope": "https://mail.google.com/"})
        await server.challenge_auth(error)
        return AuthResult(success=False, message="535 5.7.8 Username and Password not accepted")
    async def handle_DATA(self, server, session, envelope):
        log(to=envelope.rcpt_tos)
        return "250 2.0.0 OK"
context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(tls + "/cert.pem", tls + "/key.pem")
Controller(Handler(), hostname="127.0.0.1", port=port, tls_context=context,
           require_starttls=True, auth_require_tls=True).start()
print("ready", flush=True)
while True:
    time.sleep(3600)
"#;

/// aiosmtpd offering STARTTLS and XOAUTH2 on a free port; what it saw is in `events.jsonl`.
struct OauthServer {
    child: Child,
    port: u16,
    events: std::path::PathBuf,
}

impl OauthServer {
    fn start(p: &Project) -> OauthServer {
        let python = python_with("aiosmtpd", &["aiosmtpd==1.4.6"]);
        write_test_pki(&p.path("tls"));
        p.write("server.py", SERVER);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let events = p.path("events.jsonl");
        let mut command = Command::new(python);
        command
            .arg(p.path("server.py"))
            .arg(port.to_string())
            .arg(p.path("tls"))
            .arg(&events);
        let child = start_until_ready(command, "aiosmtpd");
        OauthServer {
            child,
            port,
            events,
        }
    }

    fn events(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.events)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect()
    }
}

impl Drop for OauthServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn use_oauth(p: &Project, server: &OauthServer, token: &str) {
    p.use_smtp(&format!(
        "host = \"localhost\"\nport = {}\nsecurity = \"starttls\"\nca_file = \"tls/ca.pem\"\nusername = \"weekly@harbour.example\"\n{token}\nmax_per_connection = 1\nconnections = 1\n",
        server.port
    ));
}

#[test]
fn xoauth2_reads_a_fresh_token_for_each_connection_and_never_prints_it() {
    let p = Project::new();
    let server = OauthServer::start(&p);
    // A refresher stand-in: each run of the command hands out the next token.
    p.write(
        "token.sh",
        "n=$(cat counter 2>/dev/null || echo 0); n=$((n+1)); echo $n > counter; echo \"ya29.token-$n\"\n",
    );
    use_oauth(&p, &server, "oauth_token_command = \"sh token.sh\"");
    let run = p.run(&["send"]);
    run.expect_code(0);
    let events = server.events();
    let delivered = events.iter().filter(|e| e.get("to").is_some()).count();
    assert_eq!(delivered, 3, "{events:?}");
    let used: Vec<&str> = events.iter().filter_map(|e| e["token"].as_str()).collect();
    let distinct: std::collections::BTreeSet<&&str> = used.iter().collect();
    // At least one connection a message (max_per_connection = 1), each authenticated with
    // its own reading of the command, none with the first reading (the check made before
    // anything is sent).
    assert!(
        used.len() >= 3 && distinct.len() == used.len(),
        "{events:?}"
    );
    assert!(!used.contains(&"ya29.token-1"), "{events:?}");
    let all = run.stdout() + &run.stderr();
    assert!(!all.contains("ya29."), "{all}");

    let relay = p.run(&["check", "--relay"]);
    relay.expect_code(0);
    assert!(
        relay
            .stdout()
            .contains("authenticated as weekly@harbour.example (XOAUTH2)"),
        "{}",
        relay.stdout()
    );
}

#[test]
fn a_refused_token_stops_the_run_sends_nothing_and_is_never_printed() {
    let p = Project::new();
    let server = OauthServer::start(&p);
    p.write("access-token", "ya29.expired-and-secret\n");
    std::fs::set_permissions(
        p.path("access-token"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .expect("chmod");
    use_oauth(&p, &server, "oauth_token_file = \"access-token\"");
    let run = p.run(&["send"]);
    run.expect_code(1);
    let all = run.stdout() + &run.stderr();
    assert!(all.contains("refused the credentials"), "{all}");
    assert!(!all.contains("ya29.expired-and-secret"), "{all}");
    let events = server.events();
    assert!(events.iter().any(|e| e["auth"] == "refused"), "{events:?}");
    assert!(!events.iter().any(|e| e.get("to").is_some()), "{events:?}");

    // A token command that fails names itself and its error output, not a token.
    use_oauth(
        &p,
        &server,
        "oauth_token_command = \"echo 'refresh token revoked' >&2; exit 3\"",
    );
    let run = p.run(&["send"]);
    run.expect_code(1);
    assert!(
        run.stderr().contains("refresh token revoked")
            && run
                .stderr()
                .contains("cannot read the SMTP OAuth access token"),
        "{}",
        run.stderr()
    );
}

#[test]
fn a_token_with_a_password_or_without_a_username_is_a_config_problem() {
    let p = Project::new();
    p.use_smtp(
        "host = \"smtp.example.net\"\nusername = \"weekly\"\npassword_env = \"P\"\noauth_token_file = \"t\"\n",
    );
    let run = p.run(&["check"]);
    run.expect_code(3);
    assert!(
        run.stderr()
            .contains("an OAuth token and a password are both set"),
        "{}",
        run.stderr()
    );
    p.use_smtp("host = \"smtp.example.net\"\noauth_token_command = \"echo t\"\n");
    let run = p.run(&["check"]);
    run.expect_code(3);
    assert!(
        run.stderr()
            .contains("a password or token is set but no `username`"),
        "{}",
        run.stderr()
    );
}
