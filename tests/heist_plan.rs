//! Plans: waves, variable precedence, undefined variables rejected before anything runs.

use std::path::Path;

use crew::heist::plan::{self, parse_sets};
use crew::heist::validate::load_str;
use crew::model::Host;

const FILE: &str = r#"
[heist.roll]
select = "role=demo"
batch = "25%"
vars = { greeting = "hello", who = "world" }

[[heist.roll.step]]
name = "hi"
run = "echo ${greeting} ${who} from ${host} in ${tag.zone}"
capture = { said = '(\w+)' }

[[heist.roll.step]]
name = "again"
run = "echo ${said}"

[heist.roll.profile.big]
batch = 3
vars = { who = "fleet" }
"#;

fn hosts(n: usize, zone: bool) -> Vec<Host> {
    (1..=n)
        .map(|i| {
            let mut h = Host::local(&format!("demo{i:02}"));
            h.tags = vec!["role=demo".into()];
            if zone {
                h.tags.push("zone=z1".into());
            }
            h
        })
        .collect()
}

#[test]
fn waves_follow_the_batch() {
    assert_eq!(plan::waves(5, None), vec![vec![0, 1, 2, 3, 4]]);
    let w = plan::waves(10, Some(crew::heist::def::Batch::Percent(25)));
    assert_eq!(w.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 2, 2, 2]);
    let w = plan::waves(3, Some(crew::heist::def::Batch::Percent(10)));
    assert_eq!(w.len(), 3, "at least one host per wave");
    let w = plan::waves(7, Some(crew::heist::def::Batch::Count(3)));
    assert_eq!(w, vec![vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
}

#[test]
fn plan_merges_vars_and_profiles() {
    let h = &load_str(FILE, Path::new("roll.toml")).expect("valid")[0];
    let sets = parse_sets(&["greeting=hey".into()]).expect("sets");
    let p = plan::build(h, Some("big"), &sets, hosts(7, true)).expect("plan");
    assert_eq!(p.waves.len(), 3);
    assert_eq!(p.globals.get("who").map(String::as_str), Some("fleet"));
    let text = p.describe();
    assert!(text.contains("echo hey fleet from demo07 in z1"), "{text}");
    assert!(
        text.contains("echo ${said}"),
        "captures stay unresolved in a dry run: {text}"
    );
    assert!(text.contains("wave 3/3"), "{text}");

    let p = plan::build(h, None, &[], hosts(8, true)).expect("plan");
    assert_eq!(p.waves.len(), 4, "25% of 8 = 2 per wave");
}

#[test]
fn undefined_variables_are_rejected_per_host() {
    let h = &load_str(FILE, Path::new("roll.toml")).expect("valid")[0];
    let e = plan::build(h, None, &[], hosts(2, false)).expect_err("no zone tag");
    assert_eq!(e.0.len(), 2, "{e}");
    assert!(
        e.0[0].starts_with(
            "roll.toml:8:8: step `hi` on host demo01: undefined variable `${tag.zone}`"
        ),
        "{e}"
    );
    assert!(plan::build(h, Some("nope"), &[], hosts(1, true)).is_err());
    assert!(plan::build(h, None, &[], Vec::new())
        .expect_err("no hosts")
        .to_string()
        .contains("matches no host"));
    assert!(parse_sets(&["host=x".into()]).is_err());
    assert!(parse_sets(&["novalue".into()]).is_err());
}
