// The migrations are embedded (`embed_migrations!` in src/db/startup.rs), which does not tell
// Cargo about a new migration folder: rebuild when anything under migrations/ changes, so that
// a test or a build never runs without the newest migration.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
