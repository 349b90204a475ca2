//! `hitless image …` against a real `hitless-sim` card process (issue 18):
//! keys and packages made with the CLI, a package installed from an
//! http:// URL, trial boot across a card restart, mark-good, a broken
//! package rolled back by the card, refusals that write nothing, and
//! `--force` past anti-rollback. Both binaries are built by `cargo test
//! --workspace` and found next to this test executable.

use hitless_tests::bin;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn start(dir: &Path, key: &Path) -> (hitless_sim::serve::CardProcess, String) {
    let k = key.to_str().unwrap();
    let p = hitless_sim::serve::spawn_card(
        &bin("hitless-sim"),
        dir,
        &["--image-trust", k, "--image-flash-mib", "2"],
        Duration::from_secs(10),
    )
    .unwrap();
    let card = format!("vfio-user:{}", p.socket.display());
    (p, card)
}

fn hitless(card: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(bin("hitless"));
    if let Some(c) = card {
        cmd.args(["--card", c]);
    }
    let start = Instant::now();
    let out = cmd.args(args).output().expect("hitless runs");
    assert!(start.elapsed() < Duration::from_secs(30), "{args:?} hung");
    eprintln!(
        "hitless {args:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ok(out: &Output) -> String {
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(out: &Output, text: &str) {
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(text), "{err}");
}

fn status(card: &str) -> serde_json::Value {
    serde_json::from_str(&ok(&hitless(Some(card), &["image", "status", "--json"]))).unwrap()
}

fn nvs(dir: &Path) -> Vec<Vec<u8>> {
    (0..2)
        .map(|i| std::fs::read(dir.join(format!("state/nvs{i}.flash"))).unwrap())
        .collect()
}

#[test]
fn cli_packs_installs_from_a_url_trials_marks_good_and_rolls_back() {
    let d = std::env::temp_dir().join(format!("hitless-image-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let f = |n: &str| -> PathBuf { d.join(n) };
    let s = |p: &PathBuf| p.to_string_lossy().into_owned();
    let key = f("rel.key");
    ok(&hitless(None, &["image", "keygen", &s(&key)]));
    // Never overwrites a key.
    fails(&hitless(None, &["image", "keygen", &s(&key)]), "exists");
    let gw: Vec<u8> = (0..200_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    std::fs::write(f("gw.bit"), &gw).unwrap();
    for (v, text) in [
        ("1", "selftest=pass"),
        ("2", "selftest=pass"),
        ("3", "selftest=fail"),
    ] {
        std::fs::write(f(&format!("fw{v}")), format!("firmware {v}\n{text}\n")).unwrap();
        ok(&hitless(
            None,
            &[
                "image",
                "pack",
                "--key",
                &s(&key),
                "--out",
                &s(&f(&format!("v{v}.pkg"))),
                "--version",
                v,
                &format!("gateware:gateware:{}:fpga", s(&f("gw.bit"))),
                &format!("firmware:firmware:{}:cpu", s(&f(&format!("fw{v}")))),
            ],
        ));
    }
    fails(
        &hitless(
            None,
            &[
                "image",
                "pack",
                "--key",
                &s(&key),
                "--out",
                &s(&f("x")),
                "--version",
                "1",
                "a:bogus:/dev/null",
            ],
        ),
        "component kind bogus",
    );

    let mut pubkey = key.clone().into_os_string();
    pubkey.push(".pub");
    let (p, card) = start(&d, Path::new(&pubkey));
    let c = Some(card.as_str());
    assert_eq!(
        status(&card)["state"],
        "no valid image: needs a fresh install"
    );
    ok(&hitless(c, &["image", "install", &s(&f("v1.pkg"))]));
    assert_eq!(status(&card)["version"], 1);

    // A tampered package: refused, nothing written.
    let mut t = std::fs::read(f("v2.pkg")).unwrap();
    let n = t.len();
    t[n - 3] ^= 1;
    std::fs::write(f("tampered.pkg"), &t).unwrap();
    let before = nvs(&d);
    fails(
        &hitless(c, &["image", "install", &s(&f("tampered.pkg"))]),
        "nothing was written",
    );
    assert!(nvs(&d) == before);

    // v2 from an http:// URL (resumable download), activate, restart.
    let pkg = std::fs::read(f("v2.pkg")).unwrap();
    let src = Arc::new(hitless_image::FixedSource::new([("v2.pkg", pkg)]));
    let server = hitless_image::serve::http::serve_http(
        "127.0.0.1:0".parse().unwrap(),
        src,
        Default::default(),
    )
    .unwrap();
    let url = format!("http://{}/components/v2.pkg", server.local_addr());
    let out = ok(&hitless(
        c,
        &[
            "image",
            "install",
            &url,
            "--download",
            &s(&f("dl")),
            "--json",
        ],
    ));
    let inst: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(inst["version"], 2);
    assert_eq!(inst["fresh"], false);
    // The gateware is unchanged: copied on the card, not taken again.
    assert_eq!(inst["copied"][0], "gateware");
    assert!(
        !f("dl").exists(),
        "the download is removed after the install"
    );
    server.stop();
    ok(&hitless(c, &["image", "activate"]));
    drop(p);
    let (p, card) = start(&d, Path::new(&pubkey));
    let c = Some(card.as_str());
    let st = status(&card);
    assert_eq!(
        (st["version"].clone(), st["trial"].clone()),
        (2.into(), true.into()),
        "{st}"
    );
    ok(&hitless(c, &["image", "mark-good"]));
    let st = status(&card);
    assert_eq!(
        (st["version"].clone(), st["trial"].clone()),
        (2.into(), false.into()),
        "{st}"
    );
    assert_eq!(
        st["devices"][0][st["current_area"].as_u64().unwrap() as usize],
        "good v2"
    );
    assert_eq!(
        st["devices"][1][st["current_area"].as_u64().unwrap() as usize],
        "good v2"
    );

    // v3's firmware fails its self-test: rolled back at the trial boot.
    ok(&hitless(c, &["image", "install", &s(&f("v3.pkg"))]));
    ok(&hitless(c, &["image", "activate"]));
    drop(p);
    let (p, card) = start(&d, Path::new(&pubkey));
    let c = Some(card.as_str());
    let st = status(&card);
    assert_eq!(
        (st["version"].clone(), st["trial"].clone()),
        (2.into(), false.into()),
        "{st}"
    );
    assert_eq!(
        st["last_rollback"]["cause"], "a component failed its boot self-test",
        "{st}"
    );

    // Anti-rollback: v1 refused, then installed with --force.
    fails(
        &hitless(c, &["image", "install", &s(&f("v1.pkg"))]),
        "--force",
    );
    let inst: serde_json::Value = serde_json::from_str(&ok(&hitless(
        c,
        &["image", "install", &s(&f("v1.pkg")), "--force", "--json"],
    )))
    .unwrap();
    assert_eq!(inst["version"], 1);
    drop(p);
    let _ = std::fs::remove_dir_all(&d);
}
