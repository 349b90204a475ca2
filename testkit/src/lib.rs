//! Test binaries that are also the processes their tests kill.
//!
//! A crash test starts a process, lets it work and kills it with SIGKILL.
//! The simplest such process is the test binary itself, started by its
//! own test in a *role*. With libtest's harness a role has to be a
//! `#[test]` (that passes vacuously when not started as a role) or an
//! `#[ignore]`d one, so the test list holds tests that cannot fail. Test
//! files with roles are built with `harness = false` and use
//! [`test_main`]: the role when [`ROLE`] names one, else the tests.
//!
//! ```no_run
//! fn primary() {
//!     // store and append until killed
//! }
//! fn a_killed_primary_loses_nothing() {
//!     let _primary = hitless_testkit::role_command("primary").spawn();
//!     // … kill it, check what it left
//! }
//! fn main() -> std::process::ExitCode {
//!     hitless_testkit::test_main(
//!         hitless_testkit::named![primary],
//!         hitless_testkit::named![a_killed_primary_loses_nothing],
//!     )
//! }
//! ```

use std::process::{Child, Command, ExitCode, ExitStatus};
use std::time::{Duration, Instant};

/// Names the role a test binary is started in by one of its own tests;
/// unset, the binary runs its tests.
pub const ROLE: &str = "HITLESS_TEST_ROLE";

/// What a test or role function returns: nothing (it fails by panicking)
/// or a `Result` (it fails by `Err` too).
pub trait Outcome {
    fn into_result(self) -> Result<(), String>;
}

impl Outcome for () {
    fn into_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: std::fmt::Debug> Outcome for Result<(), E> {
    fn into_result(self) -> Result<(), String> {
        self.map_err(|e| format!("{e:?}"))
    }
}

/// A named test or role function (made by [`named!`]).
pub type Named = (&'static str, fn() -> Result<(), String>);

/// `main` of a test file built with `harness = false`: the role [`ROLE`]
/// names (one of `roles`; an unknown role fails), else `tests` under
/// libtest-mimic, which reads libtest's arguments and reports each test
/// and the summary as libtest does.
pub fn test_main(roles: &[Named], tests: &[Named]) -> ExitCode {
    if let Ok(role) = std::env::var(ROLE) {
        return match roles.iter().find(|(name, _)| *name == role) {
            Some((_, run)) => match run() {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("role {role} failed: {e}");
                    ExitCode::FAILURE
                }
            },
            None => {
                eprintln!("{ROLE}={role}: no such role");
                ExitCode::FAILURE
            }
        };
    }
    let trials = tests
        .iter()
        .map(|&(name, run)| libtest_mimic::Trial::test(name, move || run().map_err(Into::into)))
        .collect();
    libtest_mimic::run(&libtest_mimic::Arguments::from_args(), trials).exit_code()
}

/// `&[("f", …), …]` for [`test_main`]: each function under its own name,
/// so a test's name is the function's. The functions return `()` or a
/// `Result<(), E: Debug>`.
#[macro_export]
macro_rules! named {
    ($($f:ident),* $(,)?) => {
        &[$((stringify!($f), (|| $crate::Outcome::into_result($f())) as fn() -> Result<(), String>)),*]
    };
}

/// This test binary, to be started in `role` (see [`test_main`]).
pub fn role_command(role: &str) -> Command {
    // The test binary's own path: libtest-mimic and cargo run it by path.
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("the test binary's path: {e}"));
    let mut cmd = Command::new(exe);
    cmd.env(ROLE, role);
    cmd
}

/// Wait for `child` to exit until `deadline`; past it, kill and reap it
/// and return `None` (a role that hangs fails its test, never holds it).
pub fn wait_until(child: &mut Child, deadline: Instant) -> std::io::Result<Option<ExitStatus>> {
    loop {
        if let Some(s) = child.try_wait()? {
            return Ok(Some(s));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fine() {}
    fn fails() -> Result<(), String> {
        Err("no".into())
    }

    #[test]
    fn named_functions_keep_their_names_and_outcomes() {
        let n: &[Named] = named![fine, fails];
        assert_eq!(n[0].0, "fine");
        assert_eq!((n[0].1)(), Ok(()));
        assert_eq!(n[1].0, "fails");
        assert_eq!((n[1].1)(), Err("\"no\"".to_string()));
    }

    #[test]
    fn wait_until_reaps_an_exit_and_kills_a_hang() {
        let mut done = Command::new("true").spawn().unwrap();
        let s = wait_until(&mut done, Instant::now() + Duration::from_secs(10)).unwrap();
        assert!(s.is_some_and(|s| s.success()));
        let mut hung = Command::new("sleep").arg("60").spawn().unwrap();
        let t = Instant::now();
        let s = wait_until(&mut hung, Instant::now() + Duration::from_millis(100)).unwrap();
        assert!(s.is_none());
        assert!(t.elapsed() < Duration::from_secs(10));
        assert!(hung.try_wait().unwrap().is_some(), "killed and reaped");
    }
}
