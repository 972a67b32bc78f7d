//! Sends a file to another agent's received folder through data exchange (port 1001), with
//! progress, through the local daemon.
//!
//! ```text
//! cargo run -p pilot --example send_file -- 0:0000.0000.002A ./report.pdf
//! ```

use pilot::driver::{default_socket_path, Driver};
use pilot::services::dataexchange::client;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(peer), Some(path)) = (args.next(), args.next()) else {
        eprintln!("usage: send_file <address> <path>");
        std::process::exit(2);
    };
    let file = tokio::fs::File::open(&path).await?;
    let size = file.metadata().await?.len();
    let name = std::path::Path::new(&path)
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or("the path has no file name")?
        .to_string();

    let driver = Driver::connect(default_socket_path()).await?;
    let mut exchange = client::dial(&driver, peer.parse()?).await?;
    let reply = exchange
        .send_file_from(&name, file, size, |sent| {
            eprint!("\r{sent} of {size} bytes");
        })
        .await?;
    eprintln!();
    println!("{reply:?}");
    Ok(())
}
