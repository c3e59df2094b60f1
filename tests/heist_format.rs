//! Heist files: parsing, validation, `file:line:col` errors.

use std::path::Path;

use std::collections::BTreeMap;

use crew::heist::def::{Action, Batch, Then};
use crew::heist::validate::load_str;
use crew::heist::vars::Scope;
use crew::model::Host;

const GOOD: &str = r#"
[heist.deploy]
description = "Roll the web tier"
select = "role=web & env=staging"
batch = "25%"
vars = { branch = "main", n = 3 }

[[heist.deploy.step]]
name = "pull"
run = "git -C /srv/app checkout ${branch} && echo HEAD is now at abc123"
timeout = "30s"
capture = { rev = 'HEAD is now at (\w+)' }

[[heist.deploy.step]]
name = "puppet"
run = "puppet agent -t # ${rev} on ${host} (${tag.role})"
exits = [0, 2]
on_fail = { retry = 2, backoff = "5s", then = "rollback" }

[[heist.deploy.step]]
name = "conf"
put = { to = "/tmp/app-${host}.conf", content = "rev=${rev}\n", mode = 0o600 }

[[heist.deploy.rollback]]
name = "restore"
undo = "pull"
run = "git -C /srv/app checkout -"

[heist.deploy.profile.production]
select = "role=web & env=production"
batch = 2
vars = { branch = "stable" }
"#;

#[test]
fn a_good_file_loads() {
    let hs = load_str(GOOD, Path::new("deploy.toml")).expect("valid file");
    assert_eq!(hs.len(), 1);
    let h = &hs[0];
    assert_eq!(h.name, "deploy");
    assert_eq!(h.batch, Some(Batch::Percent(25)));
    assert_eq!(h.vars.get("n").map(String::as_str), Some("3"));
    assert_eq!(h.steps.len(), 3);
    assert_eq!(h.steps[0].timeout, Some(std::time::Duration::from_secs(30)));
    assert_eq!(h.steps[1].exits, vec![0, 2]);
    assert_eq!(h.steps[1].on_fail.retry, 2);
    assert_eq!(h.steps[1].on_fail.then, Then::Rollback);
    assert!(matches!(h.steps[2].action, Action::Put { mode: 0o600, .. }));
    assert_eq!(h.rollback[0].undo, Some(0));
    let prod = h.profiles.get("production").expect("profile");
    assert_eq!(prod.batch, Some(Batch::Count(2)));
    assert_eq!(h.steps[1].loc.to_string(), "deploy.toml:15:8");
}

fn errors(text: &str) -> String {
    load_str(text, Path::new("h.toml"))
        .expect_err("should be rejected")
        .to_string()
}

#[test]
fn unknown_field_is_reported_at_its_place() {
    let e = errors(
        "[heist.a]\nselect = \"*\"\n[[heist.a.step]]\nname = \"x\"\nrun = \"true\"\nretries = 3\n",
    );
    assert!(e.starts_with("h.toml:6:1: "), "{e}");
    assert!(e.contains("retries"), "{e}");
}

#[test]
fn syntax_error_has_line_and_column() {
    let e = errors("[heist.a]\nselect = \"*\n");
    assert!(e.starts_with("h.toml:2:"), "{e}");
}

#[test]
fn bad_then_and_bad_batch() {
    let e = errors("[heist.a]\nselect = \"*\"\nbatch = \"0%\"\n[[heist.a.step]]\nname = \"x\"\nrun = \"true\"\non_fail = { then = \"explode\" }\n");
    assert!(e.contains("h.toml:7:"), "{e}");
    assert!(e.contains("explode"), "{e}");
    let e = errors("[heist.a]\nselect = \"*\"\nbatch = \"0%\"\n[[heist.a.step]]\nname = \"x\"\nrun = \"true\"\n");
    assert_eq!(
        e,
        "h.toml:3:9: batch: expected a host count (at least 1) or a percentage such as \"25%\""
    );
}

#[test]
fn unknown_variables_and_bad_regexes_are_located() {
    let text = "[heist.a]\nselect = \"*\"\nvars = { v = \"1\" }\n\
                [[heist.a.step]]\nname = \"one\"\nrun = \"echo ${v} ${nope}\"\ncapture = { x = 'a(b' }\n\
                [[heist.a.step]]\nname = \"two\"\nrun = \"echo ${later}\"\n\
                [[heist.a.step]]\nname = \"three\"\nrun = \"echo ok\"\ncapture = { later = 'ok' }\n";
    let e = errors(text);
    let lines: Vec<&str> = e.lines().collect();
    assert_eq!(lines.len(), 3, "{e}");
    assert!(
        lines[0].starts_with("h.toml:6:18: step `one`: unknown variable `${nope}`"),
        "{e}"
    );
    assert!(
        lines[1].starts_with("h.toml:7:17: capture `x`: bad regex: unclosed group"),
        "{e}"
    );
    assert!(
        lines[2].starts_with("h.toml:10:13: step `two`: unknown variable `${later}`"),
        "{e}"
    );
}

#[test]
fn captures_of_earlier_steps_and_builtins_are_defined() {
    let text = "[heist.a]\nselect = \"*\"\n\
                [[heist.a.step]]\nname = \"one\"\nrun = \"echo v=7\"\ncapture = { v = 'v=(?P<num>\\d+)' }\n\
                [[heist.a.step]]\nname = \"two\"\nrun = \"echo ${v} ${num} ${host} ${tag.role} $${HOME}\"\n";
    let hs = load_str(text, Path::new("h.toml")).expect("all defined");
    // Step two renders with what step one captured (the whole match's group and the named
    // group), the host's name and tag, and `$${` as a literal `${` for the shell.
    let mut host = Host::local("web1");
    host.tags = vec!["role=web".into()];
    let captures: BTreeMap<String, String> = [
        ("v".to_string(), "7".to_string()),
        ("num".to_string(), "7".to_string()),
    ]
    .into();
    let scope = Scope {
        globals: &BTreeMap::new(),
        host: &host,
        captures: &captures,
    };
    let two = &hs[0].steps[1];
    let rendered = scope.render(two.templates()[0]).expect("renders");
    assert_eq!(rendered, "echo 7 7 web1 web ${HOME}");
    // Without step one's captures (it did not run on this host) the step cannot render.
    let none = BTreeMap::new();
    let scope = Scope {
        captures: &none,
        ..scope
    };
    let err = scope
        .render(two.templates()[0])
        .expect_err("v is not captured");
    assert_eq!(err.to_string(), "undefined variable `v`");
}

#[test]
fn step_shapes_are_checked() {
    let e = errors("[heist.a]\nselect = \"*\"\n[[heist.a.step]]\nname = \"x\"\nrun = \"true\"\nfetch = { from = \"/a\", to = \"b\" }\n");
    assert!(
        e.contains("h.toml:4:8: step `x`: give exactly one of"),
        "{e}"
    );
    let e = errors("[heist.a]\nselect = \"*\"\n[[heist.a.step]]\nname = \"x\"\nrun = \"true\"\n[[heist.a.rollback]]\nname = \"r\"\nundo = \"y\"\nrun = \"true\"\n");
    assert!(e.contains("h.toml:8:8: undo: no step named `y`"), "{e}");
    let e = errors("[heist.a]\nselect = \"*\"\n");
    assert!(e.contains("has no steps"), "{e}");
}

#[test]
fn the_shipped_demo_heists_check_out() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("heists/demo.toml");
    let hs = crew::heist::validate::load_file(&path).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = hs.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["careful", "flaky", "hello", "release"]);
}

#[test]
fn stdin_goes_with_run_steps_only_and_once() {
    let hs = load_str(
        "[heist.a]\nselect = \"*\"\n[[heist.a.step]]\nname = \"x\"\nrun = \"cat\"\nstdin = \"hi ${host}\\n\"\n\
         [[heist.a.step]]\nname = \"y\"\nrun = \"wc -c\"\nstdin_from = \"files/data\"\n",
        Path::new("/srv/heists/h.toml"),
    )
    .expect("valid");
    use crew::heist::def::StdinSource;
    assert!(matches!(hs[0].steps[0].stdin, Some(StdinSource::Text(_))));
    match &hs[0].steps[1].stdin {
        Some(StdinSource::File(p)) => assert_eq!(p, Path::new("/srv/heists/files/data")),
        other => panic!("stdin_from beside the heist file: {other:?}"),
    }
    let e = errors("[heist.a]\nselect = \"*\"\n[[heist.a.step]]\nname = \"x\"\nrun = \"cat\"\nstdin = \"a\"\nstdin_from = \"f\"\n");
    assert!(
        e.starts_with("h.toml:7:14: ") && e.contains("not both"),
        "{e}"
    );
    let e = errors("[heist.a]\nselect = \"*\"\n[[heist.a.step]]\nname = \"x\"\nput = { to = \"/x\", content = \"c\" }\nstdin = \"a\"\n");
    assert!(
        e.starts_with("h.toml:6:9: ") && e.contains("go with `run`"),
        "{e}"
    );
    let e = errors("[heist.a]\nselect = \"*\"\n[[heist.a.step]]\nname = \"x\"\nrun = \"cat\"\nstdin = \"${nope}\"\n");
    assert!(e.contains("unknown variable `${nope}`"), "{e}");
}

#[test]
fn become_on_heists_and_steps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("h.toml");
    std::fs::write(
        &p,
        "[heist.a]\nselect = \"*\"\nbecome = true\n\n\
         [[heist.a.step]]\nname = \"root\"\nrun = \"id -u\"\n\n\
         [[heist.a.step]]\nname = \"me\"\nbecome = false\nrun = \"id -u\"\n\n\
         [[heist.a.step]]\nname = \"pg\"\nbecome_user = \"postgres\"\nrun = \"id -u\"\n\n\
         [[heist.a.step]]\nname = \"here\"\nlocal = true\nbecome = false\nrun = \"true\"\n\n\
         [heist.b]\nselect = \"*\"\n[[heist.b.step]]\nname = \"x\"\nrun = \"true\"\n",
    )
    .expect("write");
    let heists = crew::heist::validate::load_file(&p).expect("valid");
    let a = heists.iter().find(|h| h.name == "a").expect("a");
    let users: Vec<Option<&str>> = a.steps.iter().map(|s| s.become_user.as_deref()).collect();
    assert_eq!(users, [Some("root"), None, Some("postgres"), None]);
    assert!(a.needs_sudo());
    assert!(!heists
        .iter()
        .find(|h| h.name == "b")
        .expect("b")
        .needs_sudo());

    std::fs::write(
        &p,
        "[heist.a]\nselect = \"*\"\nbecome = true\n\n\
         [[heist.a.step]]\nname = \"here\"\nlocal = true\nrun = \"true\"\n",
    )
    .expect("write");
    let e = crew::heist::validate::load_file(&p).expect_err("local + become");
    assert!(
        e.to_string().contains("`become` applies to steps on hosts"),
        "{e}"
    );
}
