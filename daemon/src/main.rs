//! The `coffer` binary: the server and the client command line.

mod cli;

use clap::Parser;
use cli::{ApiFailure, Cli, Command, normalize_args};
use coffer_daemon::{logging, server};

fn main() {
    let cli = Cli::parse_from(normalize_args(std::env::args()));
    if let Some(result) = cli::run_local(&cli.command) {
        std::process::exit(result.unwrap_or_else(|error| {
            eprintln!("Error: {error:#}");
            1
        }));
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("Error: cannot start the async runtime: {error}");
            std::process::exit(1);
        }
    };
    let code = match cli.command {
        Command::Server(args) => {
            let options = server::Options {
                config: args.config,
                dev: args.dev,
                dev_root_token: args.dev_root_token,
                dev_listen: args.dev_listen,
                dev_fuse: args.dev_fuse,
                dev_unix: args.dev_unix,
                dev_grpc_listen: args.dev_grpc_listen,
                dev_unsafe_allow_api_audit_creation: args.dev_unsafe_allow_api_audit_creation,
                data_dir: args.data_dir,
            };
            match server::load(&options) {
                Ok((config, temporary)) => {
                    logging::init(
                        args.log_level.as_deref().or(config.log_level.as_deref()),
                        args.log_format.or(config.log_format).unwrap_or_default(),
                    );
                    let result = runtime.block_on(server::run(options, config));
                    drop(temporary);
                    match result {
                        Ok(()) => 0,
                        Err(error) => {
                            eprintln!("Error: {error:#}");
                            1
                        }
                    }
                }
                Err(error) => {
                    eprintln!("Error: {error:#}");
                    1
                }
            }
        }
        _ => match runtime.block_on(cli::run_client(cli)) {
            Ok(code) => code,
            Err(error) => {
                eprintln!("{error:#}");
                if error.downcast_ref::<ApiFailure>().is_some() {
                    2
                } else {
                    1
                }
            }
        },
    };
    drop(runtime);
    std::process::exit(code);
}
