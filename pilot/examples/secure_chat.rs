//! One line over the secure channel (port 443): `listen` waits for a peer and prints what it
//! says; `dial` sends a line to a listening peer.
//!
//! ```text
//! cargo run -p pilot --example secure_chat -- listen
//! cargo run -p pilot --example secure_chat -- dial 0:0000.0000.002A "hello"
//! ```

use pilot::driver::{default_socket_path, Driver};
use pilot::services::secure::{self, SECURE_PORT};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let driver = Driver::connect(default_socket_path()).await?;
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["listen"] => {
            let mut listener = driver.listen(SECURE_PORT).await?;
            let channel = secure::accept(&mut listener).await?;
            let mut line = String::new();
            BufReader::new(channel).read_line(&mut line).await?;
            print!("{line}");
        }
        ["dial", peer, text] => {
            let mut channel = secure::dial(&driver, peer.parse()?).await?;
            channel.write_all(format!("{text}\n").as_bytes()).await?;
            channel.shutdown().await?;
        }
        _ => {
            eprintln!("usage: secure_chat listen | secure_chat dial <address> <text>");
            std::process::exit(2);
        }
    }
    Ok(())
}
