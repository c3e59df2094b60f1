//! The selection language: every operator, precedence, globs, regex, groups, facts,
//! outcomes, and error positions with caret rendering.

use std::collections::{BTreeMap, HashMap};

use crew::model::Host;
use crew::model::Verdict;
use crew::select::{self, Context, NoContext};

fn host(name: &str, tags: &[&str]) -> Host {
    let mut h = Host::local(name);
    h.tags = tags.iter().map(|t| t.to_string()).collect();
    h
}

fn fleet() -> Vec<Host> {
    vec![
        host("web01", &["role=web", "env=prod", "canary"]),
        host("web02", &["role=web", "env=prod"]),
        host("web03", &["role=web", "env=staging"]),
        host("web11", &["role=web", "env=staging"]),
        host("db1", &["role=db", "env=prod"]),
        host("db2", &["role=db", "env=staging", "canary"]),
        host("cache1", &["role=cache", "env=prod"]),
        // A host whose name is also someone else's bare tag.
        host("canary", &["role=test"]),
    ]
}

fn groups() -> BTreeMap<String, String> {
    [
        ("frontend", "role=web | role=cache"),
        ("prodfront", "@frontend & env=prod"),
        ("loop1", "@loop2 | db1"),
        ("loop2", "web01 & @loop1"),
        ("broken", "role=web &"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

#[derive(Default)]
struct Ctx {
    facts: HashMap<(String, String), String>,
    outcomes: HashMap<String, Verdict>,
}

impl Context for Ctx {
    fn fact(&self, host: &str, key: &str) -> Option<String> {
        self.facts
            .get(&(host.to_string(), key.to_string()))
            .cloned()
    }
    fn outcome(&self, host: &str) -> Option<Verdict> {
        self.outcomes.get(host).copied()
    }
}

/// Names of the fleet hosts `text` selects, comma-joined in fleet order.
fn pick_with(text: &str, ctx: &dyn Context) -> String {
    let expr = select::parse(text).unwrap_or_else(|e| panic!("{text}: {}", e.render(text)));
    let g = groups();
    let names: Vec<String> = fleet()
        .iter()
        .filter(|h| expr.matches(h, &g, ctx).expect("evaluates"))
        .map(|h| h.name.clone())
        .collect();
    names.join(",")
}

fn pick(text: &str) -> String {
    pick_with(text, &NoContext)
}

#[test]
fn tags_names_and_bare_words() {
    assert_eq!(pick("role=db"), "db1,db2");
    assert_eq!(pick("role!=web"), "db1,db2,cache1,canary");
    assert_eq!(pick("env=staging"), "web03,web11,db2");
    // A bare word is a host name or a bare tag: `canary` is both here.
    assert_eq!(pick("canary"), "web01,db2,canary");
    assert_eq!(pick("web02"), "web02");
    assert_eq!(pick("nosuchhost"), "");
    // Tag values may be globs.
    assert_eq!(pick("role=ca*"), "cache1");
}

#[test]
fn nodesets_globs_and_regex() {
    assert_eq!(pick("web[01-02]"), "web01,web02");
    assert_eq!(pick("web[01-03,11]"), "web01,web02,web03,web11");
    assert_eq!(pick("db*"), "db1,db2");
    assert_eq!(pick("web?1"), "web01,web11");
    assert_eq!(pick("*1"), "web01,web11,db1,cache1");
    assert_eq!(pick("/^web0[1-2]$/"), "web01,web02");
    assert_eq!(pick(r"/^(db|cache)\d$/"), "db1,db2,cache1");
    // `\/` inside a regex is a literal slash (no host has one).
    assert_eq!(pick(r"/a\/b/"), "");
}

#[test]
fn operators_and_precedence() {
    assert_eq!(pick("role=db | role=cache"), "db1,db2,cache1");
    assert_eq!(pick("role=db , role=cache"), "db1,db2,cache1");
    assert_eq!(pick("role=db,role=cache"), "db1,db2,cache1");
    assert_eq!(pick("role=web & env=staging"), "web03,web11");
    assert_eq!(pick("!role=web"), "db1,db2,cache1,canary");
    assert_eq!(pick("!!role=db"), "db1,db2");
    // & binds tighter than |: db1 | (role=web & env=staging)
    assert_eq!(pick("db1 | role=web & env=staging"), "web03,web11,db1");
    assert_eq!(pick("(db1 | role=web) & env=staging"), "web03,web11");
    // ! binds tighter than &: (!canary) & role=web
    assert_eq!(pick("!canary & role=web"), "web02,web03,web11");
    assert_eq!(
        pick("!(canary & role=web)"),
        "web02,web03,web11,db1,db2,cache1,canary"
    );
    // , is a union exactly like |, at the same (lowest) precedence.
    assert_eq!(pick("db1 , role=web & env=staging"), "web03,web11,db1");
    assert_eq!(pick("((role=db))"), "db1,db2");
}

#[test]
fn groups_resolve_nest_and_report_cycles() {
    assert_eq!(pick("@frontend"), "web01,web02,web03,web11,cache1");
    assert_eq!(pick("@prodfront"), "web01,web02,cache1");
    assert_eq!(pick("@frontend & !@prodfront"), "web03,web11");

    let g = groups();
    let h = &fleet()[0];
    let err = |text: &str| {
        select::parse(text)
            .expect("parses")
            .matches(h, &g, &NoContext)
            .expect_err("group error")
    };
    let e = err("role=db | @loop1");
    assert_eq!(e.pos, 10);
    assert_eq!(e.message, "group cycle: @loop1 -> @loop2 -> @loop1");
    let e = err("@nope");
    assert_eq!(e.pos, 0);
    assert!(
        e.message
            .starts_with("unknown group `@nope` (known groups: @broken, @frontend"),
        "{}",
        e.message
    );
    let e = err("db1 | @broken");
    assert_eq!(e.pos, 6);
    assert!(
        e.message
            .starts_with("in group @broken = \"role=web &\": expected a host"),
        "{}",
        e.message
    );
}

#[test]
fn facts_and_outcomes_come_from_the_context() {
    let mut ctx = Ctx::default();
    for (h, os) in [("web01", "debian"), ("web02", "ubuntu"), ("db1", "debian")] {
        ctx.facts.insert((h.into(), "os".into()), os.into());
    }
    ctx.facts.insert(
        ("db2".into(), "pretty".into()),
        "Debian GNU/Linux 12".into(),
    );
    ctx.outcomes.insert("web01".into(), Verdict::Failed);
    ctx.outcomes.insert("web02".into(), Verdict::Ok);
    ctx.outcomes.insert("db1".into(), Verdict::Timeout);
    ctx.outcomes.insert("db2".into(), Verdict::Unreachable);
    ctx.outcomes.insert("cache1".into(), Verdict::Killed);

    assert_eq!(pick_with("fact.os=debian", &ctx), "web01,db1");
    assert_eq!(
        pick_with("fact.os!=debian & role=web", &ctx),
        "web02,web03,web11"
    );
    assert_eq!(pick_with("fact.os=deb*", &ctx), "web01,db1");
    assert_eq!(
        pick_with("fact.pretty=\"Debian GNU/Linux 12\"", &ctx),
        "db2"
    );
    assert_eq!(pick_with("?failed", &ctx), "web01");
    assert_eq!(pick_with("?ok", &ctx), "web02");
    assert_eq!(pick_with("?timeout | ?unreachable", &ctx), "db1,db2");
    assert_eq!(pick_with("?killed", &ctx), "cache1");
    assert_eq!(pick_with("role=web & !?ok", &ctx), "web01,web03,web11");
    // Without a context, facts and outcomes match nothing.
    assert_eq!(pick("fact.os=debian | ?failed"), "");

    let uses = |t: &str| select::parse(t).expect("parses").uses_facts();
    assert!(uses("role=web & !(fact.os=debian)"));
    assert!(!uses("role=web | ?failed"));
}

#[test]
fn errors_point_at_the_position_with_what_was_expected() {
    let cases: &[(&str, usize, &str)] = &[
        ("", 0, "expected a selection, found nothing"),
        (
            "role=web &",
            10,
            "expected a host, tag, nodeset, `@group`, `?outcome`, `/regex/`, `(` or `!`, found end of input",
        ),
        (
            "(role=web | db1",
            15,
            "expected `)` to close the `(` at column 1, found end of input",
        ),
        (
            "role=web)",
            8,
            "expected `&`, `|`, `,` or end of input (this `)` has no `(`), found `)`",
        ),
        (
            "role=web db1",
            9,
            "expected `&`, `|`, `,` or end of input, found `db1`",
        ),
        (
            "a | & b",
            4,
            "expected a host, tag, nodeset, `@group`, `?outcome`, `/regex/`, `(` or `!`, found `&`",
        ),
        ("role=", 5, "expected a value after `=`, found nothing"),
        ("=web", 0, "expected a tag name before `=`, found `=`"),
        (
            "?bogus",
            0,
            "expected `?ok`, `?failed`, `?timeout`, `?unreachable` or `?killed`, found `?bogus`",
        ),
        ("@ & x", 1, "expected a group name, found a space"),
        ("/^web", 5, "expected `/` to close the regex, found end of input"),
        ("db1 | web[01-", 9, "bad nodeset: expected `]` to close this `[`"),
        ("web[3-1]", 6, "bad nodeset: range end 1 is below its start 3"),
        (
            "fact.os",
            7,
            "expected `=` or `!=` and a value after `fact.os`, found end of input",
        ),
        ("role==web", 5, "expected a value after `=`, found `=`"),
        (
            "role = web",
            5,
            "expected `&`, `|`, `,` or end of input (write tags without spaces: `role=web`), found `=`",
        ),
        (
            "role != web",
            5,
            "expected `&`, `|`, `,` or end of input (write tags without spaces: `role!=web`), found `!`",
        ),
    ];
    for (text, pos, message) in cases {
        let e = select::parse(text).expect_err(text);
        assert_eq!(
            (e.pos, e.message.as_str()),
            (*pos, *message),
            "for {text:?}"
        );
    }
    let e = select::parse("/web[/").expect_err("bad regex");
    assert_eq!(e.pos, 0);
    assert!(e.message.starts_with("bad regex /web[/: "), "{}", e.message);
    assert_eq!(
        select::parse("role=web &")
            .expect_err("x")
            .expected
            .as_deref(),
        Some("a host, tag, nodeset, `@group`, `?outcome`, `/regex/`, `(` or `!`")
    );
}

#[test]
fn render_puts_a_caret_under_the_error() {
    let text = "role=web & (db1 | db2";
    let e = select::parse(text).expect_err("unclosed paren");
    assert_eq!(
        e.render(text),
        "  role=web & (db1 | db2\n                       ^ expected `)` to close the `(` at column 12, found end of input"
    );
    assert_eq!(e.column(text), 22);
    // Columns count characters, not bytes.
    let text = "rôle=wéb & )";
    let e = select::parse(text).expect_err("stray paren");
    let rendered = e.render(text);
    let caret_line = rendered.lines().nth(1).expect("caret line");
    assert_eq!(caret_line.find('^'), Some(2 + 11), "{rendered}");
}

#[test]
fn absurd_inputs_are_errors_not_crashes() {
    let deep = format!("{}web01{}", "(".repeat(1000), ")".repeat(1000));
    let e = select::parse(&deep).expect_err("too deep");
    assert_eq!(e.pos, 64);
    assert!(
        e.message.starts_with("selection nested too deeply"),
        "{}",
        e.message
    );
    let nots = format!("{}web01", "!".repeat(65));
    assert!(select::parse(&nots).is_err());
    assert_eq!(pick(&format!("{}web01", "!".repeat(60))), "web01");

    let long = vec!["web01"; 5000].join("|");
    let e = select::parse(&long).expect_err("too long");
    assert!(e.message.starts_with("selection too long"), "{}", e.message);
    let ok = vec!["web01"; 2000].join("|");
    assert_eq!(pick(&ok), "web01");
}
