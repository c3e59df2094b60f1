//! Host certificates against a real sshd serving one (`HostCertificate`, signed with
//! `ssh-keygen -s`), checked through `@cert-authority` lines in known_hosts: accepted when
//! valid; refused with the reason when the principal is wrong, the certificate expired, it is
//! a user certificate, another CA signed it, or the CA (or the key) is `@revoked`; the plain
//! key still works where known_hosts records it (OpenSSH's fallback).

mod support;

use std::path::PathBuf;

use crew::daemon::ssh::{self, SshOptions};
use crew::model::{ErrorKind, Host};
use support::sshd::{FleetOptions, HostCert, SshdFleet};

fn opts() -> SshOptions {
    // A build hash is not needed to connect: no agent is started here.
    SshOptions {
        agent_build: "unused".into(),
        ..SshOptions::for_agent(PathBuf::from("/dev/null")).expect("options")
    }
}

fn fleet(principals: Option<&[&str]>, validity: &str, user_cert: bool) -> Option<SshdFleet> {
    support::require_tool("sshd").then(|| {
        SshdFleet::start_with(
            1,
            FleetOptions {
                host_cert: Some(HostCert {
                    principals: principals.map(|p| p.iter().map(|s| s.to_string()).collect()),
                    validity: validity.into(),
                    user_cert,
                }),
                ..FleetOptions::default()
            },
        )
    })
}

/// The fleet's host, checked against known_hosts `lines` only.
fn host(f: &SshdFleet, lines: &str) -> Host {
    Host {
        known_hosts: vec![f.file("known_hosts_cert", lines)],
        ..f.hosts()[0].clone()
    }
}

fn ca_line(f: &SshdFleet) -> String {
    format!(
        "@cert-authority [127.*]:* {}\n",
        f.ca_pub.as_deref().expect("the fleet has a CA")
    )
}

async fn refused(h: &Host) -> String {
    match ssh::connect(h, &opts()).await {
        Ok(_) => panic!("{} connected but should have been refused", h.name),
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::Hostkey, "{e}");
            e.to_string()
        }
    }
}

#[tokio::test]
async fn a_valid_host_certificate_from_a_listed_ca_is_accepted() {
    let Some(f) = fleet(None, "always:forever", false) else {
        return;
    };
    let h = host(&f, &ca_line(&f));
    let s = ssh::connect(&h, &opts())
        .await
        .unwrap_or_else(|e| panic!("certificate not accepted: {e}"));
    assert!(
        s.negotiated().contains("hostkey=ssh-ed25519"),
        "{}",
        s.negotiated()
    );
    // Nothing was learned: a certificate is trusted through its CA, not recorded.
    let kh = std::fs::read_to_string(&h.known_hosts[0]).expect("known_hosts");
    assert_eq!(kh, ca_line(&f));
}

#[tokio::test]
async fn a_certificate_for_another_name_is_refused_naming_its_principals() {
    let Some(f) = fleet(
        Some(&["db.example.org", "10.9.9.9"]),
        "always:forever",
        false,
    ) else {
        return;
    };
    let h = host(&f, &ca_line(&f));
    let m = refused(&h).await;
    assert!(
        m.contains(&format!(
            "it is not valid for {} (its principals: db.example.org, 10.9.9.9)",
            h.address
        )),
        "{m}"
    );
    // With the plain key recorded too, the host is accepted by its key, as ssh does.
    let both = host(
        &f,
        &format!("{}[{}]:{} {}\n", ca_line(&f), h.address, h.port, f.host_pub),
    );
    ssh::connect(&both, &opts())
        .await
        .unwrap_or_else(|e| panic!("plain key fallback: {e}"));
}

#[tokio::test]
async fn an_expired_certificate_is_refused() {
    let Some(f) = fleet(None, "-3d:-1d", false) else {
        return;
    };
    let m = refused(&host(&f, &ca_line(&f))).await;
    assert!(m.contains("it EXPIRED at "), "{m}");
    let Some(f) = fleet(None, "+1d:+2d", false) else {
        return;
    };
    let m = refused(&host(&f, &ca_line(&f))).await;
    assert!(m.contains("it is not valid before "), "{m}");
}

#[tokio::test]
async fn a_revoked_ca_or_key_is_refused_even_with_everything_else_valid() {
    let Some(f) = fleet(None, "always:forever", false) else {
        return;
    };
    let ca = f.ca_pub.clone().expect("ca");
    let m = refused(&host(&f, &format!("{}@revoked * {ca}\n", ca_line(&f)))).await;
    assert!(m.contains("the CA that signed it"), "{m}");
    assert!(m.contains("is REVOKED by known_hosts"), "{m}");
    // The host's own key revoked, its plain key recorded as well: still refused.
    let h = host(&f, &format!("{}@revoked * {}\n", ca_line(&f), f.host_pub));
    let m = refused(&h).await;
    assert!(m.contains("its key (") && m.contains("is REVOKED"), "{m}");
}

#[tokio::test]
async fn another_ca_or_a_user_certificate_is_refused() {
    let Some(f) = fleet(None, "always:forever", false) else {
        return;
    };
    // A CA line for this host, but with some other key than the signer's.
    let m = refused(&host(
        &f,
        &format!("@cert-authority [127.*]:* {}\n", f.other_pub),
    ))
    .await;
    assert!(
        m.contains("which is not the CA of the @cert-authority line(s) for this host"),
        "{m}"
    );
    let Some(u) = fleet(None, "always:forever", true) else {
        return;
    };
    let m = refused(&host(&u, &ca_line(&u))).await;
    assert!(m.contains("it is a user certificate"), "{m}");
}
