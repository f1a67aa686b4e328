//! AUTH XOAUTH2 against aiosmtpd with an authenticator that checks the bearer token the
//! way Gmail and Office 365 do: a bad token gets a 334 with an error, then 535.

use crate::harness::{Project, TlsSmtpd};

fn use_oauth(p: &Project, server: &TlsSmtpd, token: &str) {
    p.use_smtp(&format!(
        "host = \"localhost\"\nport = {}\nsecurity = \"starttls\"\nca_file = \"tls/ca.pem\"\nusername = \"weekly@harbour.example\"\n{token}\nmax_per_connection = 1\nconnections = 1\n",
        server.port
    ));
}

#[test]
fn xoauth2_reads_a_fresh_token_for_each_connection_and_never_prints_it() {
    let p = Project::new();
    let server = TlsSmtpd::start(&p, None);
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
    let server = TlsSmtpd::start(&p, None);
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
