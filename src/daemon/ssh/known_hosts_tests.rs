//! Unit tests of [`super`]: matching, lookups with file and line, learning (also concurrent).

use super::*;

const KEY_A: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKljagKt1SfOH3230Cjr6IrgQ+Z4ikFAx+h0maYUJuvl";
const KEY_B: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKKLqUO0F+Xo6FV4SmhhjD3yw1omMqyHGDgIpcytO20A";

fn key(s: &str) -> PublicKey {
    PublicKey::from_openssh(s).expect("test key")
}

fn file(dir: &tempfile::TempDir, text: &str) -> PathBuf {
    let p = dir.path().join("kh");
    std::fs::write(&p, text).expect("write");
    p
}

#[test]
fn glob_and_patterns() {
    assert!(glob(b"[127.0.0.5]:2222", b"[127.0.0.*]:2222"));
    assert!(glob(b"web01", b"web0?"));
    assert!(!glob(b"web10", b"web0?"));
    assert!(host_matches("db1", "web*,db1"));
    assert!(!host_matches("db1", "*,!db1"));
    assert!(host_matches("Db1", "db1"));
}

#[tokio::test]
async fn known_changed_revoked_unknown_with_file_and_line() {
    let d = tempfile::tempdir().expect("tmp");
    let kh = file(
        &d,
        &format!("# comment\n[h]:2222\t{KEY_B}\nother {KEY_A}\nh  {KEY_A}\n"),
    );
    let files = vec![kh.clone()];
    assert_eq!(
        lookup(&files, "h", 2222, &key(KEY_A)),
        Lookup::Changed(Place {
            file: kh.clone(),
            line: 2
        })
    );
    assert_eq!(
        lookup(&files, "h", 22, &key(KEY_A)),
        Lookup::Known(Place {
            file: kh.clone(),
            line: 4
        })
    );
    assert!(matches!(
        lookup(&files, "nobody", 22, &key(KEY_A)),
        Lookup::Unknown { .. }
    ));
    let revoked = file(&d, &format!("@revoked * {KEY_A}\nh {KEY_A}\n"));
    let err = verify(&[revoked], "h", 22, &key(KEY_A), true)
        .await
        .expect_err("revoked");
    assert!(err.to_string().contains("REVOKED"), "{err}");
    assert!(err.to_string().contains("kh:1"), "{err}");
}

#[test]
fn hashed_entry_matches() {
    // `|1|` salt/hash computed here the way ssh-keygen -H does.
    let salt = [7u8; 20];
    let mac = Hmac::<sha1::Sha1>::new_from_slice(&salt)
        .expect("hmac")
        .chain_update(b"[10.0.0.1]:2200")
        .finalize()
        .into_bytes();
    let line = format!(
        "|1|{}|{} {KEY_A}\n",
        Base64::encode_string(&salt),
        Base64::encode_string(&mac)
    );
    let d = tempfile::tempdir().expect("tmp");
    let files = vec![file(&d, &line)];
    assert!(matches!(
        lookup(&files, "10.0.0.1", 2200, &key(KEY_A)),
        Lookup::Known(_)
    ));
    assert!(matches!(
        lookup(&files, "10.0.0.2", 2200, &key(KEY_A)),
        Lookup::Unknown { .. }
    ));
}

#[tokio::test]
async fn accept_new_learns_into_first_file() {
    let d = tempfile::tempdir().expect("tmp");
    let kh = d.path().join("sub/known_hosts");
    let files = vec![kh.clone()];
    let err = verify(&files, "h", 2222, &key(KEY_A), false)
        .await
        .expect_err("unknown");
    assert!(err.to_string().contains("unknown"), "{err}");
    verify(&files, "h", 2222, &key(KEY_A), true)
        .await
        .expect("learned");
    assert!(matches!(
        lookup(&files, "h", 2222, &key(KEY_A)),
        Lookup::Known(_)
    ));
}

#[test]
fn learn_starts_a_new_line_after_an_unterminated_one() {
    let d = tempfile::tempdir().expect("tmp");
    let kh = file(&d, &format!("a {KEY_B}"));
    learn(&kh, "h", 22, &key(KEY_A)).expect("learn");
    let text = std::fs::read_to_string(&kh).expect("read");
    assert_eq!(text, format!("a {KEY_B}\nh {KEY_A}\n"));
}

/// Many connections learning at once: every host once, no torn or doubled line, even
/// when several connections reach the same `host:port` (aliases).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_learns_write_each_host_once() {
    let d = tempfile::tempdir().expect("tmp");
    let files = vec![d.path().join("known_hosts")];
    let mut tasks = Vec::new();
    for i in 0..100u16 {
        let files = files.clone();
        // 20 distinct ports, each learned by five connections started together.
        let port = 2200 + i / 5;
        tasks.push(tokio::spawn(async move {
            verify(&files, "10.0.0.1", port, &key(KEY_A), true).await
        }));
    }
    for t in tasks {
        t.await.expect("task").expect("learned");
    }
    let text = std::fs::read_to_string(&files[0]).expect("read");
    let mut lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 20, "{text}");
    lines.sort_unstable();
    lines.dedup();
    assert_eq!(lines.len(), 20, "each host once: {text}");
    for port in 2200..2220 {
        assert!(
            lines.contains(&format!("[10.0.0.1]:{port} {KEY_A}").as_str()),
            "{port}: {text}"
        );
    }
}

/// A file that already hashes its names (ssh's HashKnownHosts) gets hashed lines; a plain
/// one plain lines. Either way the key is then known for that host, and only that host.
#[tokio::test]
async fn accepted_keys_are_hashed_when_the_file_is() {
    let d = tempfile::tempdir().expect("tmp");
    let hashed = d.path().join("hashed");
    std::fs::write(&hashed, format!("|1|{}|{} {KEY_B}\n", "AAAA", "BBBB")).expect("write");
    accept(std::slice::from_ref(&hashed), "10.0.0.9", 2222, &key(KEY_A))
        .await
        .expect("accepted");
    let text = std::fs::read_to_string(&hashed).expect("read");
    let last = text.lines().last().expect("a line");
    assert!(last.starts_with("|1|"), "hashed: {text}");
    assert!(
        !text.contains("10.0.0.9"),
        "the name is not in clear: {text}"
    );
    assert!(matches!(
        lookup(std::slice::from_ref(&hashed), "10.0.0.9", 2222, &key(KEY_A)),
        Lookup::Known(_)
    ));
    assert!(matches!(
        lookup(std::slice::from_ref(&hashed), "10.0.0.8", 2222, &key(KEY_A)),
        Lookup::Unknown { .. }
    ));
    // Accepted again (another alias of the host): not written twice.
    accept(std::slice::from_ref(&hashed), "10.0.0.9", 2222, &key(KEY_A))
        .await
        .expect("accepted again");
    assert_eq!(
        std::fs::read_to_string(&hashed)
            .expect("read")
            .lines()
            .count(),
        2
    );

    let plain = file(&d, &format!("other {KEY_B}\n"));
    accept(std::slice::from_ref(&plain), "10.0.0.9", 2222, &key(KEY_A))
        .await
        .expect("accepted");
    let text = std::fs::read_to_string(&plain).expect("read");
    assert_eq!(text, format!("other {KEY_B}\n[10.0.0.9]:2222 {KEY_A}\n"));
}

#[tokio::test]
async fn a_changed_key_is_never_accepted_and_names_the_line_and_the_fix() {
    let d = tempfile::tempdir().expect("tmp");
    let kh = file(&d, &format!("# x\n[h]:2222 {KEY_B}\n"));
    let files = vec![kh.clone()];
    let err = accept(&files, "h", 2222, &key(KEY_A))
        .await
        .expect_err("changed");
    let msg = err.to_string();
    assert!(msg.contains("CHANGED"), "{msg}");
    assert!(msg.contains(&format!("{}:2", kh.display())), "{msg}");
    assert!(
        msg.contains(&format!("ssh-keygen -R '[h]:2222' -f '{}'", kh.display())),
        "{msg}"
    );
    let err = verify(&files, "h", 2222, &key(KEY_A), false)
        .await
        .expect_err("changed");
    assert!(
        matches!(err, SshError::HostKey(_)),
        "a changed key is a plain refusal, never a question: {err:?}"
    );
    // Unknown keys are the ones that may be asked about.
    let err = verify(&files, "other", 2222, &key(KEY_A), false)
        .await
        .expect_err("unknown");
    assert!(matches!(err, SshError::UnknownKey(_)), "{err:?}");
    assert_eq!(
        std::fs::read_to_string(&kh).expect("read").lines().count(),
        2
    );
}
