//! ssh_config through the inventory: the input is written as the file hosts.toml's
//! `[defaults] ssh_config` names, then a small hosts.toml is resolved against it.
#![no_main]

use std::sync::OnceLock;

use crew::inventory::Inventory;
use libfuzzer_sys::fuzz_target;

fn dir() -> &'static (tempfile::TempDir, String) {
    static DIR: OnceLock<(tempfile::TempDir, String)> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = tempfile::tempdir().expect("tempdir");
        let ssh = d.path().join("ssh_config");
        let hosts = format!(
            "[defaults]\nssh_config = {:?}\n[[host]]\nname = \"web[1-2]\"\n[[host]]\nname = \"db1\"\naddress = \"db.example\"\n",
            ssh.display().to_string()
        );
        (d, hosts)
    })
}

fuzz_target!(|data: &[u8]| {
    let (d, hosts) = dir();
    std::fs::write(d.path().join("ssh_config"), data).expect("write ssh_config");
    let _ = Inventory::from_str(hosts, &d.path().join("hosts.toml"));
});
