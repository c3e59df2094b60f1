use super::*;
use crate::model::Stream;

fn req(hosts: &[&str]) -> RunRequest {
    RunRequest {
        hosts: hosts.iter().map(|h| crate::model::Host::local(h)).collect(),
        selection: "a".into(),
        command: "true".into(),
        env: vec![],
        timeout_ms: None,
        fanout: None,
        accept_new_host_keys: false,
        who: "me".into(),
        origin: crate::model::RunOrigin::Command,
        stdin: false,
        ask_host_keys: false,
        sudo: None,
    }
}

#[test]
fn stems_stay_inside_the_run_dir() {
    assert_eq!(file_stem("web01"), "web01");
    assert_eq!(file_stem("../etc"), "_.._etc");
    assert_eq!(file_stem("a/b"), "a_b");
    assert_eq!(file_stem(""), "_");
}

#[tokio::test]
async fn ids_follow_existing_runs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(tmp.path().join("41")).expect("mkdir");
    std::fs::create_dir(tmp.path().join("junk")).expect("mkdir");
    let store = Store::open(tmp.path().to_path_buf()).expect("open");
    let (id, dir) = store.create_run(&req(&["a"])).await.expect("create");
    assert_eq!(id, 42);
    let meta = std::fs::read_to_string(dir.join("meta.json")).expect("meta");
    assert!(meta.contains("\"command\": \"true\""), "{meta}");
    // A leftover directory in the way is skipped, and its id not handed out again.
    std::fs::create_dir(tmp.path().join("43")).expect("mkdir");
    let (id2, _) = store.create_run(&req(&["a"])).await.expect("create");
    assert_eq!(id2, 44);
    let (id3, _) = store.create_run(&req(&["a"])).await.expect("create");
    assert_eq!(id3, 45);
}

#[tokio::test]
async fn a_run_reads_back_typed_in_host_order() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(tmp.path().to_path_buf()).expect("open");
    let (id, dir) = store
        .create_run(&req(&["x", "y", "z"]))
        .await
        .expect("create");
    let names: Vec<String> = ["x", "y", "z"].iter().map(|s| s.to_string()).collect();
    let w = RunSpool::start(&dir, &names);
    let mut ys = w.host(1, "y");
    ys.output(Stream::Stdout, bytes::Bytes::from_static(b"hi\n"))
        .await;
    let mut y = HostRecord::new("y");
    y.verdict = Verdict::Ok;
    y.code = Some(0);
    // Finish order (y, then x) is not the run's order; z never finished.
    ys.done(&y).await.expect("send");
    w.host(0, "x")
        .done(&HostRecord::new("x"))
        .await
        .expect("send");
    w.finish().await.expect("finish");
    assert_eq!(std::fs::read(dir.join("y.out")).expect("out"), b"hi\n");
    assert!(!dir.join("x.out").exists(), "a quiet host has no file");
    let run = read_run(&dir).expect("read");
    assert_eq!(run.meta.id, id);
    assert_eq!(run.meta.hosts, ["x", "y", "z"]);
    assert_eq!(run.meta.who, "me");
    let hosts: Vec<&str> = run.hosts.iter().map(|h| h.host.as_str()).collect();
    assert_eq!(hosts, ["x", "y"]);
    assert_eq!(run.hosts[1], y);
}

#[tokio::test]
async fn bad_lines_are_named_and_a_torn_last_line_is_dropped() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(tmp.path().to_path_buf()).expect("open");
    let (_, dir) = store.create_run(&req(&["a", "b"])).await.expect("create");
    let good = serde_json::to_string(&HostRecord::new("a")).expect("json");
    // Crash mid-append: the last line is cut short and has no newline.
    std::fs::write(
        dir.join(HOSTS_FILE),
        format!("{good}\n{{\"host\":\"b\",\"ver"),
    )
    .expect("w");
    let run = read_run(&dir).expect("torn tail tolerated");
    assert_eq!(run.hosts.len(), 1);
    std::fs::write(dir.join(HOSTS_FILE), format!("{good}\nnot json\n{good}\n")).expect("w");
    let e = format!("{:#}", read_run(&dir).expect_err("bad line"));
    assert!(e.contains("hosts.jsonl: line 2"), "{e}");
    std::fs::write(dir.join("meta.json"), "{").expect("w");
    let e = format!("{:#}", read_run(&dir).expect_err("bad meta"));
    assert!(e.contains("meta.json"), "{e}");
}

#[test]
fn runs_of_the_older_layout_still_read() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let meta = serde_json::json!({"id": 3, "who": "me", "when": "2025-01-01T00:00:00.000Z",
        "selection": "s", "command": "true", "hosts": ["a", "b"], "label": null,
        "timeout_ms": null, "fanout": null});
    std::fs::write(tmp.path().join("meta.json"), meta.to_string()).expect("meta");
    std::fs::write(
        tmp.path().join("b.json"),
        r#"{"host":"b","verdict":"ok","code":0,"signal":null,"timed_out":false,
            "wall_ms":5,"user_ms":1,"sys_ms":1,"max_rss_kb":9,"agentless":false,
            "error_kind":null,"error":null,"stdout_bytes":0,"stderr_bytes":0}"#,
    )
    .expect("json");
    let run = read_run(tmp.path()).expect("read");
    assert_eq!(run.hosts.len(), 1);
    assert_eq!(run.hosts[0].verdict, Verdict::Ok);
    assert_eq!(run.hosts[0].wall_ms, Some(5));
}
