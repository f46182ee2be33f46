//! The `solopay` command: `serve`, `migrate`, `openapi`, `admin-token`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use solopay::app::{Application, prepare_database};
use solopay::config::Settings;

#[derive(Parser)]
#[command(
    name = "solopay",
    version,
    about = "Payment gateway for personal collection codes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (creates the database if missing and applies migrations first).
    #[command(after_help = solopay::config::variables::help())]
    Serve,
    /// Create the database if missing and apply pending migrations, then exit.
    #[command(after_help = solopay::config::variables::help())]
    Migrate,
    /// Print the OpenAPI document (JSON).
    Openapi {
        /// Write it to this file instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Generate a new operator token, replacing the generated one, and print it.
    AdminToken,
}

#[actix_web::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Openapi { output } = &cli.command {
        return print_openapi(output.as_deref());
    }
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("solopay: {error}");
            return ExitCode::from(2);
        }
    };
    solopay::telemetry::init(settings.log_format);
    let outcome = match cli.command {
        Command::Serve => serve(settings).await,
        Command::Migrate => prepare_database(&settings.database_url, settings.db_wait)
            .await
            .map(|applied| tracing::info!(migrations = ?applied, "database is up to date"))
            .map_err(|e| e.to_string()),
        Command::AdminToken => admin_token(settings).await,
        Command::Openapi { .. } => Ok(()),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "solopay failed");
            eprintln!("solopay: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> Result<(), String> {
    let app = Application::build(settings)
        .await
        .map_err(|e| e.to_string())?;
    app.run_until_stopped().await.map_err(|e| e.to_string())
}

async fn admin_token(settings: Settings) -> Result<(), String> {
    if settings.admin_token.is_some() {
        return Err("SOLOPAY_ADMIN_TOKEN is set: that is the operator token".into());
    }
    prepare_database(&settings.database_url, settings.db_wait)
        .await
        .map_err(|e| e.to_string())?;
    let url = settings.database_url.clone();
    let token = tokio::task::spawn_blocking(move || {
        let mut conn =
            solopay::db::startup::connect_creating_database(&url).map_err(|e| e.to_string())?;
        solopay::core::operators::rotate_generated_token(&mut conn).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())??;
    println!("{token}");
    Ok(())
}

fn print_openapi(output: Option<&std::path::Path>) -> ExitCode {
    let json = match solopay::routes::openapi().to_pretty_json() {
        Ok(json) => json + "\n",
        Err(error) => {
            eprintln!("solopay: cannot render the OpenAPI document: {error}");
            return ExitCode::FAILURE;
        }
    };
    let written = match output {
        Some(path) => std::fs::write(path, json),
        None => {
            use std::io::Write;
            std::io::stdout().write_all(json.as_bytes())
        }
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("solopay: {error}");
            ExitCode::FAILURE
        }
    }
}
