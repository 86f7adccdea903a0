//! The attacker in the channel tests: a second local user's program that squats a socket path,
//! connects where it should not, or plants files. Run by the tests under `setpriv` as another uid.
//!
//! ```text
//! squatter listen SOCKET LOG [LINE…]  bind SOCKET (mode 0777), then for every connection append
//!                                     "connect" to LOG, send each LINE, and append every byte
//!                                     received to LOG.bytes; until killed
//! squatter bind SOCKET                try to bind SOCKET: prints "bound" (exit 0) or the error (exit 1)
//! squatter connect SOCKET LINE…       connect, send the lines, read for 2 s; prints "connected"
//!                                     and what came back (exit 0), or the error (exit 1)
//! ```

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

fn append(path: &str, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("open the log");
    f.write_all(bytes).expect("write the log");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("listen") if args.len() >= 3 => {
            let (socket, log) = (args[1].clone(), args[2].clone());
            let lines: Vec<String> = args[3..].to_vec();
            let _ = std::fs::remove_file(&socket);
            let listener = UnixListener::bind(&socket).expect("bind");
            std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o777)).expect("chmod");
            append(&log, b"");
            append(&format!("{log}.bytes"), b"");
            println!("listening");
            for stream in listener.incoming().flatten() {
                append(&log, b"connect\n");
                let (lines, log) = (lines.clone(), log.clone());
                std::thread::spawn(move || {
                    let mut stream = stream;
                    for line in &lines {
                        let _ = stream.write_all(format!("{line}\n").as_bytes());
                    }
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = stream.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        append(&format!("{log}.bytes"), &buf[..n]);
                    }
                });
            }
        }
        Some("bind") if args.len() == 2 => match UnixListener::bind(&args[1]) {
            Ok(_) => println!("bound"),
            Err(e) => {
                println!("{e}");
                std::process::exit(1);
            }
        },
        Some("connect") if args.len() >= 2 => match UnixStream::connect(&args[1]) {
            Ok(mut stream) => {
                println!("connected");
                for line in &args[2..] {
                    let _ = stream.write_all(format!("{line}\n").as_bytes());
                }
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut got = Vec::new();
                let _ = stream.read_to_end(&mut got);
                print!("{}", String::from_utf8_lossy(&got));
            }
            Err(e) => {
                println!("{e}");
                std::process::exit(1);
            }
        },
        _ => {
            eprintln!("usage: squatter listen SOCKET LOG [LINE…] | bind SOCKET | connect SOCKET LINE…");
            std::process::exit(2);
        }
    }
}
