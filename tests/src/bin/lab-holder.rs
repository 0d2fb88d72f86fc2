//! Starts a one-host test lab, prints `LAB <prefix> <dir>` and waits to be killed: the
//! killed run that `lab_smoke::a_killed_runs_lab_is_swept_by_the_next_start` needs (a lab
//! whose owner died without tearing it down). Not a tool for anything else.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use integration::lab::{Lab, LabOptions, report};

fn main() -> ExitCode {
    let lab = match Lab::start(LabOptions::new(1)) {
        Ok(lab) => lab,
        Err(error) => {
            eprintln!("lab-holder: {}", report(&error));
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "LAB {} {}", lab.prefix(), lab.dir().display());
    let _ = out.flush();
    drop(out);
    // The test kills this process long before this ends; if it does not, tidy up.
    std::thread::sleep(Duration::from_secs(120));
    drop(lab);
    ExitCode::SUCCESS
}
