//! The dispatcher's web board (`src/board/`): `board passwd` and `board login-link`, sign-in by
//! password and by link (cookie flags, rate limit, one use, expiry), CSRF and roles on every
//! form, actions queued through the outbox as the CLI queues them, Finnish and English pages,
//! and the live event stream.

use std::process::Stdio;

use tokio::io::AsyncWriteExt;

const PASSWORD: &str = "Salasana-kaisa-1";

/// Runs `huoltosync board passwd ARGS` with `stdin` piped in: exit code, stdout, stderr.
async fn passwd(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_huoltosync"))
        .args(["board", "passwd"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn board_passwd_prints_only_a_users_entry_that_verifies() {
    let (code, out, err) = passwd(
        &["kaisa", "--role", "dispatcher"],
        &format!("{PASSWORD}\n{PASSWORD}\n"),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains(PASSWORD) && !err.contains(PASSWORD));
    let t: toml::Table = out.parse().expect("stdout is TOML");
    let user = &t["board"]["users"][0];
    assert_eq!(user["name"].as_str(), Some("kaisa"));
    assert_eq!(user["role"].as_str(), Some("dispatcher"));
    let hash = user["password_hash"].as_str().unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(huoltosync::board::verify_password(PASSWORD, hash));
    assert!(!huoltosync::board::verify_password(
        "Salasana-kaisa-2",
        hash
    ));
    // Hints go to stderr.
    assert!(err.contains("config"), "{err}");
}

#[tokio::test]
async fn board_passwd_refuses_a_mismatch_an_empty_or_short_password_and_a_bad_role() {
    for (args, input) in [
        (&["kaisa"][..], format!("{PASSWORD}\n{PASSWORD}x\n")),
        (&["kaisa"][..], "\n\n".to_owned()),
        (&["kaisa"][..], String::new()),
        (&["kaisa"][..], "lyhyt\nlyhyt\n".to_owned()),
        (
            &["kaisa", "--role", "admin"][..],
            format!("{PASSWORD}\n{PASSWORD}\n"),
        ),
    ] {
        let (code, out, err) = passwd(args, &input).await;
        assert_eq!(code, 2, "{args:?} {input:?}: {err}");
        assert!(out.is_empty(), "{out}");
        assert!(err.starts_with("error: "), "{err}");
    }
}
